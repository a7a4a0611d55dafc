"""Trust Region Policy Optimization: the policy update (Section 6, Appendix C).

One TRPO iteration solves, approximately (Eq. (14) and Appendix C, Eq. (55)):

    maximise_θ   L(θ) = E_{s,a~q}[ π_θ(a|s) / q(a|s) · Â(s, a) ]
    subject to   D̄_KL(θ_old, θ) = E_s[ KL(π_θold(·|s) ‖ π_θ(·|s)) ] ≤ δ

by (1) the gradient g = ∇L(θ_old); (2) the search direction s ≈ A⁻¹g by conjugate gradient,
where A is the Fisher matrix written as JᵀMJ (Appendix C.1) and evaluated on a random subsample
of the batch; (3) the maximal step β = √(2δ / sᵀAs), As from CG's own residual; (4) a
backtracking line search that shrinks β exponentially until L improves and D̄_KL ≤ δ.
`update` is exactly that recipe; `step` checks its input and runs `update` as one
jit-compiled function.

The variants compared in Section 8 are arguments or small functions, not modes:
`fisher=fisher_vp_empirical` (A from the covariance of score gradients, Section 6),
`constraint=jnp.max` (the max over states of the KL, Eq. (11), instead of the mean), and
`natural_gradient_step` (a fixed step along A⁻¹g, no constraint and no line search, Section 7).
`fisher_vp_hessian` computes A·v by differentiating the mean KL twice, the "generic method"
Appendix C.1 mentions; it is here to be compared with.

A policy is a dict {"apply": apply(params, obs) -> µ, "dist": a distribution dict} (see
`policies.py`; a distribution of your own works if it has "log_prob", "kl" and "fisher_vp").
A batch is a dict of arrays with a common leading axis N:
  "obs":      [N, *obs_shape]    states s_n
  "actions":  [N, ...]           actions a_n ~ q(·|s_n)
  "adv":      [N]                advantage or Q estimates Â(s_n, a_n) (Section 5)
  "old_dist": µ_old, optional    the old policy's distribution parameters at s_n (default:
                                 computed from params, which are θ_old)
  "logp_q":   [N], optional      log q(a_n|s_n) of the sampling distribution (default: q = π_old,
                                 the single-path case of Section 5.1)
A vine batch (Section 5.2) has "q" [N, K] instead of "adv", "actions" [N, K, ...] and, for the
self-normalised estimator of Eq. (16), "logp_q" [N, K] (see `vine_surrogate`).
"""

import functools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import cg
import policies

# ----------------------------------------------------------------------------------------------
# Objective and constraint (Eq. (11)–(16)).
# ----------------------------------------------------------------------------------------------


def surrogate(policy, params, batch):
  """L(θ) = (1/N) Σₙ π_θ(aₙ|sₙ)/q(aₙ|sₙ) · Âₙ, the sample estimate of Eq. (14); a scalar.

  batch: "obs" [N, ...], "actions" [N, ...], "adv" [N], "logp_q" [N].
  """
  return _surrogate_of_mu(policy, policy["apply"](params, batch["obs"]), batch)


def vine_surrogate(policy, params, batch):
  """The vine estimate of L_θold(θ) over a rollout set of N states with K actions each.

  batch: "obs" [N, ...], "actions" [N, K, ...], "q" [N, K]. Without "logp_q", the all-actions
  estimator of Eq. (15), for small discrete action spaces with a_1..a_K the whole action set:
      L_n(θ) = Σₖ π_θ(aₖ|s_n) Q̂(s_n, aₖ).
  With "logp_q" = log q(a_{n,k}|s_n) [N, K], the self-normalised importance-sampling estimator
  of Eq. (16) (q = π_old on continuous tasks, uniform on Atari):
      L_n(θ) = Σₖ wₖ Q̂(s_n, a_{n,k}) / Σₖ wₖ,   wₖ = π_θ(a_{n,k}|s_n) / q(a_{n,k}|s_n).
  Returns the mean of L_n over the N states, a scalar.
  """
  return _surrogate_of_mu(policy, policy["apply"](params, batch["obs"]), batch)


def _surrogate_of_mu(policy, mu, batch):
  """L as a function of the network's outputs µ = µ_θ(sₙ), [N, ...] (L depends on θ only
  through them): Eq. (14) for a single-path batch ("adv", `surrogate`), Eq. (15) or (16) for a
  vine batch ("q", `vine_surrogate`)."""
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


# ----------------------------------------------------------------------------------------------
# Fisher-vector products: fisher_vp(policy, params, batch) -> (v ↦ A v) on flat vectors.
# ----------------------------------------------------------------------------------------------


def fisher_vp_analytic(policy, params, batch):
  """v ↦ (1/n) Σₙ Jₙᵀ M(µₙ) Jₙ v, the Fisher-vector product of Appendix C.1, over batch["obs"].

  Jₙ = ∂µ(sₙ)/∂θ is applied by a forward-mode product (jvp), M = kl''(µ, µ_old) in closed form
  by `dist["fisher_vp"]`, Jᵀ by the transpose of the same linearisation (backprop). The second
  term of Eq. (57), ∂²µ · kl', vanishes at θ = θ_old and is never computed. The network is
  linearised once; each product then costs about one forward and one backward pass over obs.
  """
  flat, unravel = ravel_pytree(params)
  mu, jvp = jax.linearize(lambda p: policy["apply"](unravel(p), batch["obs"]), flat)
  vjp = jax.linear_transpose(jvp, flat)
  n = batch["obs"].shape[0]

  def matvec(v):
    mv = policy["dist"]["fisher_vp"](mu, jvp(v))
    return vjp(jax.tree_util.tree_map(lambda x: x / n, mv))[0]
  return matvec


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
# The update.
# ----------------------------------------------------------------------------------------------


def line_search(measure, x0, full_step, n_tries, ratio):
  """Backtracking line search (Appendix C): the first x0 + rᵏ·full_step, k = 0, 1, …, n_tries−1,
  that `measure` accepts.

  measure(x) -> (ok, stats), stats a tuple of scalars. Returns (accepted, rᵏ, stats, k): the
  fraction and stats of the accepted step, all zero when none was (then k = n_tries).
  """
  def cond(state):
    k, accepted = state[:2]
    return ~accepted & (k < n_tries)

  def body(state):
    k = state[0]
    frac = ratio ** k
    cand = x0 + frac * full_step
    ok, stats = measure(cand)
    return k + 1, ok & jnp.all(jnp.isfinite(cand)), frac, stats

  zero = jnp.asarray(0.0, x0.dtype)
  n_stats = len(jax.eval_shape(measure, x0)[1])
  k, accepted, frac, stats = jax.lax.while_loop(
      cond, body, (jnp.asarray(0), jnp.asarray(False), zero, (zero,) * n_stats))
  frac, *stats = (jnp.where(accepted, x, 0.0) for x in (frac, *stats))
  return accepted, frac, tuple(stats), jnp.where(accepted, k - 1, k)


def _prepare(policy, params, batch, key, n_sub):
  """The batch with µ_old and (single path) log q filled in, the surrogate's L(θ_old) and
  g = ∇L(θ_old), the subsample of n_sub states on which A·v is computed ("we can
  compute it on 10% of the data", Appendix C.1), and whether batch and params were finite.

  One forward pass over the batch gives both µ_old and g: g = Jᵀ ∂L/∂µ, the pullback of the
  same linearisation (L depends on θ only through µ = µ_θ(sₙ)).
  """
  flat0, unravel = ravel_pytree(params)
  batch = dict(batch)
  mu, pullback = jax.vjp(lambda p: policy["apply"](unravel(p), batch["obs"]), flat0)
  old = batch.get("old_dist")
  batch["old_dist"] = jax.lax.stop_gradient(mu if old is None else old)
  if "q" not in batch and "logp_q" not in batch:     # single path: q = π_old
    batch["logp_q"] = policy["dist"]["log_prob"](batch["old_dist"], batch["actions"])
  # A NaN/inf anywhere in the batch would spread into every parameter: the step is refused
  # (`check_batch` raises before this, unless under a caller's jit). The small entries are
  # computed on zeros in its place; obs is left as it is (a copy of it would cost a pass over
  # the largest array), so non-finite obs make g and s non-finite, which refuses the step too.
  floats = [x for x in jax.tree_util.tree_leaves((batch, params))
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats]))
  batch = {k: v if k == "obs" else jax.tree_util.tree_map(
      lambda x: jnp.where(jnp.isfinite(x), x, 0) if jnp.issubdtype(x.dtype, jnp.inexact) else x,
      v) for k, v in batch.items()}
  L0, dL_dmu = jax.value_and_grad(lambda m: _surrogate_of_mu(policy, m, batch))(mu)
  g = pullback(dL_dmu)[0]
  n, sub = batch["obs"].shape[0], batch
  if n_sub < n:
    idx = jax.random.choice(key, n, (n_sub,), replace=False)
    sub = jax.tree_util.tree_map(lambda x: x[idx], batch)
  return batch, (L0, g), sub, finite


def _measure(policy, batch, L0, unravel):
  """p ↦ (L(p) − L(θ_old), KL(old ‖ p) per state) over the whole batch: the surrogate's gain
  (Eq. (14)-(16)) and the terms of D̄_KL (Eq. (12)) that the line search of Appendix C checks.
  One forward pass, in chunks (`policies.apply_in_chunks`), gives both."""
  def measure(p):
    mu = policies.apply_in_chunks(policy["apply"], unravel(p), batch["obs"])
    return _surrogate_of_mu(policy, mu, batch) - L0, policy["dist"]["kl"](batch["old_dist"], mu)
  return measure


def update(policy, params, batch, key, *, delta, damping, backtrack_ratio, fisher, constraint,
           cg_iters, n_sub, max_backtracks):
  """The TRPO update of Appendix C, traceable (see `step` for the arguments and the result)."""
  flat0, unravel = ravel_pytree(params)
  batch, (L0, g), sub, finite = _prepare(policy, params, batch, key, n_sub)  # g = ∇L(θ_old)
  fvp = fisher(policy, params, sub)
  # Damping adds damping·I to A: it bounds the step along directions the (subsampled, finite-
  # sample) Fisher sees as flat, where A⁻¹ would blow up. Not in the paper; 0 disables it.
  A = lambda v: fvp(v) + damping * v
  s, As = cg.solve_with_product(A, g, iters=cg_iters)        # s ≈ A⁻¹g, and A s from CG
  sAs = jnp.vdot(s, As)
  good = finite & jnp.isfinite(sAs) & (sAs > 0) & jnp.all(jnp.isfinite(s))
  # β = √(2δ / sᵀAs): the step length at which the quadratic model ½ (βs)ᵀA(βs) equals δ.
  beta = jnp.sqrt(2.0 * delta / jnp.where(good, sAs, 1.0))
  full_step = beta * s
  measure = _measure(policy, batch, L0, unravel)

  def accept(p):   # L improves and the (nonlinear) KL constraint holds
    improve, kls = measure(p)
    return (improve > 0) & (constraint(kls) <= delta), (improve, jnp.mean(kls), jnp.max(kls))
  accepted, frac, (improve, kl, max_kl), backtracks = line_search(
      accept, flat0, full_step, jnp.where(good, max_backtracks, 0), backtrack_ratio)
  # `where`, not frac = 0: a rejected full_step may hold inf or NaN, and 0·NaN = NaN.
  new_flat = jnp.where(accepted, flat0 + frac * full_step, flat0)
  return unravel(new_flat), {
      "accepted": accepted, "kl": kl, "max_kl": max_kl, "surrogate": L0,
      "expected_improve": jnp.where(accepted, jnp.vdot(g, frac * full_step), 0.0),
      "actual_improve": improve, "backtracks": backtracks, "step_fraction": frac, "beta": beta,
      "sAs": sAs, "grad_norm": jnp.linalg.norm(g), "finite_batch": finite,
      "bad_direction": ~good, "entropy": policies.mean_entropy(policy["dist"], batch["old_dist"])}


def natural_gradient_update(policy, params, batch, key, *, step_size, damping, fisher, cg_iters,
                            n_sub):
  """θ_new = θ_old + (1/λ)·A⁻¹g with a fixed step size 1/λ = step_size (Section 7): no KL
  constraint and no line search. Traceable; returns (new_params, info) like `update`."""
  flat0, unravel = ravel_pytree(params)
  batch, (L0, g), sub, finite = _prepare(policy, params, batch, key, n_sub)
  fvp = fisher(policy, params, sub)
  A = lambda v: fvp(v) + damping * v
  s, As = cg.solve_with_product(A, g, iters=cg_iters)
  sAs = jnp.vdot(s, As)
  good = finite & jnp.isfinite(sAs) & (sAs > 0) & jnp.all(jnp.isfinite(s))
  cand = flat0 + step_size * s
  accepted = good & jnp.all(jnp.isfinite(cand))
  improve, kls = _measure(policy, batch, L0, unravel)(cand)
  improve, kl, max_kl = (jnp.where(accepted, x, 0.0) for x in (improve, jnp.mean(kls),
                                                               jnp.max(kls)))
  return unravel(jnp.where(accepted, cand, flat0)), {
      "accepted": accepted, "kl": kl, "max_kl": max_kl, "surrogate": L0,
      "actual_improve": improve, "backtracks": jnp.asarray(0),
      "step_fraction": jnp.where(accepted, 1.0, 0.0), "beta": jnp.asarray(step_size),
      "sAs": sAs, "grad_norm": jnp.linalg.norm(g), "finite_batch": finite,
      "bad_direction": ~good, "entropy": policies.mean_entropy(policy["dist"], batch["old_dist"])}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _compiled(fn, frozen_policy, static, params, batch, key, traced):
  """fn(policy, params, batch, key, **options) as one XLA computation: the policy's functions and
  the integer and function options are compile-time constants, the float options traced."""
  return fn(policies.thaw(frozen_policy), params, batch, key, **dict(static), **traced)


# ----------------------------------------------------------------------------------------------
# Checked entry points.
# ----------------------------------------------------------------------------------------------


def _check(name, ok, allowed, value):
  if not ok:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _is_number(x):
  return isinstance(x, (int, float, np.integer, np.floating)) and math.isfinite(x)


def check_options(delta=0.01, damping=0.1, cg_iters=10, subsample=0.1, max_backtracks=10,
                  backtrack_ratio=0.8, step_size=1.0, fisher=fisher_vp_analytic,
                  constraint=jnp.mean):
  """Raises ValueError naming the first option of `step` outside its range."""
  _check("fisher", callable(fisher), "a function (policy, params, batch) -> matvec, e.g. "
         "fisher_vp_analytic", fisher)
  _check("constraint", callable(constraint), "a function of the per-state KLs, e.g. jnp.mean "
         "or jnp.max", constraint)
  _check("delta", _is_number(delta) and delta > 0, "a finite number > 0", delta)
  _check("damping", _is_number(damping) and damping >= 0, "a finite number >= 0", damping)
  _check("cg_iters", isinstance(cg_iters, int) and cg_iters >= 1, "an integer >= 1", cg_iters)
  _check("subsample", _is_number(subsample) and 0 < subsample <= 1, "in (0, 1]", subsample)
  _check("max_backtracks", isinstance(max_backtracks, int) and max_backtracks >= 1,
         "an integer >= 1", max_backtracks)
  _check("backtrack_ratio", _is_number(backtrack_ratio) and 0 < backtrack_ratio < 1, "in (0, 1)",
         backtrack_ratio)
  _check("step_size", _is_number(step_size) and step_size > 0, "a finite number > 0", step_size)


def check_batch(policy, params, batch, fisher=fisher_vp_analytic):
  """Raises ValueError for a batch `update` cannot take: missing or mismatched entries, obs the
  policy cannot take, non-finite values (arrays traced by a caller's jit are not inspected)."""
  target = "q" if "q" in batch else "adv"
  missing = [k for k in ("obs", "actions", target) if k not in batch]
  if missing or ("q" in batch and "adv" in batch):
    raise ValueError(f"batch needs 'obs', 'actions' and one of 'adv' (single path) or 'q' (vine), "
                     f"optionally 'old_dist', 'logp_q'; got keys {sorted(batch)}, missing {missing}")
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
  try:
    jax.eval_shape(policy["apply"], params, batch["obs"])
  except Exception as e:  # noqa: BLE001 - re-raised with the shapes that matter
    raise ValueError(f"the policy cannot be applied to batch['obs'] of shape {shape('obs')}: "
                     f"{type(e).__name__}: {e}") from e
  for k, leaf in ((k, x) for k in batch for x in jax.tree_util.tree_leaves(batch[k])):
    if not isinstance(leaf, jax.core.Tracer) and jnp.issubdtype(jnp.result_type(leaf),
                                                                 jnp.inexact):
      # An array sharded over processes (`train.py --processes`): each checks its own part.
      parts = [s.data for s in leaf.addressable_shards] if isinstance(leaf, jax.Array) else [leaf]
      bad = sum(int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x)))) for x in parts)
      if bad:
        raise ValueError(f"batch[{k!r}] contains {bad} non-finite value(s) (NaN or inf); the "
                         "update needs finite data")


def _n_sub(batch, subsample):
  n = int(np.shape(batch["obs"])[0])
  return min(n, max(1, int(round(subsample * n))))


def step(params, batch, policy, key=None, *, delta=0.01, damping=0.1, cg_iters=10,
         subsample=0.1, max_backtracks=10, backtrack_ratio=0.8, fisher=fisher_vp_analytic,
         constraint=jnp.mean):
  """One TRPO policy update, checked and jit-compiled: returns (new_params, info).

  Args:
    params: θ_old, a pytree (the policy's parameters).
    batch: a dict of arrays with leading axis N (see the module docstring); a single-path batch
      (Section 5.1) needs only "obs", "actions" and "adv", a vine batch (Section 5.2) "obs",
      "actions" [N, K, ...] and "q" [N, K] (with "logp_q" [N, K]: Eq. (16); without: Eq. (15)).
    policy: {"apply", "dist"} (a policy of `policies`, or your own with the same functions).
    key: a PRNG key choosing the Fisher subsample; pass a fresh one each iteration (the default
      PRNGKey(0) draws the same subsample for the same N).
    delta: δ, the bound on the KL divergence (the paper uses 0.01 throughout).
    damping: added to the Fisher matrix (A + damping·I) in CG; 0 for the exact Fisher.
    cg_iters: k, the number of conjugate-gradient iterations (10 in the paper).
    subsample: the fraction of the batch on which A·v is computed, in (0, 1] (0.1 in the paper).
    max_backtracks: how many step lengths β·rᵏ the line search tries before giving up.
    backtrack_ratio: r in (0, 1), the factor by which the line search shrinks the step. The
      full step lands at KL ≈ δ by construction and often a hair above it, so a mild 0.8 loses
      little where 0.5 would halve the step.
    fisher: fisher_vp_analytic (JᵀMJ, Appendix C.1), fisher_vp_empirical (covariance of score
      gradients) or fisher_vp_hessian (double differentiation of the mean KL).
    constraint: the reduction of the per-state KLs bounded by δ: jnp.mean (D̄_KL, Eq. (12)) or
      jnp.max (the max over the batch's states, Eq. (11)).

  Returns:
    new_params (same structure as params; θ_old itself when no step is taken) and info, a dict
    of scalars: "accepted" (a step was taken), "kl" (mean KL(old ‖ new) of the returned params),
    "max_kl", "surrogate" (L(θ_old)), "expected_improve" (gᵀΔθ), "actual_improve"
    (L(θ_new) − L(θ_old)), "backtracks", "step_fraction", "beta", "sAs", "grad_norm",
    "finite_batch" (False: non-finite values under a caller's jit; no step), "bad_direction"
    (sᵀAs ≤ 0 or non-finite, e.g. all advantages zero: no step), "entropy" (the mean entropy
    of π_θold over the batch's states: `policies.mean_entropy`).

  Raises:
    ValueError: an option outside its range, or a batch `check_batch` refuses.
  """
  check_options(delta, damping, cg_iters, subsample, max_backtracks, backtrack_ratio,
                fisher=fisher, constraint=constraint)
  check_batch(policy, params, batch, fisher)
  static = (("cg_iters", cg_iters), ("constraint", constraint), ("fisher", fisher),
            ("max_backtracks", max_backtracks), ("n_sub", _n_sub(batch, subsample)))
  traced = {"delta": float(delta), "damping": float(damping),
            "backtrack_ratio": float(backtrack_ratio)}
  return _compiled(update, policies.freeze(policy), static, params, dict(batch),
                   jax.random.PRNGKey(0) if key is None else key, traced)


def natural_gradient_step(params, batch, policy, key=None, *, step_size, damping=0.1,
                          cg_iters=10, subsample=0.1, fisher=fisher_vp_analytic):
  """θ + step_size·A⁻¹g (Section 7's natural gradient with a fixed step), checked and
  jit-compiled; arguments and result as in `step` (info has no "expected_improve")."""
  check_options(damping=damping, cg_iters=cg_iters, subsample=subsample, step_size=step_size,
                fisher=fisher)
  check_batch(policy, params, batch, fisher)
  static = (("cg_iters", cg_iters), ("fisher", fisher), ("n_sub", _n_sub(batch, subsample)))
  return _compiled(natural_gradient_update, policies.freeze(policy), static, params, dict(batch),
                   jax.random.PRNGKey(0) if key is None else key,
                   {"step_size": float(step_size), "damping": float(damping)})


if __name__ == "__main__":
  print("trpo.py holds the update only; train with: python train.py [--env ID] (see --help)",
        file=sys.stderr)
  sys.exit(2)
