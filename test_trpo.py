"""Tests of the TRPO update against independent references.

Conjugate gradient against `np.linalg.solve`; the JᵀMJ Fisher product against an explicit
`jax.hessian` of the mean KL; closed-form KL and entropy against Monte Carlo estimates; the full
step against an explicit natural-gradient step β·F⁻¹g; the constraint on random problems
(hypothesis). Shapes are kept few so that JAX compiles each function only a handful of times.
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.flatten_util import ravel_pytree

import cg
import policies
import trpo

settings.register_profile("trpo", derandomize=True, deadline=None, max_examples=12,
                          print_blob=True)
settings.load_profile("trpo")

OBS = (3,)
FRAMES = (2, 12, 12)   # a scaled-down Atari input, so the explicit Hessian stays small
N = 128                # the one batch size used by the step tests

GAUSS_MLP = policies.gaussian_policy(policies.mlp((8,), 2), 2)
GAUSS_LIN = policies.gaussian_policy(policies.linear(2), 2)
CAT_MLP = policies.categorical_policy(policies.mlp((8,), 4))
FAC_MLP = policies.factored_categorical_policy(policies.mlp((8,), 5), (2, 3))
_SMALL_CNN = dict(channels=4, kernel=3, hidden=8, pool=1)
CAT_CNN = policies.categorical_policy(policies.atari_cnn(3, **_SMALL_CNN))
FAC_CNN = policies.factored_categorical_policy(policies.atari_cnn(5, **_SMALL_CNN), (2, 3))

MLP_POLICIES = {"gaussian": GAUSS_MLP, "categorical": CAT_MLP, "factored": FAC_MLP}


def _params(policy, obs_shape, seed, scale=0.3):
  """Initial params plus noise, so that the distributions are far from uniform / standard."""
  params = policy["init"](jax.random.PRNGKey(seed), obs_shape)
  flat, unravel = ravel_pytree(params)
  noise = scale * jax.random.normal(jax.random.PRNGKey(seed + 1000), flat.shape)
  return unravel(flat + noise)


def _obs(seed, obs_shape, n):
  key = jax.random.PRNGKey(seed + 2000)
  if len(obs_shape) == 3:
    return jax.random.randint(key, (n,) + obs_shape, 0, 256).astype(jnp.uint8)
  return jax.random.normal(key, (n,) + obs_shape)


def _batch(policy, params, seed, n=N, obs_shape=OBS):
  obs = _obs(seed, obs_shape, n)
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 3000))
  actions = policy["dist"]["sample"](k1, policy["apply"](params, obs))
  adv = jax.random.normal(k2, (n,)) + jnp.sum(jnp.reshape(actions, (n, -1)), axis=1)
  return {"obs": obs, "actions": actions, "adv": adv}


# ----------------------------------------------------------------------------------------------
# Conjugate gradient.
# ----------------------------------------------------------------------------------------------

@jax.jit
def _cg_dense(A, b):
  return cg.solve(lambda v: A @ v, b, iters=b.shape[0], tol=0.0)


@given(st.integers(0, 2**31 - 1), st.floats(1.0, 100.0))
def test_cg_matches_numpy_solve(seed, cond):
  rng = np.random.default_rng(seed)
  n = 6
  q, _ = np.linalg.qr(rng.normal(size=(n, n)))
  eig = np.geomspace(1.0, cond, n)
  A = (q * eig) @ q.T
  b = rng.normal(size=n)
  x = np.asarray(_cg_dense(jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32)))
  expected = np.linalg.solve(A, b)
  np.testing.assert_allclose(x, expected, rtol=0, atol=2e-4 * cond * np.abs(expected).max())


def test_cg_fewer_iterations_reduce_the_error_monotonically():
  # CG minimises the A-norm of the error over growing Krylov subspaces: it cannot increase.
  rng = np.random.default_rng(0)
  n = 30
  m = rng.normal(size=(n, n))
  A = jnp.asarray(m @ m.T / n + 0.1 * np.eye(n), jnp.float32)
  b = jnp.asarray(rng.normal(size=n), jnp.float32)
  exact = np.linalg.solve(np.asarray(A, np.float64), np.asarray(b, np.float64))
  errs = []
  for k in (1, 3, 10, 30):
    e = np.asarray(cg.solve(lambda v: A @ v, b, iters=k, tol=0.0), np.float64) - exact
    errs.append(float(e @ np.asarray(A, np.float64) @ e))
  assert all(a >= b_ * (1 - 1e-3) for a, b_ in zip(errs, errs[1:])), errs
  assert errs[-1] < 1e-4 * errs[0]


def test_cg_zero_rhs_and_non_positive_curvature_give_finite_zero():
  assert np.all(np.asarray(cg.solve(lambda v: 2.0 * v, jnp.zeros(4))) == 0)
  x = cg.solve(lambda v: -v, jnp.ones(4))          # pᵀAp < 0: stop, never divide by it
  assert np.all(np.isfinite(x)) and np.all(np.asarray(x) == 0)
  with pytest.raises(ValueError, match="iters"):
    cg.solve(lambda v: v, jnp.ones(2), iters=0)


# ----------------------------------------------------------------------------------------------
# Distributions: closed forms against Monte Carlo, M against the Hessian of the KL.
# ----------------------------------------------------------------------------------------------

def _dist_params(name, seed, batch=3):
  k = jax.random.split(jax.random.PRNGKey(seed), 3)
  if name == "gaussian":
    return {"mean": jax.random.normal(k[0], (batch, 2)),
            "log_std": 0.5 * jax.random.normal(k[1], (batch, 2))}
  if name == "categorical":
    return {"logits": 1.5 * jax.random.normal(k[0], (batch, 4))}
  return {"logits": (1.5 * jax.random.normal(k[0], (batch, 2)),
                     1.5 * jax.random.normal(k[1], (batch, 3)))}


DISTS = {"gaussian": policies.GAUSSIAN, "categorical": policies.CATEGORICAL,
         "factored": policies.FACTORED_CATEGORICAL}


@pytest.mark.parametrize("name", sorted(DISTS))
def test_kl_and_entropy_match_monte_carlo(name):
  dist = DISTS[name]
  old, new = _dist_params(name, 1), _dist_params(name, 2)
  m = 200_000
  tile = lambda mu: jax.tree_util.tree_map(lambda x: jnp.repeat(x, m, axis=0), mu)
  a = dist["sample"](jax.random.PRNGKey(7), tile(old))
  logp_old = dist["log_prob"](tile(old), a).reshape(3, m)
  logp_new = dist["log_prob"](tile(new), a).reshape(3, m)
  # KL(old ‖ new) = E_{a~old}[log p_old(a) − log p_new(a)];  H(old) = −E_{a~old}[log p_old(a)].
  for estimate, closed in ((logp_old - logp_new, dist["kl"](old, new)),
                           (-logp_old, dist["entropy"](old))):
    mc = np.asarray(estimate.mean(axis=1))
    se = np.asarray(estimate.std(axis=1)) / math.sqrt(m)
    np.testing.assert_array_less(np.abs(mc - np.asarray(closed)), 5 * se + 1e-4)
  # The direction: the closed form is KL(old ‖ new), not KL(new ‖ old).
  reverse = np.asarray(dist["kl"](new, old))
  mc = np.asarray((logp_old - logp_new).mean(axis=1))
  assert np.max(np.abs(reverse - mc)) > 10 * np.max(np.asarray((logp_old - logp_new).std(axis=1))
                                                   / math.sqrt(m))


@pytest.mark.parametrize("name", sorted(DISTS))
def test_fisher_metric_is_the_hessian_of_kl_at_old(name):
  dist = DISTS[name]
  old = _dist_params(name, 3, batch=1)
  flat, unravel = ravel_pytree(old)
  H = jax.hessian(lambda p: dist["kl"](old, unravel(p))[0])(flat)
  M = jax.vmap(lambda v: ravel_pytree(dist["fisher_vp"](old, unravel(v)))[0])(jnp.eye(flat.size))
  np.testing.assert_allclose(np.asarray(M), np.asarray(H), atol=1e-5)
  assert np.all(np.asarray(dist["kl"](old, old)) == 0)


def test_log_prob_normalises_and_mode_is_most_likely():
  mu = _dist_params("factored", 4)
  grid = jnp.array([[i, j] for i in range(2) for j in range(3)])
  tile = jax.tree_util.tree_map(lambda x: jnp.repeat(x[:1], 6, axis=0), mu)
  logp = policies.FACTORED_CATEGORICAL["log_prob"](tile, grid)
  assert abs(float(jnp.exp(logp).sum()) - 1.0) < 1e-5
  mode = policies.FACTORED_CATEGORICAL["mode"](mu)[0]
  assert int(jnp.argmax(logp)) == int(mode[0]) * 3 + int(mode[1])


# ----------------------------------------------------------------------------------------------
# Networks.
# ----------------------------------------------------------------------------------------------

def test_atari_cnn_parameter_count():
  # Figure 3 / Section 8.2, worked by hand for 84×84×4 frames pooled to 42×42:
  # conv 16@4×4 on 4 channels: 4·4·4·16 + 16 = 1,040; conv 16@4×4 on 16: 4·4·16·16 + 16 =
  # 4,112; 42 → 20 → 9, so dense 9·9·16 → 20: 1,296·20 + 20 = 25,940; dense 20 → A: 21·A.
  for n_actions in (6, 18):
    pol = policies.categorical_policy(policies.atari_cnn(n_actions))
    params = pol["init"](jax.random.PRNGKey(0), (4, 84, 84))
    assert policies.n_params(params) == 1040 + 4112 + 25940 + 21 * n_actions
  frames = jnp.zeros((2, 4, 84, 84), jnp.uint8)
  assert pol["apply"](params, frames)["logits"].shape == (2, 18)


def test_linear_cartpole_policy_has_six_parameters():
  params = policies.gaussian_policy(policies.linear(1), 1)["init"](jax.random.PRNGKey(0), (4,))
  assert policies.n_params(params) == 6


# ----------------------------------------------------------------------------------------------
# The Fisher-vector product JᵀMJ (Appendix C.1) against the explicit Hessian of the mean KL.
# ----------------------------------------------------------------------------------------------

FISHER_CASES = {
    "gaussian-mlp": (GAUSS_MLP, OBS), "categorical-mlp": (CAT_MLP, OBS),
    "factored-mlp": (FAC_MLP, OBS), "categorical-cnn": (CAT_CNN, FRAMES),
    "factored-cnn": (FAC_CNN, FRAMES)}


@pytest.mark.parametrize("case", sorted(FISHER_CASES))
def test_jtmj_equals_hessian_of_mean_kl(case):
  policy, obs_shape = FISHER_CASES[case]
  apply, dist = policy["apply"], policy["dist"]
  params = _params(policy, obs_shape, 5)
  obs = _obs(5, obs_shape, 16)
  flat, unravel = ravel_pytree(params)
  old = apply(params, obs)
  H = jax.jit(jax.hessian(lambda p: trpo.mean_kl(apply, dist, unravel(p), obs, old)))(flat)
  fvp = trpo.fisher_vp_analytic(apply, dist, flat, unravel, obs)
  F = jax.jit(jax.vmap(fvp))(jnp.eye(flat.size))
  H, F = np.asarray(H), np.asarray(F)
  assert np.abs(H).max() > 1e-3   # not a trivially zero comparison
  np.testing.assert_allclose(F, H, atol=2e-5 * np.abs(H).max() + 1e-7)
  # The double-differentiation product agrees too.
  hvp = trpo.fisher_vp_hessian(apply, dist, flat, unravel, obs, old)
  v = jax.random.normal(jax.random.PRNGKey(0), flat.shape)
  np.testing.assert_allclose(np.asarray(hvp(v)), H @ np.asarray(v),
                             atol=1e-4 * np.abs(H @ np.asarray(v)).max())


# ----------------------------------------------------------------------------------------------
# The step.
# ----------------------------------------------------------------------------------------------

@given(seed=st.integers(0, 10_000), delta=st.floats(1e-3, 0.1), scale=st.floats(0.0, 1.0),
       name=st.sampled_from(sorted(MLP_POLICIES)))
def test_step_respects_the_kl_constraint(seed, delta, scale, name):
  policy = MLP_POLICIES[name]
  params = _params(policy, OBS, seed, scale)
  batch = _batch(policy, params, seed)
  new, info = trpo.step(params, batch, policy, jax.random.PRNGKey(seed), delta=delta)
  old = policy["apply"](params, batch["obs"])
  kl = float(trpo.mean_kl(policy["apply"], policy["dist"], new, batch["obs"], old))
  assert kl <= delta * (1 + 1e-4) + 1e-7
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(new))
  if bool(info["accepted"]):
    batch_q = dict(batch, logp_q=policy["dist"]["log_prob"](old, batch["actions"]))
    gain = (trpo.surrogate(policy["apply"], policy["dist"], new, batch_q)
            - trpo.surrogate(policy["apply"], policy["dist"], params, batch_q))
    assert float(gain) > 0
    assert abs(float(info["kl"]) - kl) <= 1e-5 + 1e-3 * kl
  else:
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(new),
                                                      jax.tree_util.tree_leaves(params)))


def _explicit_natural_gradient(policy, params, batch, fisher="analytic"):
  """(g, F) at θ_old built explicitly: g = ∇L, F = ∇²D̄_KL (or the score covariance)."""
  apply, dist = policy["apply"], policy["dist"]
  flat, unravel = ravel_pytree(params)
  old = apply(params, batch["obs"])
  b = dict(batch, logp_q=dist["log_prob"](old, batch["actions"]))
  g = jax.grad(lambda p: trpo.surrogate(apply, dist, unravel(p), b))(flat)
  if fisher == "analytic":
    F = jax.hessian(lambda p: trpo.mean_kl(apply, dist, unravel(p), batch["obs"], old))(flat)
  else:
    G = jax.jacobian(lambda p: dist["log_prob"](apply(unravel(p), batch["obs"]),
                                                batch["actions"]))(flat)
    F = G.T @ G / G.shape[0]
  return np.asarray(g, np.float64), np.asarray(F, np.float64), flat, unravel


EXACT = dict(cg_iters=10, subsample=1.0, damping=0.0)   # GAUSS_LIN has exactly 10 parameters


def test_step_equals_exact_natural_gradient_step():
  params = _params(GAUSS_LIN, OBS, 11)
  batch = _batch(GAUSS_LIN, params, 11)
  delta = 1e-4
  new, info = trpo.step(params, batch, GAUSS_LIN, delta=delta, **EXACT)
  g, F, flat, _ = _explicit_natural_gradient(GAUSS_LIN, params, batch)
  x = np.linalg.solve(F, g)
  beta = math.sqrt(2 * delta / (x @ F @ x))
  assert bool(info["accepted"]) and int(info["backtracks"]) <= 1
  # The quadratic model puts the full step at KL ≈ δ; when the true KL is a hair above δ the line
  # search shrinks it once. Either way the step is (fraction)·β·F⁻¹g.
  frac = float(info["step_fraction"])
  assert frac == pytest.approx(0.8 ** int(info["backtracks"]))
  step = np.asarray(ravel_pytree(new)[0] - flat, np.float64)
  np.testing.assert_allclose(step, frac * beta * x, rtol=0, atol=2e-3 * np.abs(beta * x).max())
  np.testing.assert_allclose(float(info["kl"]), frac**2 * delta, rtol=0.05)  # ½βsᵀAsβ ≈ KL


def test_natural_gradient_variant_takes_a_fixed_unconstrained_step():
  params = _params(GAUSS_LIN, OBS, 12)
  batch = _batch(GAUSS_LIN, params, 12)
  step_size = 0.5   # large: the KL of this step is far above δ, and it is taken anyway
  new, info = trpo.step(params, batch, GAUSS_LIN, method="natural_gradient",
                        step_size=step_size, delta=0.01, **EXACT)
  g, F, flat, _ = _explicit_natural_gradient(GAUSS_LIN, params, batch)
  expected = step_size * np.linalg.solve(F, g)
  step = np.asarray(ravel_pytree(new)[0] - flat, np.float64)
  np.testing.assert_allclose(step, expected, rtol=0, atol=2e-3 * np.abs(expected).max())
  assert bool(info["accepted"]) and float(info["kl"]) > 0.01


def test_empirical_fim_variant_uses_the_score_covariance():
  params = _params(GAUSS_LIN, OBS, 13)
  batch = _batch(GAUSS_LIN, params, 13)
  delta = 1e-4
  new, info = trpo.step(params, batch, GAUSS_LIN, fisher="empirical", delta=delta, **EXACT)
  g, F_emp, flat, _ = _explicit_natural_gradient(GAUSS_LIN, params, batch, fisher="empirical")
  x = np.linalg.solve(F_emp, g)
  step = np.asarray(ravel_pytree(new)[0] - flat, np.float64)
  # The direction is F_emp⁻¹g (its length is then set by β and the line search).
  cos = step @ x / (np.linalg.norm(step) * np.linalg.norm(x))
  assert bool(info["accepted"]) and cos > 0.999
  _, F, _, _ = _explicit_natural_gradient(GAUSS_LIN, params, batch)
  y = np.linalg.solve(F, g)
  assert y @ x / (np.linalg.norm(y) * np.linalg.norm(x)) < 0.999   # and it is not F⁻¹g


def test_max_kl_variant_bounds_every_state():
  policy = GAUSS_MLP
  params = _params(policy, OBS, 14)
  batch = _batch(policy, params, 14)
  delta = 0.01
  _, info_mean = trpo.step(params, batch, policy, delta=delta)
  new, info_max = trpo.step(params, batch, policy, delta=delta, constraint="max")
  old = policy["apply"](params, batch["obs"])
  kls = np.asarray(trpo.kl_per_state(policy["apply"], policy["dist"], new, batch["obs"], old))
  assert float(info_mean["max_kl"]) > delta          # the mean constraint lets some states move more
  assert bool(info_max["accepted"]) and kls.max() <= delta * (1 + 1e-4)


def test_hessian_fisher_variant_gives_the_same_step():
  policy = CAT_MLP
  params = _params(policy, OBS, 15)
  batch = _batch(policy, params, 15)
  new_a, _ = trpo.step(params, batch, policy, fisher="analytic", subsample=1.0)
  new_h, _ = trpo.step(params, batch, policy, fisher="hessian", subsample=1.0)
  a, h = ravel_pytree(new_a)[0], ravel_pytree(new_h)[0]
  np.testing.assert_allclose(np.asarray(a), np.asarray(h), atol=1e-4 * float(jnp.abs(a).max()))


def test_subsampled_fisher_still_satisfies_the_constraint_on_the_whole_batch():
  policy = GAUSS_MLP
  params = _params(policy, OBS, 16)
  batch = _batch(policy, params, 16)
  new, info = trpo.step(params, batch, policy, jax.random.PRNGKey(3), subsample=0.1)
  old = policy["apply"](params, batch["obs"])
  kl = float(trpo.mean_kl(policy["apply"], policy["dist"], new, batch["obs"], old))
  assert bool(info["accepted"]) and kl <= 0.01 * (1 + 1e-4)


# ----------------------------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------------------------

def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                   jax.tree_util.tree_leaves(b)))


def test_zero_advantages_leave_params_unchanged():
  params = _params(GAUSS_MLP, OBS, 17)
  batch = dict(_batch(GAUSS_MLP, params, 17), adv=jnp.zeros(N))
  new, info = trpo.step(params, batch, GAUSS_MLP)
  assert _same(new, params)
  assert not bool(info["accepted"]) and bool(info["bad_direction"])
  assert all(np.isfinite(float(v)) for k, v in info.items() if k != "beta")


def test_non_finite_curvature_takes_no_step():
  params = _params(GAUSS_MLP, OBS, 18)
  batch = _batch(GAUSS_MLP, params, 18)
  batch["adv"] = batch["adv"] * 1e30     # g ~ 1e30, so sᵀAs overflows float32
  new, info = trpo.step(params, batch, GAUSS_MLP)
  assert _same(new, params) and bool(info["bad_direction"]) and not bool(info["accepted"])


def test_non_finite_batch_is_reported_not_propagated():
  params = _params(GAUSS_MLP, OBS, 19)
  batch = _batch(GAUSS_MLP, params, 19)
  batch["adv"] = batch["adv"].at[3].set(jnp.nan)
  with pytest.raises(ValueError, match=r"batch\['adv'\] contains 1 non-finite"):
    trpo.step(params, batch, GAUSS_MLP)
  # Inside a caller's own jit the check cannot raise: the step is refused and flagged instead.
  new, info = jax.jit(lambda p, b: trpo.step(p, b, GAUSS_MLP))(params, batch)
  assert _same(new, params) and not bool(info["finite_batch"]) and not bool(info["accepted"])


@pytest.mark.parametrize("option, value, message", [
    ("delta", 0.0, "delta must be a finite number > 0"),
    ("delta", -1.0, "delta"),
    ("delta", float("nan"), "delta"),
    ("cg_iters", 0, "cg_iters must be an integer >= 1"),
    ("subsample", 0.0, r"subsample must be \(0, 1.0\]"),
    ("subsample", 1.5, "subsample"),
    ("damping", -0.1, "damping must be a finite number >= 0"),
    ("max_backtracks", 0, "max_backtracks"),
    ("backtrack_ratio", 1.0, "backtrack_ratio"),
    ("method", "sgd", "method must be one of"),
    ("fisher", "diag", "fisher must be one of"),
    ("constraint", "min", "constraint must be one of"),
])
def test_invalid_options_raise(option, value, message):
  params = _params(GAUSS_MLP, OBS, 20)
  batch = _batch(GAUSS_MLP, params, 20)
  with pytest.raises(ValueError, match=message):
    trpo.step(params, batch, GAUSS_MLP, **{option: value})


def test_natural_gradient_needs_a_step_size():
  params = _params(GAUSS_MLP, OBS, 21)
  with pytest.raises(ValueError, match="step_size"):
    trpo.step(params, _batch(GAUSS_MLP, params, 21), GAUSS_MLP, method="natural_gradient")


def test_mismatched_batch_shapes_raise():
  params = _params(GAUSS_MLP, OBS, 22)
  batch = _batch(GAUSS_MLP, params, 22)
  with pytest.raises(ValueError, match=r"batch\['adv'\] has leading shape"):
    trpo.step(params, dict(batch, adv=batch["adv"][:-1]), GAUSS_MLP)
  with pytest.raises(ValueError, match=r"batch\['adv'\] must have shape \[N\]"):
    trpo.step(params, dict(batch, adv=batch["adv"][:, None]), GAUSS_MLP)
  with pytest.raises(ValueError, match="cannot be applied to batch\\['obs'\\] of shape"):
    trpo.step(params, dict(batch, obs=jnp.zeros((N, 5))), GAUSS_MLP)
  with pytest.raises(ValueError, match="missing 'actions'"):
    trpo.step(params, {"obs": batch["obs"], "adv": batch["adv"]}, GAUSS_MLP)


# ----------------------------------------------------------------------------------------------
# Environments, sampling and the training program (issue: single path and the main job).
# ----------------------------------------------------------------------------------------------

import gymnasium as gym  # noqa: E402

import envs  # noqa: E402
import sampling  # noqa: E402


def test_discounted_returns_match_brute_force():
  rng = np.random.default_rng(0)
  T, E, gamma = 12, 3, 0.9
  rewards = rng.normal(size=(T, E)).astype(np.float32)
  dones = rng.random((T, E)) < 0.2
  q = sampling.discounted_returns(rewards, dones, gamma)
  for e in range(E):
    for t in range(T):
      expected, k = 0.0, t
      while k < T:
        expected += gamma**(k - t) * rewards[k, e]
        if dones[k, e]:
          break
        k += 1
      assert abs(q[t, e] - expected) < 1e-5


def test_gae_matches_definition_and_limits():
  rng = np.random.default_rng(1)
  T, E, gamma, lam = 10, 2, 0.95, 0.9
  r = rng.normal(size=(T, E)).astype(np.float32)
  v = rng.normal(size=(T, E))
  nv = rng.normal(size=(T, E))
  term = rng.random((T, E)) < 0.15
  trunc = (rng.random((T, E)) < 0.15) & ~term
  adv, targets = sampling.gae(r, v, nv, term, trunc, gamma, lam)
  delta = r + gamma * nv * (1 - term) - v
  for e in range(E):
    for t in range(T):
      expected, k = 0.0, t
      while k < T:
        expected += (gamma * lam)**(k - t) * delta[k, e]
        if term[k, e] or trunc[k, e]:
          break
        k += 1
      assert abs(adv[t, e] - expected) < 1e-4
  np.testing.assert_allclose(targets, adv + v, atol=1e-5)
  # λ = 0: the one-step TD error; truncation bootstraps with V(final obs), termination does not.
  adv0, _ = sampling.gae(r, v, nv, term, trunc, gamma, 0.0)
  np.testing.assert_allclose(adv0, delta, atol=1e-5)


def test_running_obs_stats_match_numpy():
  rng = np.random.default_rng(2)
  chunks = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (5, 50, 1)]
  stats = sampling.obs_stats_init((4,))
  for c in chunks:
    stats = sampling.obs_stats_update(stats, c)
  data = np.concatenate(chunks)
  np.testing.assert_allclose(stats["mean"], data.mean(0), rtol=1e-4)
  np.testing.assert_allclose(stats["var"], data.var(0), rtol=1e-3)


def test_value_fit_reduces_the_error():
  init, apply = sampling.value_net((3,))
  _, vp = init(jax.random.PRNGKey(0), (-1, 3))
  x = jax.random.normal(jax.random.PRNGKey(1), (512, 3))
  y = jnp.sin(x[:, 0]) + x[:, 1] * x[:, 2]
  before = float(jnp.mean((sampling.value_predict(vp, None, x, apply=apply) - y)**2))
  vp, after = sampling.value_fit(vp, None, x, y, jax.random.PRNGKey(2), apply=apply, epochs=30)
  assert float(after) < 0.3 * before


def test_unsupported_spaces_and_ids_are_named():
  with pytest.raises(ValueError, match="unsupported action space Tuple"):
    envs.action_kind(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))))
  with pytest.raises(ValueError, match="unknown environment id 'NoSuchEnv-v0'"):
    envs.make("NoSuchEnv-v0")
  pol = envs.policy_for(gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([2, 3]))
  assert pol["dist"] is policies.FACTORED_CATEGORICAL


def test_training_improves_cartpole(tmp_path):
  _, _, hist, _, _ = trpo.train("CartPole-v1", steps=12_288, seed=0, out=str(tmp_path),
                                log=lambda s: None, batch=2048)
  returns = [h["mean_return"] for h in hist]
  assert returns[-1] > 2 * returns[0], returns
  assert all(h["kl"] <= 0.01 * (1 + 1e-4) for h in hist)
  lines = (tmp_path / "log.jsonl").read_text().splitlines()
  assert len(lines) == len(hist) and {"iteration", "steps", "mean_return", "kl", "seconds"} <= \
      set(__import__("json").loads(lines[-1]))
  assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]   # atomic writes


def test_training_is_reproducible_from_the_seed():
  run = lambda: [(h["mean_return"], h["kl"]) for h in trpo.train(
      "CartPole-v1", steps=4096, seed=3, log=lambda s: None, batch=2048)[2]]
  assert run() == run()


def test_mujoco_smoke(tmp_path):
  _, params, hist, _, _ = trpo.train("Hopper-v5", steps=1024, seed=0, out=str(tmp_path),
                                     log=lambda s: None, batch=512, num_envs=2,
                                     normalize_obs=True)
  assert len(hist) == 2 and all(np.isfinite(h["kl"]) for h in hist)
  returns = trpo.evaluate(str(tmp_path), episodes=1)
  assert len(returns) == 1 and np.isfinite(returns[0])


def test_atari_smoke():
  venv, obs = envs.make("ALE/Pong-v5", num_envs=1, seed=0)
  try:
    assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
  finally:
    venv.close()
  _, _, hist, _, _ = trpo.train("ALE/Pong-v5", steps=128, seed=0, log=lambda s: None,
                                batch=64, num_envs=2, vf_epochs=1)
  assert len(hist) == 2 and all(np.isfinite(h["kl"]) for h in hist)
  # 32 frames per environment cannot finish a game of Pong (21 points): no episode ended, so
  # no return is reported, rather than a number carried over from another iteration.
  assert all(h["episodes"] == 0 and h["mean_return"] is None for h in hist)


def test_cli_errors_resume_and_eval(tmp_path, capsys):
  assert trpo.main(["--env", "NoSuchEnv-v0", "--out", str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unknown environment id 'NoSuchEnv-v0'" in err[0]
  assert trpo.main(["--env", "Blackjack-v1", "--out", str(tmp_path / "z")]) == 2
  assert "unsupported observation space Tuple" in capsys.readouterr().err
  assert trpo.main(["--delta", "-1", "--out", str(tmp_path / "y")]) == 2
  assert "delta must be a number > 0, got -1.0" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    trpo.main(["--steps", "many"])
  err = capsys.readouterr().err.strip().splitlines()
  assert exit_info.value.code == 2 and len(err) == 1 and "--steps" in err[0]
  run = str(tmp_path / "run")
  assert trpo.main(["--steps", "2048", "--batch", "1024", "--out", run]) == 0
  assert trpo.main(["--resume", run, "--steps", "4096"]) == 0
  lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
  assert [__import__("json").loads(l)["iteration"] for l in lines] == [1, 2, 3, 4]
  capsys.readouterr()
  assert trpo.main(["--eval", run, "--episodes", "2"]) == 0
  assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mean_return: ")
  assert trpo.main(["--eval", str(tmp_path / "missing")]) == 2


def test_sigterm_stops_a_background_run_with_its_checkpoint(tmp_path):
  # Started as `nohup trpo.py ... &` starts it (SIGINT ignored); `kill PID` must end it with the
  # one-line message and leave a checkpoint that resumes.
  import json, signal, subprocess, sys, time
  run = tmp_path / "run"
  ignore_sigint_then_exec = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                             "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
  proc = subprocess.Popen(
      [sys.executable, "-c", ignore_sigint_then_exec, "trpo.py", "--steps", "10000000",
       "--batch", "512", "--out", str(run)],
      cwd=os.path.dirname(os.path.abspath(__file__)), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 300   # a guard against hanging, not a timing assertion
    while not (run / "log.jsonl").exists() or not (run / "log.jsonl").read_text().strip():
      assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 2, err
  assert err.strip().splitlines()[-1] == (
      "trpo.py: error: interrupted; the last completed iteration is in the checkpoint")
  cfg, state = trpo.load_checkpoint(str(run))
  last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
  assert cfg["env"] == "CartPole-v1" and int(state["iteration"]) == last["iteration"] >= 1


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5", "ALE/Pong-v5"])
def test_state_restore_replays_identically(env_id):
  env, obs = envs.make_single(env_id, seed=0)
  env.action_space.seed(0)
  for _ in range(15):
    env.step(env.action_space.sample())
  snapshot = envs.get_state(env)
  actions = [env.action_space.sample() for _ in range(25)]

  def replay():
    out = []
    for a in actions:
      o, r, term, trunc, _ = env.step(a)
      out.append((np.array(o), r, term, trunc))
      if term or trunc:
        break
    return out

  first = replay()
  envs.set_state(env, snapshot)
  second = replay()
  env.close()
  assert len(first) == len(second) and len(first) > 1
  for (o1, r1, t1, u1), (o2, r2, t2, u2) in zip(first, second):
    assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2 and u1 == u2


def test_vine_surrogates_match_brute_force():
  policy = CAT_MLP                     # 4 actions
  params = _params(policy, OBS, 23)
  obs = _obs(23, OBS, 3)
  p = np.asarray(jax.nn.softmax(policy["apply"](params, obs)["logits"], axis=-1), np.float64)
  rng = np.random.default_rng(23)
  # Eq. (15): every action once per state.
  all_actions = jnp.tile(jnp.arange(4), (3, 1))
  q_all = rng.normal(size=(3, 4))
  got = float(trpo.vine_surrogate(policy["apply"], policy["dist"], params, obs, all_actions,
                                  jnp.asarray(q_all, jnp.float32)))
  assert abs(got - np.mean([sum(p[n, a] * q_all[n, a] for a in range(4)) for n in range(3)])) < 1e-5
  # Eq. (16): K = 3 sampled actions, q uniform.
  acts = rng.integers(0, 4, size=(3, 3))
  q_k = rng.normal(size=(3, 3))
  logq = np.full((3, 3), np.log(0.25))
  L = lambda q: float(trpo.vine_surrogate(policy["apply"], policy["dist"], params, obs,
                                          jnp.asarray(acts), jnp.asarray(q, jnp.float32),
                                          jnp.asarray(logq, jnp.float32)))
  expected = np.mean([sum(p[n, acts[n, k]] / 0.25 * q_k[n, k] for k in range(3))
                      / sum(p[n, acts[n, k]] / 0.25 for k in range(3)) for n in range(3)])
  assert abs(L(q_k) - expected) < 1e-5
  assert abs(L(q_k + 7.0) - (expected + 7.0)) < 1e-4    # self-normalised: no baseline needed


def test_branch_returns_use_common_random_numbers_and_replay():
  env_id, seed, gamma, horizon = "Hopper-v5", 4, 0.99, 20
  env, obs = envs.make_single(env_id, seed=seed)
  policy = envs.policy_for(env.observation_space, env.action_space, hidden=(8,))
  params = _params(policy, env.observation_space.shape, 24)
  prefix = [np.full(3, 0.1 * i, np.float32) for i in range(5)]
  for a in prefix:
    obs, *_ = env.step(a)
  snapshot = envs.get_state(env)
  noise = sampling.rollout_noise(policy, params, sampling._as_input(obs)[None],
                                 jax.random.PRNGKey(0), horizon)
  first = np.array([[0.5, -0.5, 0.2], [-0.3, 0.4, 0.0], [0.5, -0.5, 0.2]], np.float32)
  q, steps = sampling.branch_returns(env, snapshot, first, policy, params, None, noise, horizon,
                                     gamma)
  assert 3 <= steps <= 3 * horizon
  env.close()
  assert q[0] == q[2] and q[0] != q[1]        # same first action + same noise: same estimate
  # Independently: a fresh environment, the same seed and prefix (no state restore), the first
  # action, then the policy on the same noise; the discounted return must match Q̂ exactly.
  env2, _ = envs.make_single(env_id, seed=seed)
  for a in prefix:
    env2.step(a)
  o, r, term, trunc, _ = env2.step(first[1])
  total = float(r)
  for t in range(horizon - 1):
    if term or trunc:
      break
    a = sampling.act(params, None, sampling._as_input(o)[None],
                     jax.tree_util.tree_map(lambda x: x[t], noise),
                     apply=policy["apply"], dist_name=policy["dist"]["name"])
    o, r, term, trunc, _ = env2.step(np.clip(np.asarray(a)[0], -1, 1))
    total += gamma**(t + 1) * float(r)
  env2.close()
  assert abs(total - q[1]) < 1e-9 * max(1.0, abs(total))


def test_branches_in_worker_processes_equal_in_process_branches():
  # The worker rebuilds env and policy from the id and architecture; snapshots, parameters and
  # the common random numbers travel by pickle, so the batch must be identical.
  env, obs = envs.make_single("CartPole-v1", 0)
  policy = envs.policy_for(env.observation_space, env.action_space, hidden=(8,))
  params = _params(policy, env.observation_space.shape, 5)
  kw = dict(n_states=6, n_actions=2, horizon=10, gamma=0.9, trunk_steps=40, q="all")
  trunk = {"obs": obs, "ret": 0.0, "len": 0}
  snap = envs.get_state(env)
  serial = sampling.vine(env, trunk, policy, params, None, jax.random.PRNGKey(3), **kw)[0]
  envs.set_state(env, snap)
  pool = sampling.branch_pool("CartPole-v1", 0, 2, hidden=(8,))
  try:
    pooled = sampling.vine(env, trunk, policy, params, None, jax.random.PRNGKey(3), pool=pool,
                           **kw)[0]
  finally:
    pool.shutdown()
    env.close()
  assert serial.keys() == pooled.keys()
  for k in serial:
    np.testing.assert_array_equal(serial[k], pooled[k])
  assert np.ptp(serial["q"]) > 0


def test_step_consumes_vine_batches():
  policy = CAT_MLP
  params = _params(policy, OBS, 25)
  obs = _obs(25, OBS, 32)
  rng = np.random.default_rng(25)
  q = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
  batch = {"obs": obs, "actions": jnp.tile(jnp.arange(4), (32, 1)), "q": q}
  new, info = trpo.step(params, batch, policy, delta=0.01)
  old = policy["apply"](params, obs)
  kl = float(trpo.mean_kl(policy["apply"], policy["dist"], new, obs, old))
  gain = (trpo.vine_surrogate(policy["apply"], policy["dist"], new, obs, batch["actions"], q)
          - trpo.vine_surrogate(policy["apply"], policy["dist"], params, obs, batch["actions"], q))
  assert bool(info["accepted"]) and kl <= 0.01 * (1 + 1e-4) and float(gain) > 0
  with pytest.raises(ValueError, match=r"batch\['actions'\] must start with \[N, K\]"):
    trpo.step(params, dict(batch, actions=batch["actions"][:, :3]), policy)
  with pytest.raises(ValueError, match="fisher='empirical' needs a single-path batch"):
    trpo.step(params, batch, policy, fisher="empirical")


def test_vine_training_improves_cartpole_and_runs_on_mujoco_and_atari():
  quiet = lambda s: None
  hist = trpo.train("CartPole-v1", steps=25_000, seed=0, log=quiet, method="vine", batch=1000,
                    vine_states=60, vine_q="all", vine_horizon=40)[2]
  assert hist[-1]["mean_return"] > 1.5 * hist[0]["mean_return"], [h["mean_return"] for h in hist]
  assert all(h["kl"] <= 0.01 * (1 + 1e-4) for h in hist)
  hist = trpo.train("Hopper-v5", steps=300, seed=0, log=quiet, method="vine", batch=100,
                    vine_states=5, vine_actions=3, vine_horizon=10, normalize_obs=True)[2]
  assert all(np.isfinite(h["kl"]) for h in hist)
  hist = trpo.train("ALE/Pong-v5", steps=40, seed=0, log=quiet, method="vine", batch=16,
                    vine_states=2, vine_actions=2, vine_horizon=4, vine_q="uniform")[2]
  assert len(hist) >= 1 and all(np.isfinite(h["kl"]) for h in hist)


# ----------------------------------------------------------------------------------------------
# The Section 8 comparison methods (baselines.py, --method in trpo.train).
# ----------------------------------------------------------------------------------------------

import baselines  # noqa: E402


def test_cem_finds_the_maximum_of_a_quadratic():
  c = np.array([1.0, -2.0, 0.5, 3.0, 0.0])
  search, rng = baselines.cem_init(np.zeros(5), 2.0), np.random.default_rng(0)
  for i in range(60):
    thetas = baselines.cem_ask(search, rng, 50)
    search = baselines.cem_tell(search, thetas, -np.sum((thetas - c)**2, 1), 0.2,
                                extra_std=0.1 * max(0.0, 1 - i / 30))
  np.testing.assert_allclose(search["mean"], c, atol=1e-3)
  with pytest.raises(ValueError, match="finite"):
    baselines.cem_tell(search, thetas, np.full(50, np.nan))


def test_weighted_ml_is_weighted_least_squares():
  # A linear Gaussian policy μ = Wx + b, σ = exp(r): the weighted log-likelihood's maximiser is
  # weighted least squares for (W, b) and the weighted residual variance for σ².
  rng = np.random.default_rng(0)
  x = rng.normal(size=(512, 3)).astype(np.float32)
  a = (x @ [[1.0], [-0.5], [2.0]] + 0.3 + 0.5 * rng.normal(size=(512, 1))).astype(np.float32)
  w = rng.uniform(0.1, 2.0, 512).astype(np.float32)
  policy = policies.gaussian_policy(policies.linear(1), 1)
  params = policy["init"](jax.random.PRNGKey(0), (3,))
  fit = baselines.weighted_ml(params, jnp.asarray(x), jnp.asarray(a), jnp.asarray(w),
                              jax.random.PRNGKey(1), apply=policy["apply"], dist_name="gaussian",
                              epochs=1500, n_minibatches=1, lr=2e-2)
  X = np.hstack([x, np.ones((512, 1))])
  coef = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w[:, None] * a))
  var = np.sum(w[:, None] * (a - X @ coef)**2) / np.sum(w)
  mu = policy["apply"](fit, jnp.asarray(x))
  np.testing.assert_allclose(mu["mean"], X @ coef, atol=2e-3)
  np.testing.assert_allclose(np.exp(2 * fit["log_std"][0]), var, rtol=2e-3)


def test_reps_weights_meet_the_kl_bound_and_match_features():
  # At the dual's minimiser (η*, v*): KL(p ‖ uniform) = ε for p ∝ exp(δ/η) (the constraint is
  # active), and ∂g/∂v = 0 is the discounted stationarity of the features under p:
  # E_p[φ(s)] = (1−γ) φ̄₀ + γ E_p[(1−d) φ(s')].
  rng = np.random.default_rng(1)
  n, eps, gamma = 400, 0.3, 0.9
  feats = baselines.reps_features(rng.normal(size=(n, 2)))
  nxt = baselines.reps_features(rng.normal(size=(n, 2)))
  init = jnp.mean(baselines.reps_features(rng.normal(size=(50, 2))), 0)
  rewards = jnp.asarray(rng.normal(size=n) + np.asarray(feats[:, 0]), jnp.float32)
  not_done = jnp.asarray(rng.uniform(size=n) > 0.1, jnp.float32)
  w, eta, v = baselines.reps_weights(feats, nxt, rewards, not_done, init, gamma, eps)
  p = np.asarray(w, np.float64) / np.sum(w)
  assert float(eta) > 0
  np.testing.assert_allclose(np.sum(p * np.log(n * p)), eps, rtol=1e-3)
  lhs = p @ np.asarray(feats)
  rhs = (1 - gamma) * np.asarray(init) + gamma * p @ (np.asarray(not_done)[:, None] * nxt)
  np.testing.assert_allclose(lhs, rhs, atol=1e-4)


@pytest.mark.parametrize("method, options", [
    ("natural_gradient", {"step_size": 3.0}), ("empirical_fim", {}), ("max_kl", {"delta": 0.05}),
    ("rwr", {}), ("reps", {"ml_epochs": 3}), ("cem", {"population": 10}), ("cma", {"population": 10})])
def test_comparison_methods_improve_cartpole(method, options, tmp_path):
  _, _, hist, _, _ = trpo.train("CartPole-v1", steps=12_288, seed=0, out=str(tmp_path),
                                log=lambda s: None, method=method, batch=2048, **options)
  returns = [h["mean_return"] for h in hist]
  assert np.mean(returns[-2:]) > 2 * returns[0], returns
  if method == "max_kl":   # the max-KL constraint bounds the mean KL too
    assert all(h["kl"] <= 0.05 * (1 + 1e-4) for h in hist)
  # The log is strict JSON: a quantity the method lacks (CEM/CMA have no KL) is null, not NaN.
  def no_constants(c):
    raise ValueError(c)
  logged = [__import__("json").loads(l, parse_constant=no_constants)
            for l in (tmp_path / "log.jsonl").read_text().splitlines()]
  assert len(logged) == len(hist) and all((r["kl"] is None) == (method in ("cem", "cma"))
                                          for r in logged)
  # The checkpoint carries the search state: resuming continues, and --eval runs.
  trpo.train("CartPole-v1", steps=hist[-1]["steps"] + 1, out=str(tmp_path), resume=True,
             log=lambda s: None)
  assert np.isfinite(trpo.evaluate(str(tmp_path), episodes=1)[0])
