"""Trust Region Policy Optimization: the policy update (Section 6, Appendix C).

One TRPO iteration solves, approximately (Eq. (14) and Appendix C, Eq. (55)):

    maximise_θ   L(θ) = E_{s,a~q}[ π_θ(a|s) / q(a|s) · Â(s, a) ]
    subject to   D̄_KL(θ_old, θ) = E_s[ KL(π_θold(·|s) ‖ π_θ(·|s)) ] ≤ δ

by (1) the gradient g = ∇L(θ_old); (2) the search direction s ≈ A⁻¹g by conjugate gradient,
where A is the Fisher matrix written as JᵀMJ (Appendix C.1) and evaluated on a random subsample
of the batch; (3) the maximal step β = √(2δ / sᵀAs), As from CG's own residual; (4) a
backtracking line search that shrinks β exponentially until L improves and D̄_KL ≤ δ.
`update` is exactly that recipe, written in that order; `step` checks its input and runs
`update` as one jit-compiled function.

The variants compared in Section 8 are arguments or small functions, not modes:
`fisher=fisher_vp_empirical` (A from the covariance of score gradients, Section 6),
`constraint=jnp.max` (the max over states of the KL, Eq. (11), instead of the mean), and
`natural_gradient_step` (a fixed step along A⁻¹g, no constraint and no line search, Section 7).
`fisher_vp_hessian` computes A·v by differentiating the mean KL twice, the "generic method"
Appendix C.1 mentions; it is here to be compared with.

This file and cg.py are the whole update: they import nothing else of the project.

The policy contract. A policy is a dict {"apply", "dist"} (`policies.py` builds them; any dict
with these functions works):
  apply(params, obs[N, ...]) -> µ   a pytree of distribution parameters, every leaf with the
                                    leading axis N. Each state's µ must depend on that state
                                    alone (no batch statistics, e.g. no centring on the batch
                                    mean): the line search evaluates apply in chunks
                                    (`apply_in_chunks`).
  dist["log_prob"](µ, a) -> [N]     log π(a|s).
  dist["kl"](µ_old, µ) -> [N]       KL(old ‖ new) per state.
  dist["fisher_vp"](µ, v) -> M v    optional: M = ∂²kl(µ_old, µ)/∂µ² at µ = µ_old, applied to v
                                    (a pytree like µ), the metric of Appendix C.1, Eq. (57), in
                                    closed form; without it M v is computed from "kl" by
                                    differentiating it twice (`kl_hessian_vp`).
  dist["entropy"](µ) -> [N]         optional: without it info["entropy"] is NaN.
`step` checks the contract where it is cheap: the entries are there, µ has the axis N, and apply
on two halves of a few states gives what it gives on them together. The functions are compile-
time constants of the compiled update: stepping the same dict (the same functions) again reuses
it, and a policy built anew for every call (a new `apply` each time) compiles anew each time.
A batch is a dict of arrays with a common leading axis N:
  "obs":      [N, *obs_shape]    states s_n
  "actions":  [N, ...]           actions a_n ~ q(·|s_n)
  "adv":      [N]                advantage or Q estimates Â(s_n, a_n) (Section 5)
  "old_dist": µ_old, optional    the old policy's distribution parameters at s_n (default:
                                 computed from params, which are θ_old)
  "logp_q":   [N], optional      log q(a_n|s_n) of the sampling distribution (default: q = π_old,
                                 the single-path case of Section 5.1)
A vine batch (Section 5.2) has "q" [N, K] instead of "adv", "actions" [N, K, ...] and, for the
self-normalised estimator of Eq. (16), "logp_q" [N, K] (see `surrogate`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import cg

# The defaults of `update`, `step`, `natural_gradient_step` and of train.py: the paper's δ, CG
# iterations and Fisher subsample (Appendix C.1, Table 2), and ours where it gives no value.
DELTA = 0.01            # δ, the bound on the mean KL
DAMPING = 0.1           # added to A in CG (A + damping·I); not in the paper, 0 disables it
CG_ITERS = 10           # k, "We found k = 10 to be quite effective"
SUBSAMPLE = 0.1         # the fraction of the batch for A·v, "10% of the data"
MAX_BACKTRACKS = 10     # step lengths the line search tries before taking no step
BACKTRACK_RATIO = 0.8   # the line search's shrink factor: the full step lands at KL ≈ δ, often a
#                         hair above it, so 0.8 loses little where 0.5 would halve the step
CHUNK = 128             # states per chunk in `apply_in_chunks`, at least

# ----------------------------------------------------------------------------------------------
# Objective and constraint (Eq. (11)–(16)).
# ----------------------------------------------------------------------------------------------


def surrogate(policy, params, batch):
  """The sample estimate of L_θold(θ), a scalar: Eq. (14) for a single-path batch, Eq. (15) or
  (16) for a vine batch.

  Single path, batch "obs" [N, ...], "actions" [N, ...], "adv" [N], "logp_q" [N]:
      L(θ) = (1/N) Σₙ π_θ(aₙ|sₙ)/q(aₙ|sₙ) · Âₙ.
  Vine, batch "obs" [N, ...], "actions" [N, K, ...], "q" [N, K], the mean over states of L_n:
  without "logp_q", the all-actions estimator of Eq. (15) (a_1..a_K the whole action set)
      L_n(θ) = Σₖ π_θ(aₖ|s_n) Q̂(s_n, aₖ);
  with "logp_q" = log q(a_{n,k}|s_n) [N, K], the self-normalised estimator of Eq. (16)
      L_n(θ) = Σₖ wₖ Q̂(s_n, a_{n,k}) / Σₖ wₖ,   wₖ = π_θ(a_{n,k}|s_n) / q(a_{n,k}|s_n).
  """
  return _surrogate_of_mu(policy, policy["apply"](params, batch["obs"]), batch)


def _surrogate_of_mu(policy, mu, batch):
  """`surrogate` as a function of the network's outputs µ = µ_θ(sₙ), [N, ...] (L depends on θ
  only through them)."""
  if "q" not in batch:
    logp = policy["dist"]["log_prob"](mu, batch["actions"])
    return jnp.mean(jnp.exp(logp - batch["logp_q"]) * batch["adv"])
  q_hat, actions = batch["q"], batch["actions"]
  n, k = q_hat.shape
  tiled = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), mu)
  logp = policy["dist"]["log_prob"](tiled, actions.reshape((n * k,) + actions.shape[2:]))
  logp = logp.reshape(n, k)
  if "logp_q" not in batch:
    return jnp.mean(jnp.sum(jnp.exp(logp) * q_hat, axis=1))
  # Self-normalised weights via a softmax of log-weights: no overflow for large ratios.
  w = jax.nn.softmax(logp - batch["logp_q"], axis=1)
  return jnp.mean(jnp.sum(w * q_hat, axis=1))


def kl_per_state(policy, params, batch):
  """KL(π_old(·|sₙ) ‖ π_θ(·|sₙ)) for each state, [N]: the terms of D̄_KL in Eq. (12) (their
  mean) and of D_KL^max in Eq. (11) (their max). batch: "obs", "old_dist"."""
  return policy["dist"]["kl"](batch["old_dist"], policy["apply"](params, batch["obs"]))


def mean_entropy(dist, mu):
  """E_s[H(π(·|s))], the mean over µ's leading axis of the entropy in nats; NaN when the
  distribution has no "entropy". A diagnostic, not in the paper: it shows a policy collapsing
  towards deterministic play, where the single-path gradient vanishes."""
  entropy = dist.get("entropy")
  return jnp.nan if entropy is None else jnp.mean(entropy(mu))


# ----------------------------------------------------------------------------------------------
# Fisher-vector products: fisher_vp(policy, params, batch) -> (v ↦ A v) on flat vectors.
# ----------------------------------------------------------------------------------------------


def fisher_vp_analytic(policy, params, batch):
  """v ↦ (1/n) Σₙ Jₙᵀ M(µₙ) Jₙ v, the Fisher-vector product of Appendix C.1, over batch["obs"].

  Jₙ = ∂µ(sₙ)/∂θ is applied by a forward-mode product (jvp), M = kl''(µ, µ_old) in closed form
  by `dist["fisher_vp"]` (or, for a distribution without it, by `kl_hessian_vp`), Jᵀ by the
  transpose of the same linearisation (backprop). The second term of Eq. (57), ∂²µ · kl',
  vanishes at θ = θ_old and is never computed. The network is linearised once; each product
  then costs about one forward and one backward pass over obs.
  """
  flat, unravel = ravel_pytree(params)
  mu, jvp = jax.linearize(lambda p: policy["apply"](unravel(p), batch["obs"]), flat)
  vjp = jax.linear_transpose(jvp, flat)
  n = batch["obs"].shape[0]
  metric = policy["dist"].get("fisher_vp") or kl_hessian_vp(policy["dist"]["kl"])

  def matvec(v):
    mv = metric(mu, jvp(v))
    return vjp(jax.tree_util.tree_map(lambda x: x / n, mv))[0]
  return matvec


def kl_hessian_vp(kl):
  """(µ, v) ↦ M v, M = ∂²kl(µ_old, µ)/∂µ² at µ = µ_old (Eq. (57)'s metric), from the per-state
  KL alone: forward-mode differentiation of its gradient in µ (forward-over-reverse). What
  `fisher_vp_analytic` uses for a distribution without a closed-form "fisher_vp"; each state's
  block of M acts on that state's part of v, so summing the KLs keeps them apart."""
  def fisher_vp(mu, v):
    grad = jax.grad(lambda m: jnp.sum(kl(jax.lax.stop_gradient(mu), m)))
    return jax.jvp(grad, (mu,), (v,))[1]
  return fisher_vp


def fisher_vp_empirical(policy, params, batch):
  """v ↦ (1/n) Gᵀ(G v) with Gₙ = ∇_θ log π_θ(aₙ|sₙ): the empirical FIM of Section 6.

  G v is one forward-mode product of the per-sample log-likelihoods and Gᵀu one backward pass,
  so the n × dim θ matrix of score gradients is never stored. Single-path batches only.
  """
  flat, unravel = ravel_pytree(params)
  logp = lambda p: policy["dist"]["log_prob"](policy["apply"](unravel(p), batch["obs"]),
                                              batch["actions"])
  _, jvp = jax.linearize(logp, flat)
  vjp = jax.linear_transpose(jvp, flat)
  n = batch["obs"].shape[0]
  return lambda v: vjp(jvp(v) / n)[0]


def fisher_vp_hessian(policy, params, batch):
  """v ↦ ∇²_θ D̄_KL(θ_old, θ) v by double differentiation (forward-over-reverse).

  The "generic method" of Appendix C.1, what most libraries do; equal to the analytic product
  at θ = θ_old, kept to compare against.
  """
  flat, unravel = ravel_pytree(params)
  grad_kl = jax.grad(lambda p: jnp.mean(kl_per_state(policy, unravel(p), batch)))
  return lambda v: jax.jvp(grad_kl, (flat,), (v,))[1]


# ----------------------------------------------------------------------------------------------
# The update (Appendix C).
# ----------------------------------------------------------------------------------------------


def update(params, batch, policy, key, *, delta=DELTA, damping=DAMPING, cg_iters=CG_ITERS,
           subsample=SUBSAMPLE, max_backtracks=MAX_BACKTRACKS, backtrack_ratio=BACKTRACK_RATIO,
           fisher=fisher_vp_analytic, constraint=jnp.mean):
  """The TRPO update of Appendix C, unchecked and traceable: (new_params, info), with the
  arguments and result of `step` (which checks the input and compiles this). Under your own
  `jax.jit`, close over the policy and keep the options Python values; cg_iters, subsample,
  max_backtracks, fisher and constraint fix shapes and code:
      jax.jit(lambda params, batch, key: trpo.update(params, batch, policy, key))
  """
  flat0, unravel = ravel_pytree(params)
  # (1) g = ∇L(θ_old), the batch completed with µ_old and log q (one pass over it: `prepare`).
  batch, L0, g, finite = prepare(params, batch, policy)
  # (2) s ≈ A⁻¹g by k iterations of conjugate gradient, A·v on a subsample of the states.
  A = damped_fisher(params, batch, policy, key, fisher, subsample, damping)
  s, As = cg.solve_with_product(A, g, iters=cg_iters)
  sAs = jnp.vdot(s, As)
  usable = finite & jnp.isfinite(sAs) & (sAs > 0) & jnp.all(jnp.isfinite(s))
  # (3) β = √(2δ / sᵀAs): the step length at which the quadratic model ½ (βs)ᵀA(βs) equals δ.
  beta = jnp.sqrt(2.0 * delta / jnp.where(usable, sAs, 1.0))
  full_step = beta * s

  # (4) The line search: shrink the step by r until L improves and the (nonlinear) KL holds.
  def backtrack(state):
    k = state[0]
    frac = backtrack_ratio ** k
    theta = flat0 + frac * full_step
    improve, kls = gain_and_kl(unravel(theta), batch, policy, L0)
    ok = (improve > 0) & (constraint(kls) <= delta) & jnp.all(jnp.isfinite(theta))
    return k + 1, ok, frac, (improve, jnp.mean(kls), jnp.max(kls))
  tries = jnp.where(usable, max_backtracks, 0)   # an unusable s: no step at all
  zero = jnp.asarray(0.0, flat0.dtype)
  k, accepted, frac, found = jax.lax.while_loop(
      lambda state: ~state[1] & (state[0] < tries), backtrack,
      (jnp.asarray(0), jnp.asarray(False), zero, (zero,) * 3))
  frac, improve, kl, max_kl = (jnp.where(accepted, x, 0.0) for x in (frac, *found))
  # `where`, not frac = 0: a rejected full_step may hold inf or NaN, and 0·NaN = NaN.
  new_flat = jnp.where(accepted, flat0 + frac * full_step, flat0)
  return unravel(new_flat), {
      "accepted": accepted, "kl": kl, "max_kl": max_kl, "actual_improve": improve,
      "expected_improve": jnp.where(accepted, jnp.vdot(g, frac * full_step), 0.0),
      "backtracks": jnp.where(accepted, k - 1, k), "step_fraction": frac, "beta": beta,
      **direction_info(batch, policy, L0, g, sAs, finite, usable)}


# ----------------------------------------------------------------------------------------------
# What the update uses.
# ----------------------------------------------------------------------------------------------


def prepare(params, batch, policy):
  """Step (1) of Appendix C: (batch, L(θ_old), g = ∇L(θ_old), finite), L the surrogate of
  Eq. (14)-(16); the batch with µ_old and (single path) log q filled in, and whether batch and
  params are finite (`_masked`).

  One forward pass over the batch gives both µ_old and g: g = Jᵀ ∂L/∂µ, the pullback of the
  same linearisation (L depends on θ only through µ = µ_θ(sₙ)), where differentiating
  `surrogate` would run the network again.
  """
  flat0, unravel = ravel_pytree(params)
  batch = dict(batch)
  mu, pullback = jax.vjp(lambda p: policy["apply"](unravel(p), batch["obs"]), flat0)
  old = batch.get("old_dist")
  batch["old_dist"] = jax.lax.stop_gradient(mu if old is None else old)
  if "q" not in batch and "logp_q" not in batch:     # single path: q = π_old
    batch["logp_q"] = policy["dist"]["log_prob"](batch["old_dist"], batch["actions"])
  batch, finite = _masked(batch, params)
  L0, dL_dmu = jax.value_and_grad(lambda m: _surrogate_of_mu(policy, m, batch))(mu)
  return batch, L0, pullback(dL_dmu)[0], finite


def _masked(batch, params):
  """(batch, finite): a NaN/inf anywhere in the batch would spread into every parameter, so the
  step is refused (`check_batch` raises before this, unless under a caller's jit). The small
  entries are computed on zeros in its place; obs is left as it is (a copy of it would cost a
  pass over the largest array), so non-finite obs make g and s non-finite, which refuses the
  step too."""
  floats = [x for x in jax.tree_util.tree_leaves((batch, params))
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]))
  batch = {k: v if k == "obs" else jax.tree_util.tree_map(
      lambda x: jnp.where(jnp.isfinite(x), x, 0) if jnp.issubdtype(x.dtype, jnp.inexact) else x,
      v) for k, v in batch.items()}
  return batch, finite


def damped_fisher(params, batch, policy, key, fisher, subsample, damping):
  """v ↦ (A + damping·I) v, A·v the product `fisher` on a random subsample of the states (the
  fraction `subsample`: "we can compute it on 10% of the data", Appendix C.1)."""
  n = batch["obs"].shape[0]
  n_sub, sub = min(n, max(1, int(round(subsample * n)))), batch
  if n_sub < n:
    idx = jax.random.choice(key, n, (n_sub,), replace=False)
    sub = jax.tree_util.tree_map(lambda x: x[idx], batch)
  fvp = fisher(policy, params, sub)
  # Damping bounds the step along directions the (subsampled, finite-sample) Fisher sees as
  # flat, where A⁻¹ would blow up. Not in the paper; 0 disables it.
  return lambda v: fvp(v) + damping * v


def gain_and_kl(params, batch, policy, L0):
  """(L(params) − L(θ_old), KL(old ‖ params) per state) over the whole prepared batch: the
  surrogate's gain (Eq. (14)-(16)) and the terms of D̄_KL (Eq. (12)) that the line search of
  Appendix C checks. One forward pass, in chunks (`apply_in_chunks`: only for speed), gives
  both."""
  mu = apply_in_chunks(policy["apply"], params, batch["obs"])
  return _surrogate_of_mu(policy, mu, batch) - L0, policy["dist"]["kl"](batch["old_dist"], mu)


def direction_info(batch, policy, L0, g, sAs, finite, usable):
  """The entries of info that do not depend on the step length."""
  return {"surrogate": L0, "sAs": sAs, "grad_norm": jnp.linalg.norm(g), "finite_batch": finite,
          "bad_direction": ~usable, "entropy": mean_entropy(policy["dist"], batch["old_dist"])}


def apply_in_chunks(apply, params, obs, size=CHUNK):
  """apply(params, obs) for obs [N, ...], computed in k chunks (`fori_loop`), k the largest
  divisor of N up to N // size: the same µ [N, ...] when apply treats states independently (the
  policy contract), while a chunk's activations stay in the CPU's cache. For passes that are not
  differentiated: the line search of Appendix C evaluates one per candidate step. k < 2: one call.

  Chunk j holds the states j, j + k, j + 2k, …: a batch sharded along its first axis over
  devices or processes keeps each chunk's states where they are.
  """
  n = obs.shape[0]
  k = next((k for k in range(n // size, 1, -1) if n % k == 0), 1)
  if k < 2:
    return apply(params, obs)
  x = obs.reshape((n // k, k) + obs.shape[1:])

  def body(j, mu):
    chunk = apply(params, jax.lax.dynamic_index_in_dim(x, j, 1, keepdims=False))
    return jax.tree_util.tree_map(
        lambda m, c: jax.lax.dynamic_update_index_in_dim(m, c, j, 1), mu, chunk)
  out = jax.eval_shape(apply, params, obs[:n // k])
  mu = jax.lax.fori_loop(0, k, body, jax.tree_util.tree_map(
      lambda s: jnp.zeros((s.shape[0], k) + s.shape[1:], s.dtype), out))
  return jax.tree_util.tree_map(lambda m: m.reshape((n,) + m.shape[2:]), mu)


def natural_gradient_update(params, batch, policy, key, *, step_size, damping=DAMPING,
                            cg_iters=CG_ITERS, subsample=SUBSAMPLE, fisher=fisher_vp_analytic):
  """θ_new = θ_old + (1/λ)·A⁻¹g with a fixed step size 1/λ = step_size (Section 7): no KL
  constraint and no line search. Traceable; returns (new_params, info) like `update`."""
  flat0, unravel = ravel_pytree(params)
  batch, L0, g, finite = prepare(params, batch, policy)
  s, As = cg.solve_with_product(damped_fisher(params, batch, policy, key, fisher, subsample,
                                              damping), g, iters=cg_iters)
  sAs = jnp.vdot(s, As)
  usable = finite & jnp.isfinite(sAs) & (sAs > 0) & jnp.all(jnp.isfinite(s))
  theta = flat0 + step_size * s
  accepted = usable & jnp.all(jnp.isfinite(theta))
  improve, kls = gain_and_kl(unravel(theta), batch, policy, L0)
  improve, kl, max_kl = (jnp.where(accepted, x, 0.0) for x in (improve, jnp.mean(kls),
                                                               jnp.max(kls)))
  return unravel(jnp.where(accepted, theta, flat0)), {
      "accepted": accepted, "kl": kl, "max_kl": max_kl, "actual_improve": improve,
      "backtracks": jnp.asarray(0), "step_fraction": jnp.where(accepted, 1.0, 0.0),
      "beta": jnp.asarray(step_size),
      **direction_info(batch, policy, L0, g, sAs, finite, usable)}


# ----------------------------------------------------------------------------------------------
# Checks.
# ----------------------------------------------------------------------------------------------


def _check(name, ok, allowed, value):
  if not ok:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _is_number(x):
  return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(x)


_ALLOWED = {   # option: (its test, what is allowed)
    "fisher": (callable, "a function (policy, params, batch) -> matvec, e.g. fisher_vp_analytic"),
    "constraint": (callable, "a function of the per-state KLs, e.g. jnp.mean or jnp.max"),
    "delta": (lambda x: _is_number(x) and x > 0, "a finite number > 0"),
    "damping": (lambda x: _is_number(x) and x >= 0, "a finite number >= 0"),
    "cg_iters": (lambda x: isinstance(x, int) and x >= 1, "an integer >= 1"),
    "subsample": (lambda x: _is_number(x) and 0 < x <= 1, "in (0, 1]"),
    "max_backtracks": (lambda x: isinstance(x, int) and x >= 1, "an integer >= 1"),
    "backtrack_ratio": (lambda x: _is_number(x) and 0 < x < 1, "in (0, 1)"),
    "step_size": (lambda x: _is_number(x) and x > 0, "a finite number > 0"),
}


def check_options(**options):
  """Raises ValueError naming the first option of `update` or `natural_gradient_update` that is
  unknown or outside its range."""
  for name, value in options.items():
    _check("an option", name in _ALLOWED, f"one of {', '.join(_ALLOWED)}", name)
    _check(name, _ALLOWED[name][0](value), _ALLOWED[name][1], value)


def _readable(x):
  """Whether this process can read x's values: not traced by a caller's jit, not spread over
  processes."""
  return not isinstance(x, jax.core.Tracer) and bool(getattr(x, "is_fully_addressable", True))


def check_policy(policy, params, obs):
  """Raises ValueError for a policy that breaks the contract of the module docstring where that
  is cheap to see: a missing entry; µ whose leaves lack the leading axis N of obs; an apply
  that is not per state (µ of a few states computed in two halves differs from µ computed at
  once: batch statistics, which the line search's chunks would change)."""
  dist = policy.get("dist") if isinstance(policy.get("dist"), dict) else {}
  missing = ["policy['apply']"] * (not callable(policy.get("apply")))
  missing += [f"policy['dist'][{k!r}]" for k in ("log_prob", "kl") if not callable(dist.get(k))]
  if missing:
    raise ValueError(f"the policy needs {', '.join(missing)} (the contract in trpo.py's "
                     "docstring)")
  n = np.shape(obs)[0]
  try:
    mu = jax.eval_shape(policy["apply"], params, obs)
  except Exception as e:  # noqa: BLE001 - re-raised with the shapes that matter
    raise ValueError(f"the policy cannot be applied to batch['obs'] of shape {np.shape(obs)}: "
                     f"{type(e).__name__}: {e}") from e
  shapes = [tuple(leaf.shape) for leaf in jax.tree_util.tree_leaves(mu)]
  _check("every leaf of µ = policy['apply'](params, obs)", all(s[:1] == (n,) for s in shapes),
         f"an array with the leading axis N = {n} of batch['obs']", shapes)
  m = min(n, 8)
  if m < 2 or not all(_readable(x) for x in jax.tree_util.tree_leaves((params, obs))):
    return
  whole = policy["apply"](params, obs[:m])
  halves = [policy["apply"](params, obs[a:b]) for a, b in ((0, m // 2), (m // 2, m))]
  for w, a, b in zip(*(jax.tree_util.tree_leaves(x) for x in (whole, *halves))):
    w, ab = np.asarray(w, np.float64), np.concatenate([np.asarray(a), np.asarray(b)])
    if not np.allclose(ab, w, rtol=1e-4, atol=1e-5 * (1 + np.max(np.abs(w), initial=0))):
      raise ValueError("policy['apply'] must give each state's µ from that state alone (the "
                       "line search applies it in chunks); µ of the first states differs when "
                       "they are applied in two halves: no batch statistics in apply")


def check_batch(policy, params, batch, fisher=fisher_vp_analytic):
  """Raises ValueError for a batch `update` cannot take: missing or mismatched entries, a policy
  `check_policy` refuses for its obs, non-finite values (of the arrays this process can read)."""
  target = "q" if "q" in batch else "adv"
  missing = [k for k in ("obs", "actions", target) if k not in batch]
  if missing or ("q" in batch and "adv" in batch):
    raise ValueError(f"batch needs 'obs', 'actions' and one of 'adv' (single path) or 'q' (vine), "
                     f"optionally 'old_dist', 'logp_q'; got {sorted(batch)}, missing {missing}")
  shape = lambda k: tuple(np.shape(batch[k]))
  n = shape("obs")[0] if shape("obs") else 0
  _check("batch['obs']", n >= 1, "an array with a leading batch axis N >= 1", shape("obs"))
  _check(f"batch[{target!r}]", len(shape(target)) == (2 if target == "q" else 1),
         "of shape [N, K]" if target == "q" else f"of shape [N] = [{n}]", shape(target))
  for k in ("actions", "logp_q"):
    if target == "q" and k in batch:
      _check(f"batch[{k!r}]", shape(k)[:2] == shape("q"), f"of shape [N, K] = "
             f"{list(shape('q'))}, ... like batch['q']", shape(k))
  _check("fisher", target == "adv" or fisher is not fisher_vp_empirical,
         "fisher_vp_analytic or fisher_vp_hessian for a vine batch (one action per state is "
         "what the empirical FIM needs)", getattr(fisher, "__name__", fisher))
  for k in ("actions", target, "logp_q", "old_dist"):
    for leaf in jax.tree_util.tree_leaves(batch.get(k)):
      _check(f"batch[{k!r}]", np.ndim(leaf) and np.shape(leaf)[0] == n,
             f"an array with the leading axis N = {n} of batch['obs']", np.shape(leaf))
  check_policy(policy, params, batch["obs"])
  for k, leaf in ((k, x) for k in batch for x in jax.tree_util.tree_leaves(batch[k])):
    # Values a caller's jit traces, or spread over processes, cannot be read here: the update
    # itself refuses a non-finite batch then (info["finite_batch"], the same on every process).
    if _readable(leaf) and jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
      bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf))))
      if bad:
        raise ValueError(f"batch[{k!r}] contains {bad} non-finite value(s) (NaN or inf); the "
                         "update needs finite data")


# ----------------------------------------------------------------------------------------------
# Compilation: closures over the policy, kept per policy.
# ----------------------------------------------------------------------------------------------

_TRACED = ("delta", "damping", "backtrack_ratio", "step_size")   # the rest fix shapes or code
_COMPILED = {}   # (make, the policy's entry names and function ids, static values) -> jitted


def jit_for(policy, make, *static):
  """jax.jit(make(policy, *static)), made once per policy and static values: make closes over
  the policy's functions (compile-time constants, as PureJaxRL's make_train closes over its
  network), and the same dict, or one with the same functions, gets the same compiled function
  again instead of compiling anew. Policies are told apart by the identity of their functions
  (kept alive here, so that an identity is not reused), so their entries need not be hashable;
  static values must be."""
  functions = (policy["apply"], *(f for _, f in sorted(policy["dist"].items())))
  key = (make, tuple(sorted(policy["dist"])), tuple(map(id, functions)), static)
  if key not in _COMPILED:
    closed = make({"apply": policy["apply"], "dist": dict(policy["dist"])}, *static)
    _COMPILED[key] = functions, jax.jit(closed)
  return _COMPILED[key][1]


def _closed_update(policy, fn, static):
  return lambda params, batch, key, traced: fn(params, batch, policy, key, **dict(static),
                                               **traced)


def _compiled(fn, params, batch, policy, key, options):
  """fn(params, batch, policy, key, **options) as one XLA computation: the policy's functions and
  the integer and function options are compile-time constants, the float options traced (a new
  δ does not recompile)."""
  options = dict(fn.__kwdefaults__, **options)
  static = tuple(sorted((k, v) for k, v in options.items() if k not in _TRACED))
  traced = {k: float(v) for k, v in options.items() if k in _TRACED}
  return jit_for(policy, _closed_update, fn, static)(
      params, dict(batch), jax.random.PRNGKey(0) if key is None else key, traced)


# ----------------------------------------------------------------------------------------------
# The checked, compiled entry points.
# ----------------------------------------------------------------------------------------------


def step(params, batch, policy, key=None, **options):
  """One TRPO policy update, checked and jit-compiled: returns (new_params, info).

  Args:
    params: θ_old, a pytree (the policy's parameters).
    batch: a dict of arrays with leading axis N (see the module docstring); a single-path batch
      (Section 5.1) needs only "obs", "actions" and "adv", a vine batch (Section 5.2) "obs",
      "actions" [N, K, ...] and "q" [N, K] (with "logp_q" [N, K]: Eq. (16); without: Eq. (15)).
    policy: {"apply", "dist"}, as the module docstring's contract says.
    key: a PRNG key choosing the Fisher subsample; pass a fresh one each iteration (the default
      PRNGKey(0) draws the same subsample for the same N).
    options: the keyword arguments of `update`, each defaulting to the constant of its name:
      delta: δ, the bound on the mean KL (DELTA, the paper's 0.01).
      damping: added to the Fisher matrix (A + damping·I) in CG (DAMPING); 0 for the exact one.
      cg_iters: k, the number of conjugate-gradient iterations (CG_ITERS, the paper's 10).
      subsample: the fraction of the batch on which A·v is computed, in (0, 1] (SUBSAMPLE, the
        paper's 0.1).
      max_backtracks: how many step lengths β·rᵏ the line search tries (MAX_BACKTRACKS).
      backtrack_ratio: r in (0, 1), the line search's shrink factor (BACKTRACK_RATIO).
      fisher: fisher_vp_analytic (JᵀMJ, Appendix C.1; the default), fisher_vp_empirical
        (covariance of score gradients) or fisher_vp_hessian (double differentiation).
      constraint: the reduction of the per-state KLs bounded by δ: jnp.mean (D̄_KL, Eq. (12);
        the default) or jnp.max (the max over the batch's states, Eq. (11)).

  Returns:
    new_params (same structure as params; θ_old itself when no step is taken) and info, a dict
    of scalars: "accepted" (a step was taken), "kl" (mean KL(old ‖ new) of the returned params),
    "max_kl", "surrogate" (L(θ_old)), "expected_improve" (gᵀΔθ), "actual_improve"
    (L(θ_new) − L(θ_old)), "backtracks", "step_fraction", "beta", "sAs", "grad_norm",
    "finite_batch" (False: non-finite values under a caller's jit; no step), "bad_direction"
    (sᵀAs ≤ 0 or non-finite, e.g. all advantages zero: no step), "entropy" (the mean entropy
    of π_θold over the batch's states: `mean_entropy`).

  Raises:
    ValueError: an option unknown or outside its range, or a batch `check_batch` refuses.
  """
  check_options(**options)
  check_batch(policy, params, batch, options.get("fisher", fisher_vp_analytic))
  return _compiled(update, params, batch, policy, key, options)


def natural_gradient_step(params, batch, policy, key=None, *, step_size, **options):
  """θ + step_size·A⁻¹g (Section 7's natural gradient with a fixed step), checked and
  jit-compiled; options (damping, cg_iters, subsample, fisher) and result as in `step` (info
  has no "expected_improve")."""
  check_options(step_size=step_size, **options)
  check_batch(policy, params, batch, options.get("fisher", fisher_vp_analytic))
  return _compiled(natural_gradient_update, params, batch, policy, key,
                   dict(options, step_size=step_size))
