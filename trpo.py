"""Trust Region Policy Optimization: the policy update (Section 6, Appendix C).

One TRPO iteration solves, approximately (Eq. (14) and Appendix C, Eq. (55)):

    maximise_θ   L(θ) = E_{s,a~q}[ π_θ(a|s) / q(a|s) · Â(s, a) ]
    subject to   D̄_KL(θ_old, θ) = E_s[ KL(π_θold(·|s) ‖ π_θ(·|s)) ] ≤ δ

by (1) the gradient g = ∇L(θ_old); (2) the search direction s ≈ A⁻¹g by conjugate gradient,
where A is the Fisher matrix written as JᵀMJ (Appendix C.1) and evaluated on a random subsample
of the batch; (3) the maximal step β = √(2δ / sᵀAs); (4) a backtracking line search that
shrinks β exponentially until L improves and D̄_KL ≤ δ.

`step` is the whole update, one jit-compiled function. The variants compared in Section 8 are
options of it: `method="natural_gradient"` (a fixed step 1/λ along A⁻¹g, no constraint, no line
search; Section 7), `fisher="empirical"` (A from the covariance of score gradients instead of the
analytic Hessian of the KL; Section 6), `constraint="max"` (max over states of the KL, Eq. (11),
instead of the mean). `fisher="hessian"` computes A·v by differentiating the mean KL twice, the
"generic method" Appendix C.1 mentions; it is here to be compared with.

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

import argparse
import functools
import math
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import cg
import policies

METHODS = ("trpo", "natural_gradient")
FISHERS = ("analytic", "empirical", "hessian")
CONSTRAINTS = ("mean", "max")


# ----------------------------------------------------------------------------------------------
# Objective and constraint (Eq. (14)).
# ----------------------------------------------------------------------------------------------

def surrogate(apply, dist, params, batch):
  """L(θ) = (1/N) Σₙ π_θ(aₙ|sₙ)/q(aₙ|sₙ) · Âₙ, the sample estimate of Eq. (14); a scalar.

  `batch` must hold "obs", "actions", "adv" and "logp_q" (see the module docstring).
  """
  logp = dist["log_prob"](apply(params, batch["obs"]), batch["actions"])
  return jnp.mean(jnp.exp(logp - batch["logp_q"]) * batch["adv"])


def kl_per_state(apply, dist, params, obs, old_dist):
  """KL(π_old(·|sₙ) ‖ π_θ(·|sₙ)) for each state, [N] (the terms of D̄_KL in Eq. (12))."""
  return dist["kl"](old_dist, apply(params, obs))


def mean_kl(apply, dist, params, obs, old_dist):
  """D̄_KL(θ_old, θ) = (1/N) Σₙ KL(π_old(·|sₙ) ‖ π_θ(·|sₙ)), the constraint of Eq. (12)."""
  return jnp.mean(kl_per_state(apply, dist, params, obs, old_dist))


def vine_surrogate(apply, dist, params, obs, actions, q_hat, logp_q=None):
  """The vine estimate of L_θold(θ) over a rollout set of N states with K actions each.

  obs [N, ...]; actions [N, K, ...]; q_hat [N, K]. Without logp_q, the all-actions estimator of
  Eq. (15), for small discrete action spaces with a_1..a_K the whole action set:
      L_n(θ) = Σₖ π_θ(aₖ|s_n) Q̂(s_n, aₖ).
  With logp_q = log q(a_{n,k}|s_n) [N, K], the self-normalised importance-sampling estimator of
  Eq. (16) (q = π_old on continuous tasks, uniform on Atari):
      L_n(θ) = Σₖ wₖ Q̂(s_n, a_{n,k}) / Σₖ wₖ,   wₖ = π_θ(a_{n,k}|s_n) / q(a_{n,k}|s_n).
  Returns the mean of L_n over the N states, a scalar.
  """
  n, k = q_hat.shape
  mu = apply(params, obs)
  tiled = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), mu)
  logp = dist["log_prob"](tiled, actions.reshape((n * k,) + actions.shape[2:])).reshape(n, k)
  if logp_q is None:
    return jnp.mean(jnp.sum(jnp.exp(logp) * q_hat, axis=1))
  # Self-normalised weights via a softmax of log-weights: no overflow for large ratios.
  w = jax.nn.softmax(logp - logp_q, axis=1)
  return jnp.mean(jnp.sum(w * q_hat, axis=1))


# ----------------------------------------------------------------------------------------------
# Fisher-vector products. Each returns a function v ↦ A v on flat parameter vectors.
# ----------------------------------------------------------------------------------------------

def fisher_vp_analytic(apply, dist, flat, unravel, obs):
  """v ↦ (1/n) Σₙ Jₙᵀ M(µₙ) Jₙ v, the Fisher-vector product of Appendix C.1.

  Jₙ = ∂µ(sₙ)/∂θ is applied by a forward-mode product (jvp), M = kl''(µ, µ_old) in closed form
  by `dist["fisher_vp"]`, Jᵀ by the transpose of the same linearisation (backprop). The second
  term of Eq. (57), ∂²µ · kl', vanishes at θ = θ_old and is never computed. The network is
  linearised once; each product then costs about one forward and one backward pass over obs.
  """
  mu, jvp = jax.linearize(lambda p: apply(unravel(p), obs), flat)
  vjp = jax.linear_transpose(jvp, flat)
  n = obs.shape[0]

  def matvec(v):
    return vjp(jax.tree_util.tree_map(lambda x: x / n, dist["fisher_vp"](mu, jvp(v))))[0]
  return matvec


def fisher_vp_empirical(apply, dist, flat, unravel, obs, actions):
  """v ↦ (1/n) Gᵀ(G v) with Gₙ = ∇_θ log π_θ(aₙ|sₙ): the empirical FIM of Section 6.

  G v is one forward-mode product of the per-sample log-likelihoods and Gᵀu one backward pass,
  so the n × dim θ matrix of score gradients is never stored.
  """
  _, jvp = jax.linearize(lambda p: dist["log_prob"](apply(unravel(p), obs), actions), flat)
  vjp = jax.linear_transpose(jvp, flat)
  n = obs.shape[0]
  return lambda v: vjp(jvp(v) / n)[0]


def fisher_vp_hessian(apply, dist, flat, unravel, obs, old_dist):
  """v ↦ ∇²_θ D̄_KL(θ_old, θ) v by double differentiation (forward-over-reverse).

  The "generic method" of Appendix C.1, what most libraries do; equal to the analytic product
  at θ = θ_old, kept to compare against.
  """
  grad_kl = jax.grad(lambda p: mean_kl(apply, dist, unravel(p), obs, old_dist))
  return lambda v: jax.jvp(grad_kl, (flat,), (v,))[1]


# ----------------------------------------------------------------------------------------------
# The update.
# ----------------------------------------------------------------------------------------------

def _all_finite(tree):
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _zero_nonfinite(tree):
  return jax.tree_util.tree_map(
      lambda x: jnp.where(jnp.isfinite(x), x, 0) if jnp.issubdtype(x.dtype, jnp.inexact) else x,
      tree)


@functools.partial(jax.jit, static_argnames=(
    "apply", "dist_name", "method", "fisher", "constraint", "cg_iters", "n_sub",
    "max_backtracks"))
def _step(params, batch, key, delta, damping, step_size, backtrack_ratio, *, apply, dist_name,
          method, fisher, constraint, cg_iters, n_sub, max_backtracks):
  """The jit-compiled body of `step`; arguments as there, already validated."""
  dist = policies.DISTRIBUTIONS[dist_name]
  flat0, unravel = ravel_pytree(params)
  obs, actions = batch["obs"], batch["actions"]
  old = batch.get("old_dist")
  if old is None:
    old = apply(params, obs)
  old = jax.lax.stop_gradient(old)
  vine = "q" in batch          # a vine batch (Section 5.2): K actions and Q̂'s per state
  if vine:
    data = {"obs": obs, "actions": actions, "q": batch["q"], "old": old}
    if "logp_q" in batch:
      data["logp_q"] = batch["logp_q"]
  else:
    logp_q = batch.get("logp_q")
    if logp_q is None:
      logp_q = dist["log_prob"](old, actions)
    data = {"obs": obs, "actions": actions, "adv": batch["adv"], "logp_q": logp_q, "old": old}
  # A NaN/inf anywhere in the batch would spread into every parameter. Compute on zeros in its
  # place and refuse the step; `info["finite_batch"]` tells the caller (and `step` raises).
  finite_batch = _all_finite(data) & _all_finite(params)
  data = _zero_nonfinite(data)

  def L(p):
    if vine:
      return vine_surrogate(apply, dist, unravel(p), data["obs"], data["actions"], data["q"],
                            data.get("logp_q"))
    return surrogate(apply, dist, unravel(p), data)

  L0, g = jax.value_and_grad(L)(flat0)

  # Fisher-vector product on a random subsample of n_sub states (Appendix C.1: "we can compute
  # it on 10% of the data").
  n = obs.shape[0]
  if n_sub < n:
    idx = jax.random.choice(key, n, (n_sub,), replace=False)
    sub = jax.tree_util.tree_map(lambda x: x[idx], data)
  else:
    sub = data
  if fisher == "analytic":
    fvp = fisher_vp_analytic(apply, dist, flat0, unravel, sub["obs"])
  elif fisher == "empirical":
    fvp = fisher_vp_empirical(apply, dist, flat0, unravel, sub["obs"], sub["actions"])
  else:
    fvp = fisher_vp_hessian(apply, dist, flat0, unravel, sub["obs"], sub["old"])
  # Damping adds damping·I to A: it bounds the step along directions the (subsampled, finite-
  # sample) Fisher sees as flat, where A⁻¹ would blow up. Not in the paper; 0 disables it.
  A = lambda v: fvp(v) + damping * v

  s = cg.solve(A, g, iters=cg_iters)
  sAs = jnp.vdot(s, A(s))
  good_direction = finite_batch & jnp.isfinite(sAs) & (sAs > 0) & jnp.all(jnp.isfinite(s))

  def measure(p):
    """(L(p) − L(θ_old), mean KL, max KL) over the whole batch: one forward pass."""
    kls = kl_per_state(apply, dist, unravel(p), data["obs"], data["old"])
    return L(p) - L0, jnp.mean(kls), jnp.max(kls)

  if method == "natural_gradient":
    # θ_new = θ_old + (1/λ) A⁻¹ g with a fixed step size 1/λ (Section 7): no KL constraint and no
    # line search.
    full_step = step_size * s
    beta = jnp.asarray(step_size, flat0.dtype)
    cand = flat0 + full_step
    accepted = good_direction & jnp.all(jnp.isfinite(cand))
    frac = jnp.where(accepted, 1.0, 0.0)
    improve, kl, max_kl = jax.tree_util.tree_map(lambda x: jnp.where(accepted, x, 0.0),
                                                 measure(cand))
    backtracks = jnp.asarray(0)
  else:
    # β = √(2δ / sᵀAs): the step length at which the quadratic model ½ (βs)ᵀA(βs) equals δ.
    beta = jnp.sqrt(2.0 * delta / jnp.where(good_direction, sAs, 1.0))
    full_step = beta * s

    # Backtracking line search (Appendix C): try β·rᵏ, k = 0, 1, …, and take the first step that
    # improves L and satisfies the (nonlinear) KL constraint.
    def cond(state):
      k, accepted = state[:2]
      return good_direction & ~accepted & (k < max_backtracks)

    def body(state):
      k = state[0]
      frac = backtrack_ratio ** k
      cand = flat0 + frac * full_step
      improve, kl, max_kl = measure(cand)
      ok = ((improve > 0) & ((max_kl if constraint == "max" else kl) <= delta)
            & jnp.all(jnp.isfinite(cand)))
      return k + 1, ok, frac, improve, kl, max_kl

    zero = jnp.asarray(0.0, flat0.dtype)
    k, accepted, frac, improve, kl, max_kl = jax.lax.while_loop(
        cond, body, (jnp.asarray(0), jnp.asarray(False), zero, zero, zero, zero))
    frac, improve, kl, max_kl = (jnp.where(accepted, x, 0.0) for x in (frac, improve, kl, max_kl))
    backtracks = jnp.where(accepted, k - 1, k)

  # `where`, not frac = 0: a rejected full_step may hold inf or NaN, and 0·NaN = NaN.
  new_flat = jnp.where(accepted, flat0 + frac * full_step, flat0)
  info = {
      "accepted": accepted,
      "kl": kl,
      "max_kl": max_kl,
      "surrogate": L0,
      "expected_improve": jnp.where(accepted, jnp.vdot(g, frac * full_step), 0.0),
      "actual_improve": improve,
      "backtracks": backtracks,
      "step_fraction": frac,
      "beta": beta,
      "sAs": sAs,
      "grad_norm": jnp.linalg.norm(g),
      "finite_batch": finite_batch,
      "bad_direction": ~good_direction,
  }
  return unravel(new_flat), info


def _check_positive(name, value, upper=math.inf, upper_open=True):
  ok = isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) \
      and value > 0 and (value < upper if upper_open else value <= upper)
  if not ok:
    allowed = f"(0, {upper})" if upper_open else f"(0, {upper}]"
    allowed = "a finite number > 0" if upper == math.inf else allowed
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _validate_batch(batch, policy, params, fisher):
  target = "q" if "q" in batch else "adv"
  for k in ("obs", "actions", target):
    if k not in batch:
      raise ValueError(f"batch is missing {k!r}; it needs 'obs', 'actions' and 'adv' (single "
                       f"path) or 'q' (vine), optionally 'old_dist', 'logp_q'; got keys "
                       f"{sorted(batch)}")
  if "q" in batch and "adv" in batch:
    raise ValueError("batch has both 'adv' (single path) and 'q' (vine); give one")
  n = np.shape(batch["obs"])[0] if np.ndim(batch["obs"]) else None
  if not n:
    raise ValueError(f"batch['obs'] must have a leading batch axis of size >= 1, "
                     f"got shape {np.shape(batch['obs'])}")
  if target == "adv" and np.ndim(batch["adv"]) != 1:
    raise ValueError(f"batch['adv'] must have shape [N] = [{n}], got {np.shape(batch['adv'])}")
  if target == "q":
    if np.ndim(batch["q"]) != 2:
      raise ValueError(f"batch['q'] must have shape [N, K], got {np.shape(batch['q'])}")
    nk = tuple(np.shape(batch["q"]))
    for k in ("actions", "logp_q"):
      if k in batch and tuple(np.shape(batch[k]))[:2] != nk:
        raise ValueError(f"batch[{k!r}] must start with [N, K] = {list(nk)} like batch['q'], "
                         f"got shape {np.shape(batch[k])}")
    if fisher == "empirical":
      raise ValueError("fisher='empirical' needs a single-path batch (one action per state)")
  for k in ("actions", target, "logp_q", "old_dist"):
    for leaf in jax.tree_util.tree_leaves(batch.get(k)):
      if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
        raise ValueError(f"batch[{k!r}] has leading shape {np.shape(leaf)}, but batch['obs'] "
                         f"has {n} samples; every entry needs the same leading axis N = {n}")
  try:
    jax.eval_shape(policy["apply"], params, batch["obs"])
  except Exception as e:  # noqa: BLE001 - re-raised with the shapes that matter
    raise ValueError(f"the policy cannot be applied to batch['obs'] of shape "
                     f"{np.shape(batch['obs'])}: {type(e).__name__}: {e}") from e
  for k, v in batch.items():
    for leaf in jax.tree_util.tree_leaves(v):
      dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
      if isinstance(leaf, jax.core.Tracer) or not np.issubdtype(dtype, np.inexact):
        continue
      bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf))))
      if bad:
        raise ValueError(f"batch[{k!r}] contains {bad} non-finite value(s) (NaN or inf); "
                         f"the update needs finite data")


def step(params, batch, policy, key=None, *, delta=0.01, damping=0.1, cg_iters=10,
         subsample=0.1, max_backtracks=10, backtrack_ratio=0.8, method="trpo",
         fisher="analytic", constraint="mean", step_size=None):
  """One TRPO policy update: returns (new_params, info).

  Args:
    params: θ_old, a pytree (the policy's parameters).
    batch: a dict of arrays with leading axis N (see the module docstring); single-path batches
      (Section 5.1) need only "obs", "actions" and "adv". A vine batch (Section 5.2) has
      "obs" [N, ...], "actions" [N, K, ...], "q" [N, K] and, for the self-normalised estimator
      of Eq. (16), "logp_q" [N, K]; without it, the all-actions estimator of Eq. (15).
    policy: a policy dict from `policies` ({"init", "apply", "dist"}).
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
    method: "trpo", or "natural_gradient" (θ + step_size·A⁻¹g; no constraint, no line search).
    fisher: "analytic" (JᵀMJ, Appendix C.1), "empirical" (covariance of score gradients) or
      "hessian" (double differentiation of the mean KL).
    constraint: "mean" (D̄_KL, Eq. (12)) or "max" (max over the batch's states, Eq. (11)).
    step_size: 1/λ for method="natural_gradient" (required there, unused otherwise).

  Returns:
    new_params (same structure as params; θ_old itself when no step is taken) and info, a dict
    of scalars: "accepted" (a step was taken), "kl" (mean KL(old ‖ new) of the returned params),
    "max_kl", "surrogate" (L(θ_old)), "expected_improve" (gᵀΔθ), "actual_improve"
    (L(θ_new) − L(θ_old)), "backtracks", "step_fraction", "beta", "sAs", "grad_norm",
    "finite_batch", "bad_direction" (sᵀAs ≤ 0 or non-finite: no step).

  Raises:
    ValueError: an option outside its range, a batch with missing or mismatched entries, obs
      the policy cannot take, or non-finite values in the batch.
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if fisher not in FISHERS:
    raise ValueError(f"fisher must be one of {FISHERS}, got {fisher!r}")
  if constraint not in CONSTRAINTS:
    raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
  _check_positive("delta", delta)
  if not (isinstance(damping, (int, float)) and math.isfinite(damping) and damping >= 0):
    raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
  if not isinstance(cg_iters, int) or cg_iters < 1:
    raise ValueError(f"cg_iters must be an integer >= 1, got {cg_iters!r}")
  _check_positive("subsample", subsample, 1.0, upper_open=False)
  if not isinstance(max_backtracks, int) or max_backtracks < 1:
    raise ValueError(f"max_backtracks must be an integer >= 1, got {max_backtracks!r}")
  _check_positive("backtrack_ratio", backtrack_ratio, 1.0)
  if method == "natural_gradient":
    _check_positive("step_size", step_size)
  if policy["dist"]["name"] not in policies.DISTRIBUTIONS:
    raise ValueError(f"unknown distribution {policy['dist']['name']!r}; "
                     f"known: {sorted(policies.DISTRIBUTIONS)}")
  _validate_batch(batch, policy, params, fisher)
  n = int(np.shape(batch["obs"])[0])
  n_sub = min(n, max(1, int(round(subsample * n))))
  key = jax.random.PRNGKey(0) if key is None else key
  return _step(params, dict(batch), key, float(delta), float(damping),
               float(step_size or 0.0), float(backtrack_ratio), apply=policy["apply"],
               dist_name=policy["dist"]["name"], method=method, fisher=fisher,
               constraint=constraint, cg_iters=cg_iters, n_sub=n_sub,
               max_backtracks=max_backtracks)


# ----------------------------------------------------------------------------------------------
# The training program (Section 6: "The algorithms repeatedly perform the following steps").
# ----------------------------------------------------------------------------------------------

DEFAULTS = {
    "env": "CartPole-v1", "steps": 100_000, "seed": 0, "method": "single_path",
    "delta": 0.01, "gamma": 0.99, "lam": 0.97, "batch": 2048, "num_envs": 8, "cg_iters": 10,
    "damping": 0.1, "subsample": 0.1, "estimator": "gae", "hidden": (64, 64),
    "normalize_obs": False, "linear_policy": False, "vf_epochs": 10, "vf_lr": 1e-3,
    "vectorization": "auto", "log_std_init": 0.0,
    # Vine (Section 5.2; Table 2 uses N·K = 500 Q-values, K = 4, rollouts of 50 on Swimmer).
    "vine_states": 125, "vine_actions": 4, "vine_horizon": 50, "vine_q": "policy",
    "vine_workers": 1,
    # The comparison methods of Section 8 (see ALGORITHMS and baselines.py).
    "step_size": 0.1, "population": 20, "elite_frac": 0.2, "search_std": 0.5,
    "temperature": 1.0, "reps_epsilon": 0.1, "ml_epochs": 10, "ml_lr": 1e-2,
}

# --method: the algorithms of Figure 4. TRPO with single-path or vine sampling (Section 5); the
# ablations of Section 8, which sample like single path and change one thing of the update:
# a fixed step instead of the KL constraint (natural_gradient), the Fisher matrix from score
# covariances (empirical_fim), the max-KL constraint of Eq. (11) (max_kl); and the non-TRPO
# baselines of baselines.py: CEM and CMA-ES (episodic parameter search), RWR and REPS (weighted
# maximum likelihood on single-path samples).
ALGORITHMS = ("single_path", "vine", "natural_gradient", "empirical_fim", "max_kl", "cem", "cma",
              "rwr", "reps")
_SEARCH = ("cem", "cma")


def validate_config(cfg):
  """Raises ValueError naming the first option outside its allowed range."""
  unknown = set(cfg) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
  checks = [
      ("steps", cfg["steps"] >= 1, "an integer >= 1"),
      ("delta", 0 < cfg["delta"] < math.inf, "a number > 0"),
      ("gamma", 0 < cfg["gamma"] < 1, "in (0, 1)"),
      ("lam", 0 <= cfg["lam"] <= 1, "in [0, 1]"),
      ("num_envs", cfg["num_envs"] >= 1, "an integer >= 1"),
      ("batch", cfg["batch"] >= cfg["num_envs"], f"an integer >= num_envs ({cfg['num_envs']})"),
      ("cg_iters", cfg["cg_iters"] >= 1, "an integer >= 1"),
      ("damping", 0 <= cfg["damping"] < math.inf, "a number >= 0"),
      ("subsample", 0 < cfg["subsample"] <= 1, "in (0, 1]"),
      ("estimator", cfg["estimator"] in ("gae", "mc"), "'gae' or 'mc'"),
      ("method", cfg["method"] in ALGORITHMS, f"one of {ALGORITHMS}"),
      ("vine_states", cfg["vine_states"] >= 1, "an integer >= 1"),
      ("vine_actions", cfg["vine_actions"] >= 1, "an integer >= 1"),
      ("vine_horizon", cfg["vine_horizon"] >= 1, "an integer >= 1"),
      ("vine_q", cfg["vine_q"] in ("policy", "uniform", "all"), "'policy', 'uniform' or 'all'"),
      ("vine_workers", cfg["vine_workers"] >= 1, "an integer >= 1"),
      ("hidden", all(int(h) >= 1 for h in cfg["hidden"]), "positive layer sizes"),
      ("vf_epochs", cfg["vf_epochs"] >= 1, "an integer >= 1"),
      ("vf_lr", 0 < cfg["vf_lr"] < math.inf, "a number > 0"),
      ("vectorization", cfg["vectorization"] in ("auto", "sync", "async"),
       "'auto', 'sync' or 'async'"),
      ("log_std_init", abs(cfg["log_std_init"]) < 20, "a number in (-20, 20)"),
      ("step_size", 0 < cfg["step_size"] < math.inf, "a number > 0"),
      ("population", cfg["population"] >= 2, "an integer >= 2"),
      ("elite_frac", 0 < cfg["elite_frac"] <= 1, "in (0, 1]"),
      ("search_std", 0 < cfg["search_std"] < math.inf, "a number > 0"),
      ("temperature", 0 < cfg["temperature"] < math.inf, "a number > 0"),
      ("reps_epsilon", 0 < cfg["reps_epsilon"] < math.inf, "a number > 0"),
      ("ml_epochs", cfg["ml_epochs"] >= 1, "an integer >= 1"),
      ("ml_lr", 0 < cfg["ml_lr"] < math.inf, "a number > 0"),
  ]
  for name, ok, allowed in checks:
    if not ok:
      raise ValueError(f"{name} must be {allowed}, got {cfg[name]!r}")
  if cfg["method"] in _SEARCH and cfg["normalize_obs"]:
    raise ValueError(f"normalize_obs is not available with method {cfg['method']!r} (the "
                     "parameter search scores fixed policies); drop --normalize-obs")


def _build(cfg, single_env=False):
  """(environment, first obs, policy, value net, obs shape) for a config.

  The environment is a vector env of cfg["num_envs"] copies (single path), or with
  `single_env` one environment whose state can be saved and restored (vine, Section 5.2).
  """
  import envs as envs_lib
  import sampling
  if single_env:
    venv, obs = envs_lib.make_single(cfg["env"], cfg["seed"])
    obs_space, action_space = venv.observation_space, venv.action_space
  else:
    venv, obs = envs_lib.make(cfg["env"], cfg["num_envs"], cfg["seed"], cfg["vectorization"])
    obs_space, action_space = venv.single_observation_space, venv.single_action_space
  try:
    policy = envs_lib.policy_for(obs_space, action_space, tuple(cfg["hidden"]),
                                 cfg["linear_policy"], cfg["log_std_init"])
  except ValueError:
    venv.close()
    raise
  return venv, obs, policy, sampling.value_net(obs_space.shape, tuple(cfg["hidden"])), \
      obs_space.shape


def _save_checkpoint(path, state, cfg):
  """Writes the training state to `path` atomically: a temporary file, then os.replace."""
  import json
  import os
  import tempfile
  arrays = {
      "policy": np.asarray(ravel_pytree(state["params"])[0]),
      "value": np.asarray(ravel_pytree(state["vparams"])[0]),
      "key": np.asarray(jax.random.key_data(state["key"])),
      "iteration": np.int64(state["iteration"]), "steps": np.int64(state["steps"]),
      "seconds": np.float64(state["seconds"]), "config": np.array(json.dumps(cfg)),
  }
  if state["stats"] is not None:
    arrays.update({f"stats_{k}": np.asarray(v) for k, v in state["stats"].items()})
  search = state.get("search")
  if isinstance(search, dict):                        # CEM: mean and std
    arrays.update({f"search_{k}": v for k, v in search.items()})
  elif search is not None:                            # CMA-ES: the cma package's object
    import pickle
    arrays["search_pickle"] = np.frombuffer(pickle.dumps(search), np.uint8)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _load_search(cfg, data):
  """The CEM / CMA-ES search state saved by `_save_checkpoint`, or None."""
  if "search_mean" in data:
    return {"mean": data["search_mean"], "std": data["search_std"]}
  if "search_pickle" in data:
    import pickle
    return pickle.loads(data["search_pickle"].tobytes())
  return None


def load_checkpoint(run_dir):
  """(config, arrays) from DIR/checkpoint.npz: the arrays are those `_save_checkpoint` wrote
  (flat parameter vectors, key, counters, observation statistics)."""
  import json
  import os
  path = os.path.join(run_dir, "checkpoint.npz")
  if not os.path.exists(path):
    raise ValueError(f"no checkpoint at {path}")
  with np.load(path) as z:
    cfg = json.loads(str(z["config"]))
    cfg["hidden"] = tuple(cfg["hidden"])
    data = {k: z[k] for k in z.files}
  return cfg, data


def _update(cfg, params, batch, policy, key, roll, obs, stats):
  """The policy update of a single-path-sampled method (see ALGORITHMS): (params, info)."""
  import baselines
  method = cfg["method"]
  if method == "rwr":
    return baselines.rwr_update(params, batch["obs"], batch["actions"], batch["adv"], policy,
                                key, cfg["temperature"], cfg["ml_epochs"], cfg["ml_lr"])
  if method == "reps":
    import sampling
    n = batch["obs"].shape[0]
    # The observation after each step: the next row, and what continues the batch for the last.
    # Where an episode ended that is the reset state: an initial state for the dual's φ̄₀ (the
    # batch's first states stand in when no episode ended in it). Where a time limit cut the
    # episode, s' is the pre-reset observation; after a termination s' is unused (1 − terminal).
    after = np.concatenate([roll["obs"][1:], np.asarray(obs)[None]], 0)
    starts = after[roll["terminated"] | roll["truncated"]]
    init_obs = sampling.normalize(stats, jnp.asarray(starts if len(starts) else roll["obs"][0]))
    for t, e, o in roll["final_obs"]:
      after[t, e] = o
    next_obs = sampling.normalize(stats, jnp.asarray(after))
    return baselines.reps_update(
        params, batch["obs"], batch["actions"], next_obs.reshape(batch["obs"].shape),
        roll["rewards"].reshape(n), roll["terminated"].reshape(n), init_obs, policy, key,
        cfg["gamma"], cfg["reps_epsilon"], cfg["ml_epochs"], cfg["ml_lr"])
  variant = {"natural_gradient": {"method": "natural_gradient", "step_size": cfg["step_size"]},
             "empirical_fim": {"fisher": "empirical"},
             "max_kl": {"constraint": "max"}}.get(method, {})
  return step(params, batch, policy, key, delta=cfg["delta"], damping=cfg["damping"],
              cg_iters=cfg["cg_iters"], subsample=cfg["subsample"], **variant)


def _mean_return(episodes):
  """Mean return of the episodes that ended in this iteration; None if none did (a stalled or
  long episode must not repeat an earlier iteration's number in the log)."""
  return float(np.mean([r for r, _ in episodes])) if episodes else None


def _single_path_iter(cfg, venv, obs, policy, v_apply, params, vparams, stats, k_roll, k_step,
                      k_vf, T):
  """One single-path iteration of `train`: sample, estimate advantages, step, fit V."""
  import sampling
  roll, obs, episodes = sampling.single_path(venv, obs, policy, params, stats, k_roll, T)
  n = T * cfg["num_envs"]
  flat = lambda x: x.reshape((n,) + x.shape[2:])
  use_vf = cfg["estimator"] == "gae" and cfg["method"] != "reps"
  if cfg["method"] == "reps":   # REPS estimates its own state values from Bellman errors
    adv = np.zeros_like(roll["rewards"])
  elif use_vf:
    vpred = lambda o: np.asarray(sampling.value_predict(vparams, stats, o, apply=v_apply))
    values = vpred(flat(roll["obs"])).reshape(T, -1)
    next_values = np.concatenate([values[1:], vpred(obs)[None]], 0)
    if roll["final_obs"]:        # time-limit truncations: V of the pre-reset observation
      finals = vpred(np.stack([o for _, _, o in roll["final_obs"]]))
      for (t, e, _), v in zip(roll["final_obs"], finals):
        next_values[t, e] = v
    adv, targets = sampling.gae(roll["rewards"], values, next_values, roll["terminated"],
                                roll["truncated"], cfg["gamma"], cfg["lam"])
  else:
    adv = sampling.discounted_returns(roll["rewards"], roll["terminated"] | roll["truncated"],
                                      cfg["gamma"])
  adv = flat(adv)
  # Standardising Â only rescales the surrogate (β is fixed by δ, not by |g|) and centring
  # acts as a constant baseline, which leaves the expected gradient unchanged (Section 5).
  adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  batch = {"obs": sampling.normalize(stats, jnp.asarray(flat(roll["obs"]))),
           "actions": jnp.asarray(flat(roll["actions"])), "adv": jnp.asarray(adv)}
  params, info = _update(cfg, params, batch, policy, k_step, roll, obs, stats)
  vf_loss = math.nan
  if use_vf:
    vparams, vf_loss = sampling.value_fit(
        vparams, stats, jnp.asarray(flat(roll["obs"])), jnp.asarray(flat(targets)), k_vf,
        apply=v_apply, epochs=cfg["vf_epochs"], lr=cfg["vf_lr"])
    vf_loss = float(vf_loss)
  if stats is not None:
    stats = sampling.obs_stats_update(stats, flat(roll["obs"]))
  return params, vparams, stats, info, episodes, n, obs, vf_loss


def _vine_iter(cfg, env, trunk, policy, params, stats, k_roll, k_step, pool):
  """One vine iteration of `train` (Section 5.2): trunk, rollout set, branches, step."""
  import sampling
  vb, trunk, episodes, n = sampling.vine(
      env, trunk, policy, params, stats, k_roll, n_states=cfg["vine_states"],
      n_actions=cfg["vine_actions"], horizon=cfg["vine_horizon"], gamma=cfg["gamma"],
      trunk_steps=cfg["batch"], q=cfg["vine_q"], pool=pool)
  # A common shift of Q̂ leaves both vine estimators' gradients unchanged (their weights sum to
  # one) and the step length is set by δ: standardising only keeps the numbers tame.
  vb["q"] = (vb["q"] - vb["q"].mean()) / (vb["q"].std() + 1e-8)
  raw_states = vb["obs"]
  vb = {k: jnp.asarray(v) for k, v in vb.items()}
  vb["obs"] = sampling.normalize(stats, vb["obs"])
  params, info = step(params, vb, policy, k_step, delta=cfg["delta"], damping=cfg["damping"],
                      cg_iters=cfg["cg_iters"], subsample=cfg["subsample"])
  if stats is not None:
    stats = sampling.obs_stats_update(stats, raw_states)
  return params, stats, info, episodes, n, trunk


def _search_iter(cfg, env, policy, search, unravel, stats, iteration, steps_done):
  """One CEM / CMA-ES iteration of `train` (baselines.py): returns (search, params, info,
  episodes, simulator steps)."""
  import baselines
  rng = np.random.default_rng([cfg["seed"], iteration])
  # Szita & Lőrincz's extra noise against CEM's collapse, decreased linearly to zero at half
  # the budget (CMA-ES adapts its step size itself and ignores it).
  extra = 0.1 * cfg["search_std"] * max(0.0, 1.0 - 2.0 * steps_done / cfg["steps"])
  search, mean, episodes = baselines.search_iteration(
      cfg["method"], search, env, policy, unravel, stats, rng, cfg["population"],
      cfg["elite_frac"], extra)
  info = {"kl": math.nan, "actual_improve": math.nan, "backtracks": 0, "accepted": True}
  return search, unravel(jnp.asarray(mean, jnp.float32)), info, episodes, \
      sum(n for _, n in episodes)


def train(env_id=DEFAULTS["env"], steps=DEFAULTS["steps"], seed=DEFAULTS["seed"], out=None,
          resume=False, log=print, **options):
  """Trains a policy with TRPO or a Section 8 comparison method; returns (policy, params,
  history, config, state).

  Each single-path iteration: sample `batch` environment steps with π_θold (Section 5.1);
  estimate advantages (GAE(λ) with a learned value function, or the paper's discounted returns
  with `estimator="mc"`); standardise them; take one `step`; refit the value function.
  `method="vine"` samples by the vine method instead (Section 5.2); the other ALGORITHMS change
  the update (see the comment above ALGORITHMS). With `out`, writes DIR/log.jsonl (one JSON
  object per iteration) and DIR/checkpoint.npz (atomically, every iteration); `resume=True`
  continues from that checkpoint. `log` receives one line per iteration. Options are the keys
  of DEFAULTS.
  """
  import json
  import os
  import time

  import sampling
  cfg = dict(DEFAULTS, env=env_id, steps=steps, seed=seed, **options)
  if resume and not out:
    raise ValueError("resume=True needs out, the run directory holding checkpoint.npz")
  if resume:
    saved_cfg, data = load_checkpoint(out)
    cfg = dict(saved_cfg, steps=steps)
  cfg["hidden"] = tuple(cfg["hidden"])
  validate_config(cfg)
  venv, obs, policy, (v_init, v_apply), obs_shape = _build(cfg, cfg["method"] in ("vine",) + _SEARCH)
  key = jax.random.PRNGKey(cfg["seed"])
  key, kp, kv = jax.random.split(key, 3)
  params = policy["init"](kp, obs_shape)
  _, vparams = v_init(kv, (-1,) + tuple(obs_shape))
  stats = sampling.obs_stats_init(obs_shape) if cfg["normalize_obs"] else None
  state = {"params": params, "vparams": vparams, "stats": stats, "key": key, "iteration": 0,
           "steps": 0, "seconds": 0.0, "search": None}
  if resume:
    state["params"] = ravel_pytree(params)[1](jnp.asarray(data["policy"]))
    state["vparams"] = ravel_pytree(vparams)[1](jnp.asarray(data["value"]))
    state["key"] = jax.random.wrap_key_data(jnp.asarray(data["key"])) \
        if jnp.issubdtype(state["key"].dtype, jax.dtypes.prng_key) else jnp.asarray(data["key"])
    for k in ("iteration", "steps", "seconds"):
      state[k] = data[k].item()
    if stats is not None:
      state["stats"] = {k: data[f"stats_{k}"] for k in ("mean", "var", "count")}
    state["search"] = _load_search(cfg, data)
    # Episodes restart: the simulator state is not part of the checkpoint.
    obs, _ = venv.reset(seed=cfg["seed"] + 7919 * state["iteration"])
  if cfg["method"] in _SEARCH and state["search"] is None:
    import baselines
    theta = np.asarray(ravel_pytree(state["params"])[0])
    state["search"] = (baselines.cem_init(theta, cfg["search_std"]) if cfg["method"] == "cem"
                       else baselines.cma_init(theta, cfg["search_std"], cfg["population"],
                                               cfg["seed"]))
  unravel = ravel_pytree(state["params"])[1]
  log_path = ckpt_path = None
  if out:
    os.makedirs(out, exist_ok=True)
    log_path, ckpt_path = os.path.join(out, "log.jsonl"), os.path.join(out, "checkpoint.npz")
    if resume and os.path.exists(log_path):
      # Keep exactly the iterations the checkpoint contains.
      with open(log_path) as f:
        kept = [l for l in f if l.strip() and json.loads(l)["iteration"] <= state["iteration"]]
      with open(log_path, "w") as f:
        f.writelines(kept)
    elif not resume:
      open(log_path, "w").close()
  T = max(1, cfg["batch"] // cfg["num_envs"])
  trunk = {"obs": obs, "ret": 0.0, "len": 0}      # the vine trunk's running episode
  history = []
  pool = None
  try:
    if cfg["method"] == "vine" and cfg["vine_workers"] > 1:
      pool = sampling.branch_pool(cfg["env"], cfg["seed"], cfg["vine_workers"], cfg["hidden"],
                                  cfg["linear_policy"], cfg["log_std_init"])
    while state["steps"] < cfg["steps"]:
      t0 = time.perf_counter()
      key, k_roll, k_step, k_vf = jax.random.split(state["key"], 4)
      params, vparams, stats = state["params"], state["vparams"], state["stats"]
      search = state["search"]
      if cfg["method"] in _SEARCH:
        search, params, info, episodes, n = _search_iter(
            cfg, venv, policy, search, unravel, stats, state["iteration"], state["steps"])
        vf_loss = math.nan
      elif cfg["method"] == "vine":
        params, stats, info, episodes, n, trunk = _vine_iter(
            cfg, venv, trunk, policy, params, stats, k_roll, k_step, pool)
        vf_loss = math.nan
      else:
        params, vparams, stats, info, episodes, n, obs, vf_loss = _single_path_iter(
            cfg, venv, obs, policy, v_apply, params, vparams, stats, k_roll, k_step, k_vf, T)
      # JAX dispatches asynchronously: wait for the update itself before reading the clock.
      jax.block_until_ready((params, vparams, info))
      seconds = time.perf_counter() - t0
      mean_return = _mean_return(episodes)
      state = {"params": params, "vparams": vparams, "stats": stats, "key": key,
               "iteration": state["iteration"] + 1, "steps": state["steps"] + n,
               "seconds": state["seconds"] + seconds, "search": search}
      record = {
          "iteration": state["iteration"], "steps": state["steps"], "episodes": len(episodes),
          "mean_return": mean_return, "kl": float(info["kl"]),
          "surrogate_improve": float(info["actual_improve"]),
          "backtracks": int(info["backtracks"]), "accepted": bool(info["accepted"]),
          "vf_loss": None if math.isnan(vf_loss) else vf_loss,
          "steps_per_second": n / seconds, "seconds": state["seconds"],
      }
      history.append(record)
      if ckpt_path:
        _save_checkpoint(ckpt_path, state, cfg)
        with open(log_path, "a") as f:
          # Strict JSON (readable by jq and other tools): a quantity a method does not have
          # (KL and surrogate improvement for CEM/CMA) is null, not NaN.
          f.write(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                              for k, v in record.items()}, allow_nan=False) + "\n")
      ret = "-" if mean_return is None else f"{mean_return:9.2f}"
      log(f"iter {record['iteration']:4d}  steps {record['steps']:9d}  episodes "
          f"{record['episodes']:4d}  return {ret:>9s}  kl {record['kl']:.5f}  "
          f"improve {record['surrogate_improve']:+.4f}  backtracks {record['backtracks']:2d}  "
          f"{record['steps_per_second']:7.0f} steps/s")
  finally:
    venv.close()
    if pool is not None:
      pool.shutdown()
  return policy, state["params"], history, cfg, state


def load_policy(run_dir, seed):
  """The saved policy of DIR/checkpoint.npz in one fresh environment of its task: (config,
  environment (a vector env of 1), first obs, policy functions, params, observation statistics
  or None)."""
  cfg, data = load_checkpoint(run_dir)
  cfg = dict(cfg, num_envs=1, seed=seed)
  venv, obs, policy, _, obs_shape = _build(cfg)
  params = policy["init"](jax.random.PRNGKey(0), obs_shape)
  params = ravel_pytree(params)[1](jnp.asarray(data["policy"]))
  stats = ({k: data[f"stats_{k}"] for k in ("mean", "var", "count")}
           if cfg["normalize_obs"] else None)
  return cfg, venv, obs, policy, params, stats


def evaluate(run_dir, episodes=10, seed=12345):
  """Runs the saved policy deterministically (the mode of π) for `episodes` episodes.

  Returns the list of undiscounted episode returns.
  """
  import envs as envs_lib
  import sampling
  _, venv, obs, policy, params, stats = load_policy(run_dir, seed)
  space, returns = venv.single_action_space, []
  try:
    while len(returns) < episodes:
      a = sampling.act(params, stats, sampling._as_input(obs), None, apply=policy["apply"],
                       dist_name=policy["dist"]["name"])
      obs, _, _, _, info = venv.step(envs_lib.env_action(space, np.asarray(a)))
      if "_episode" in info and info["_episode"][0]:
        returns.append(float(info["episode"]["r"][0]))
  finally:
    venv.close()
  return returns


def _parse_hidden(text):
  try:
    sizes = tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"--hidden must be comma-separated integers, got {text!r}")
  if not sizes or min(sizes) < 1:
    raise argparse.ArgumentTypeError(f"--hidden must be positive integers, got {text!r}")
  return sizes


_FLAGS = [   # (option, type or choices, help) for the command line
    ("delta", float, "max mean KL δ (Eq. (12))"),
    ("gamma", float, "discount γ"),
    ("lam", float, "GAE λ"),
    ("batch", int, "environment steps per iteration (vine: the trunk length)"),
    ("num_envs", int, "parallel environments (single path)"),
    ("cg_iters", int, "conjugate-gradient iterations k"),
    ("damping", float, "added to the Fisher matrix in CG"),
    ("subsample", float, "fraction of the batch for Fisher-vector products"),
    ("estimator", ("gae", "mc"), "gae: GAE(λ) with a value function; mc: the paper's returns"),
    ("hidden", "sizes", "hidden layer sizes, e.g. 64,64"),
    ("normalize_obs", bool, "running observation normalization"),
    ("linear_policy", bool, "a linear policy (no hidden layer)"),
    ("vf_epochs", int, "value-function epochs per iteration"),
    ("vf_lr", float, "value-function Adam learning rate"),
    ("vectorization", ("auto", "sync", "async"), "auto: async for Atari, sync otherwise"),
    ("log_std_init", float, "initial log standard deviation of a Gaussian policy"),
    ("method", ALGORITHMS, "the algorithm (Section 8): TRPO single_path or vine, an ablation, or "
     "a baseline of baselines.py"),
    ("vine_states", int, "vine: N, states in the rollout set"),
    ("vine_actions", int, "vine: K, actions (branches) per state"),
    ("vine_horizon", int, "vine: T, length of each branch rollout"),
    ("vine_q", ("policy", "uniform", "all"), "vine: q (all: every discrete action, Eq. (15))"),
    ("vine_workers", int, "vine: processes for the branch rollouts (1: in this process)"),
    ("step_size", float, "natural_gradient: the fixed step 1/λ along A⁻¹g"),
    ("population", int, "cem, cma: candidates per iteration (one episode each)"),
    ("elite_frac", float, "cem: fraction of candidates refitted to"),
    ("search_std", float, "cem, cma: initial standard deviation of the parameter search"),
    ("temperature", float, "rwr: τ in the weights exp(Â/τ) (Â standardised)"),
    ("reps_epsilon", float, "reps: the KL bound ε"),
    ("ml_epochs", int, "rwr, reps: Adam epochs of the weighted maximum-likelihood fit"),
    ("ml_lr", float, "rwr, reps: Adam learning rate of that fit"),
]


def main(argv=None):
  """python trpo.py [--env ID] [--steps N] [--seed S] [--out DIR] [hyperparameters];
  python trpo.py --resume DIR [--steps N]; python trpo.py --eval DIR [--episodes K]."""
  import sys
  ap = argparse.ArgumentParser(
      prog="trpo.py", description="Train a policy with TRPO (Schulman et al., 2015).")
  ap.add_argument("--env", default=DEFAULTS["env"], help="Gymnasium id (default CartPole-v1)")
  ap.add_argument("--steps", type=int, default=None,
                  help=f"environment steps in total (default {DEFAULTS['steps']})")
  ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
  ap.add_argument("--out", default=None, help="run directory (default runs/ENV-seedS)")
  ap.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
  ap.add_argument("--eval", metavar="DIR", help="evaluate the policy saved in DIR")
  ap.add_argument("--episodes", type=int, default=10, help="episodes for --eval")
  # One flag per training option of _FLAGS.
  for name, kind, help_text in _FLAGS:
    flag = "--" + name.replace("_", "-")
    if kind is bool:
      ap.add_argument(flag, action="store_true", help=help_text)
    elif isinstance(kind, tuple):
      ap.add_argument(flag, choices=kind, default=DEFAULTS[name], help=help_text)
    elif kind == "sizes":
      ap.add_argument(flag, type=_parse_hidden, default=DEFAULTS[name], help=help_text)
    else:
      ap.add_argument(flag, type=kind, default=DEFAULTS[name], help=help_text)

  def fail(message):
    print(f"trpo.py: error: {message}", file=sys.stderr)
    return 2

  def parse_error(message):   # argparse's own errors, as one line too (usage: trpo.py -h)
    sys.exit(fail(message))
  ap.error = parse_error
  args = ap.parse_args(argv)

  # `kill PID` (SIGTERM) stops a run as Ctrl-C does, and Ctrl-C works even for a run started in
  # the background (where the shell sets SIGINT to be ignored): both end in the one-line message
  # below, with the last completed iteration in the (atomically written) checkpoint.
  def interrupt(signum, frame):
    raise KeyboardInterrupt
  previous = {}
  if threading.current_thread() is threading.main_thread():
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}

  try:
    if args.eval:
      if args.episodes < 1:
        return fail(f"--episodes must be >= 1, got {args.episodes}")
      returns = evaluate(args.eval, args.episodes)
      for i, r in enumerate(returns):
        print(f"episode {i + 1}: return {r:.2f}")
      print(f"mean_return: {np.mean(returns):.2f}")
      return 0
    if args.resume:
      cfg, _ = load_checkpoint(args.resume)
      steps = args.steps if args.steps is not None else cfg["steps"]
      train(cfg["env"], steps, cfg["seed"], out=args.resume, resume=True)
      return 0
    out = args.out or f"runs/{args.env.replace('/', '_')}-seed{args.seed}"
    train(args.env, args.steps if args.steps is not None else DEFAULTS["steps"], args.seed,
          out=out, **{name: getattr(args, name) for name, _, _ in _FLAGS})
    print(f"saved to {out}")
    return 0
  except ValueError as e:
    return fail(str(e).splitlines()[0])
  except KeyboardInterrupt:
    return fail("interrupted; the last completed iteration is in the checkpoint")
  finally:   # main() may be called from other code (the tests): give back its handlers
    for sig, handler in previous.items():
      signal.signal(sig, handler)


if __name__ == "__main__":
  import sys
  sys.exit(main())
