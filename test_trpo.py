"""Tests of the TRPO update against independent references.

Conjugate gradient against `np.linalg.solve`; the JᵀMJ Fisher product against an explicit
`jax.hessian` of the mean KL; closed-form KL and entropy against Monte Carlo estimates; the full
step against an explicit natural-gradient step β·F⁻¹g; the constraint on random problems
(hypothesis). Shapes are kept few so that JAX compiles each function only a handful of times.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.example_libraries import stax
from jax.flatten_util import ravel_pytree

import cg
import fastconv
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


def _mean_kl(policy, params, obs, old, out=float):
  """D̄_KL(old ‖ params) over obs (Eq. (12)), computed apart from the update."""
  return out(jnp.mean(policy["dist"]["kl"](old, policy["apply"](params, obs))))


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


def test_cg_product_is_A_times_x():
  # The A x that CG returns (b − r, its residual) against the dense product in float64, after
  # 1, 3, 10 and 30 (= n) iterations; and xᵀAx, the sᵀAs of trpo.step's step length.
  rng = np.random.default_rng(1)
  n = 30
  m = rng.normal(size=(n, n))
  A = m @ m.T / n + 0.1 * np.eye(n)
  b = rng.normal(size=n)
  A32, b32 = jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32)
  for k in (1, 3, 10, 30):
    x, Ax = (np.asarray(y, np.float64) for y in
             cg.solve_with_product(lambda v: A32 @ v, b32, iters=k, tol=0.0))
    np.testing.assert_allclose(Ax, A @ x, rtol=0, atol=1e-5 * np.abs(b).max())
    np.testing.assert_allclose(x @ Ax, x @ A @ x, rtol=1e-5)
    np.testing.assert_array_equal(x, np.asarray(cg.solve(lambda v: A32 @ v, b32, iters=k,
                                                         tol=0.0)))
  # A non-finite product at the first iteration: x = 0 and A x = 0, both finite.
  x, Ax = cg.solve_with_product(lambda v: v * jnp.nan, b32)
  assert np.all(np.asarray(x) == 0) and np.all(np.asarray(Ax) == 0)


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
  # Figure 3 / Section 8.2, worked by hand for 42×42×4 frames (84×84 pooled 2×2):
  # conv 16@4×4 on 4 channels: 4·4·4·16 + 16 = 1,040; conv 16@4×4 on 16: 4·4·16·16 + 16 =
  # 4,112; 42 → 20 → 9, so dense 9·9·16 → 20: 1,296·20 + 20 = 25,940; dense 20 → A: 21·A.
  for n_actions in (6, 18):
    pol = policies.categorical_policy(policies.atari_cnn(n_actions))
    params = pol["init"](jax.random.PRNGKey(0), (4, 42, 42))
    assert policies.n_params(params) == 1040 + 4112 + 25940 + 21 * n_actions
  frames = jnp.zeros((2, 4, 42, 42), jnp.uint8)
  assert pol["apply"](params, frames)["logits"].shape == (2, 18)
  pooled = policies.categorical_policy(policies.atari_cnn(18, pool=2))   # for 84×84 frames
  shapes = lambda p: [x.shape for x in jax.tree_util.tree_leaves(p)]
  assert shapes(pooled["init"](jax.random.PRNGKey(0), (4, 84, 84))) == shapes(params)


@pytest.mark.parametrize("kernel, stride, shape", [((4, 4), (2, 2), (3, 11, 12, 4)),
                                                   ((3, 2), (1, 3), (2, 7, 9, 5)),
                                                   ((4, 4), (2, 2), (fastconv.CONV_CHUNK + 5,
                                                                     11, 12, 4))])
def test_conv_equals_lax_conv_and_its_derivatives(kernel, stride, shape):
  # policies.conv (fastconv.conv_valid) against XLA's own convolution: outputs, and gradients in W, b and x (the last
  # case spans two chunks of the weight tangent, the second padded).
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  init, apply = policies.conv(6, kernel, stride)
  ref_init, ref_apply = stax.Conv(6, kernel, stride)
  out_shape, params = init(jax.random.PRNGKey(1), shape)
  ref_shape, ref_params = ref_init(jax.random.PRNGKey(1), shape)
  assert out_shape == ref_shape
  assert all(jnp.array_equal(a, b) for a, b in zip(params, ref_params))   # same init
  params = (params[0], params[1] + 0.3)
  np.testing.assert_allclose(apply(params, x), ref_apply(params, x), rtol=1e-5, atol=1e-5)
  ct = jax.random.normal(jax.random.PRNGKey(2), ref_shape)
  loss = lambda f: lambda p, z: jnp.sum(f(p, z) * ct)
  for got, want in zip(jax.tree_util.tree_leaves(jax.grad(loss(apply), (0, 1))(params, x)),
                       jax.tree_util.tree_leaves(jax.grad(loss(ref_apply), (0, 1))(params, x))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # Forward mode (J v of the Fisher-vector products), and vmap over frames or over weights.
  tangents = (jax.tree_util.tree_map(lambda p: jnp.cos(p) + 0.1, params), jnp.sin(x))
  np.testing.assert_allclose(jax.jvp(apply, (params, x), tangents)[1],
                             jax.jvp(ref_apply, (params, x), tangents)[1], rtol=1e-4, atol=1e-4)
  stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), params, tangents[0])
  for axes, args in (((None, 0), (params, jnp.stack([x, tangents[1]]))),
                     ((0, None), (stacked, x))):
    np.testing.assert_allclose(jax.vmap(apply, axes)(*args), jax.vmap(ref_apply, axes)(*args),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gaussian-mlp", "factored-cnn"])
def test_apply_in_chunks_equals_one_call(name):
  # N = 128 states in 4 chunks of 32 (size 30: 4 is the largest divisor of 128 up to 128 // 30),
  # in 2 chunks of 64 (size 48), in one call (size N): the same µ as one call of apply.
  policy, obs_shape = FISHER_CASES[name]
  params = _params(policy, obs_shape, 0)
  obs = _obs(0, obs_shape, N)
  for size in (30, 48, N):
    got = trpo.apply_in_chunks(policy["apply"], params, obs, size)
    for g, w in zip(jax.tree_util.tree_leaves(got),
                    jax.tree_util.tree_leaves(policy["apply"](params, obs))):
      assert g.shape == w.shape
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


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
  apply = policy["apply"]
  params = _params(policy, obs_shape, 5)
  obs = _obs(5, obs_shape, 16)
  flat, unravel = ravel_pytree(params)
  old = apply(params, obs)
  H = jax.jit(jax.hessian(lambda p: jnp.mean(trpo.kl_per_state(policy, unravel(p), {"obs": obs, "old_dist": old}))))(flat)
  fvp = trpo.fisher_vp_analytic(policy, params, {"obs": obs})
  F = jax.jit(jax.vmap(fvp))(jnp.eye(flat.size))
  H, F = np.asarray(H), np.asarray(F)
  assert np.abs(H).max() > 1e-3   # not a trivially zero comparison
  np.testing.assert_allclose(F, H, atol=2e-5 * np.abs(H).max() + 1e-7)
  # The double-differentiation product agrees too.
  hvp = trpo.fisher_vp_hessian(policy, params, {"obs": obs, "old_dist": old})
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
  kl = _mean_kl(policy, new, batch["obs"], old)
  assert kl <= delta * (1 + 1e-4) + 1e-7
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(new))
  # info["entropy"]: the mean over the batch of π_θold's entropy (the closed form, itself checked
  # against Monte Carlo above), not π_θnew's.
  np.testing.assert_allclose(float(info["entropy"]),
                             np.mean(np.asarray(policy["dist"]["entropy"](old), np.float64)),
                             rtol=1e-5, atol=1e-6)
  if bool(info["accepted"]):
    batch_q = dict(batch, logp_q=policy["dist"]["log_prob"](old, batch["actions"]))
    gain = (trpo.surrogate(policy, new, batch_q) - trpo.surrogate(policy, params, batch_q))
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
  g = jax.grad(lambda p: trpo.surrogate(policy, unravel(p), b))(flat)
  if fisher == "analytic":
    F = jax.hessian(lambda p: _mean_kl(policy, unravel(p), batch["obs"], old, jnp.asarray))(flat)
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
  new, info = trpo.natural_gradient_step(params, batch, GAUSS_LIN, step_size=step_size,
                                        **EXACT)
  g, F, flat, _ = _explicit_natural_gradient(GAUSS_LIN, params, batch)
  expected = step_size * np.linalg.solve(F, g)
  step = np.asarray(ravel_pytree(new)[0] - flat, np.float64)
  np.testing.assert_allclose(step, expected, rtol=0, atol=2e-3 * np.abs(expected).max())
  assert bool(info["accepted"]) and float(info["kl"]) > 0.01


def test_empirical_fim_variant_uses_the_score_covariance():
  params = _params(GAUSS_LIN, OBS, 13)
  batch = _batch(GAUSS_LIN, params, 13)
  delta = 1e-4
  new, info = trpo.step(params, batch, GAUSS_LIN, fisher=trpo.fisher_vp_empirical, delta=delta,
                        **EXACT)
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
  new, info_max = trpo.step(params, batch, policy, delta=delta, constraint=jnp.max)
  old = policy["apply"](params, batch["obs"])
  kls = np.asarray(trpo.kl_per_state(policy, new, {"obs": batch["obs"], "old_dist": old}))
  assert float(info_mean["max_kl"]) > delta          # the mean constraint lets some states move more
  assert bool(info_max["accepted"]) and kls.max() <= delta * (1 + 1e-4)


def test_hessian_fisher_variant_gives_the_same_step():
  policy = CAT_MLP
  params = _params(policy, OBS, 15)
  batch = _batch(policy, params, 15)
  new_a, _ = trpo.step(params, batch, policy, fisher=trpo.fisher_vp_analytic, subsample=1.0)
  new_h, _ = trpo.step(params, batch, policy, fisher=trpo.fisher_vp_hessian, subsample=1.0)
  a, h = ravel_pytree(new_a)[0], ravel_pytree(new_h)[0]
  np.testing.assert_allclose(np.asarray(a), np.asarray(h), atol=1e-4 * float(jnp.abs(a).max()))


def test_subsampled_fisher_still_satisfies_the_constraint_on_the_whole_batch():
  policy = GAUSS_MLP
  params = _params(policy, OBS, 16)
  batch = _batch(policy, params, 16)
  new, info = trpo.step(params, batch, policy, jax.random.PRNGKey(3), subsample=0.1)
  old = policy["apply"](params, batch["obs"])
  kl = _mean_kl(policy, new, batch["obs"], old)
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
    ("subsample", 0.0, r"subsample must be in \(0, 1\]"),
    ("subsample", 1.5, "subsample"),
    ("damping", -0.1, "damping must be a finite number >= 0"),
    ("max_backtracks", 0, "max_backtracks"),
    ("backtrack_ratio", 1.0, "backtrack_ratio"),
    ("fisher", "empirical", "fisher must be a function"),
    ("constraint", "max", "constraint must be a function"),
])
def test_invalid_options_raise(option, value, message):
  params = _params(GAUSS_MLP, OBS, 20)
  batch = _batch(GAUSS_MLP, params, 20)
  with pytest.raises(ValueError, match=message):
    trpo.step(params, batch, GAUSS_MLP, **{option: value})


def test_natural_gradient_needs_a_positive_step_size():
  params = _params(GAUSS_MLP, OBS, 21)
  with pytest.raises(ValueError, match="step_size must be a finite number > 0, got 0.0"):
    trpo.natural_gradient_step(params, _batch(GAUSS_MLP, params, 21), GAUSS_MLP, step_size=0.0)


def test_mismatched_batch_shapes_raise():
  params = _params(GAUSS_MLP, OBS, 22)
  batch = _batch(GAUSS_MLP, params, 22)
  with pytest.raises(ValueError, match=r"batch\['adv'\] must be an array with the leading axis"):
    trpo.step(params, dict(batch, adv=batch["adv"][:-1]), GAUSS_MLP)
  with pytest.raises(ValueError, match=r"batch\['adv'\] must be of shape \[N\]"):
    trpo.step(params, dict(batch, adv=batch["adv"][:, None]), GAUSS_MLP)
  with pytest.raises(ValueError, match="cannot be applied to batch\\['obs'\\] of shape"):
    trpo.step(params, dict(batch, obs=jnp.zeros((N, 5))), GAUSS_MLP)
  with pytest.raises(ValueError, match=r"missing \['actions'\]"):
    trpo.step(params, {"obs": batch["obs"], "adv": batch["adv"]}, GAUSS_MLP)




def test_step_is_invariant_to_the_scale_of_the_advantages():
  # β·A⁻¹g does not change when Â is multiplied by c > 0: g and A⁻¹g scale by c, β by 1/c, and
  # L(θ) − L(θ_old) keeps its sign. CG must therefore stop on a residual relative to g.
  params = _params(CAT_MLP, OBS, 26)
  batch = _batch(CAT_MLP, params, 26)
  flat0 = ravel_pytree(params)[0]
  delta_theta = lambda c: np.asarray(ravel_pytree(trpo.step(
      params, dict(batch, adv=batch["adv"] * c), CAT_MLP, jax.random.PRNGKey(0))[0])[0] - flat0)
  ref = delta_theta(1.0)
  assert np.abs(ref).max() > 0
  for c in (1e-6, 1e-4, 1e-3, 1e4, 1e6):
    np.testing.assert_allclose(delta_theta(c), ref, rtol=0, atol=1e-3 * np.abs(ref).max(),
                               err_msg=f"advantages scaled by {c}")


@pytest.mark.parametrize("eps", [1e-6, 1e-4, 1e-2, 0.3])
def test_gaussian_kl_keeps_relative_precision_and_sign_for_close_policies(eps):
  # Float32 against the closed form in float64: KL(old ‖ new) for new = old + eps·(noise).
  rng = np.random.default_rng(27)
  m, s = rng.normal(size=(64, 3)), rng.normal(scale=0.5, size=(64, 3))
  dm, ds = eps * rng.normal(size=(64, 3)), eps * rng.normal(size=(64, 3))
  old = {"mean": jnp.asarray(m, jnp.float32), "log_std": jnp.asarray(s, jnp.float32)}
  new = {"mean": jnp.asarray(m + dm, jnp.float32), "log_std": jnp.asarray(s + ds, jnp.float32)}
  # The reference from the float32 inputs as they are: differences exact in float64.
  m0, s0 = np.asarray(old["mean"], np.float64), np.asarray(old["log_std"], np.float64)
  m1, s1 = np.asarray(new["mean"], np.float64), np.asarray(new["log_std"], np.float64)
  d = s0 - s1
  ref = 0.5 * np.sum(np.expm1(2 * d) - 2 * d + ((m0 - m1) * np.exp(-s1))**2, axis=-1)
  got = np.asarray(policies.GAUSSIAN["kl"](old, new), np.float64)
  assert np.all(got >= 0)
  np.testing.assert_allclose(got, ref, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# The policy contract, checked by `step`.
# ----------------------------------------------------------------------------------------------


def test_a_batch_statistics_apply_is_refused_in_one_line():
  # Centring on the batch mean looks legal, but the line search applies the policy in chunks:
  # with a time-major batch every candidate step would then be measured on other inputs.
  centred = dict(GAUSS_MLP, apply=lambda p, o: GAUSS_MLP["apply"](p, o - jnp.mean(o, 0)))
  params = _params(GAUSS_MLP, OBS, 40)
  with pytest.raises(ValueError, match=r"^policy\['apply'\] must give each state's µ from that "
                     r"state alone[^\n]*no batch statistics in apply$"):
    trpo.step(params, _batch(GAUSS_MLP, params, 40), centred)


def test_mu_without_the_leading_axis_n_is_refused_in_one_line():
  transposed = dict(GAUSS_MLP, apply=lambda p, o: jax.tree_util.tree_map(
      lambda x: x.T, GAUSS_MLP["apply"](p, o)))      # µ leaves of shape [2, N]
  params = _params(GAUSS_MLP, OBS, 41)
  with pytest.raises(ValueError, match=r"^every leaf of µ = policy\['apply'\]\(params, obs\) "
                     rf"must be an array with the leading axis N = {N} [^\n]*\[\(2, {N}\)"):
    trpo.step(params, _batch(GAUSS_MLP, params, 41), transposed)


@pytest.mark.parametrize("missing", ["log_prob", "kl"])
def test_a_missing_log_prob_or_kl_is_named(missing):
  dist = {k: f for k, f in GAUSS_MLP["dist"].items() if k != missing}
  params = _params(GAUSS_MLP, OBS, 42)
  with pytest.raises(ValueError, match=rf"^the policy needs policy\['dist'\]\['{missing}'\]"):
    trpo.step(params, _batch(GAUSS_MLP, params, 42), dict(GAUSS_MLP, dist=dist))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_without_fisher_vp_the_product_comes_from_the_kl(kind):
  policy = MLP_POLICIES[kind]
  bare = dict(policy, dist={k: f for k, f in policy["dist"].items() if k != "fisher_vp"})
  params = _params(policy, OBS, 43)
  batch = _batch(policy, params, 43)
  key = jax.random.PRNGKey(5)
  closed, info = trpo.step(params, batch, policy, key)
  derived, info_bare = trpo.step(params, batch, bare, key)
  assert bool(info["accepted"]) and bool(info_bare["accepted"])
  np.testing.assert_allclose(ravel_pytree(derived)[0], ravel_pytree(closed)[0], atol=1e-5)


def test_the_same_policy_stepped_again_compiles_once():
  traced = []

  def apply(p, o):   # notes each call made while tracing (a compilation), not the checks' calls
    if isinstance(o, jax.core.Tracer):
      traced.append(1)
    return GAUSS_MLP["apply"](p, o)
  policy = dict(GAUSS_MLP, apply=apply)
  params = _params(GAUSS_MLP, OBS, 44)
  batch = _batch(GAUSS_MLP, params, 44)
  trpo.step(params, batch, policy, jax.random.PRNGKey(0))
  assert traced
  traced.clear()
  new, _ = trpo.step(params, batch, policy, jax.random.PRNGKey(1))
  trpo.step(new, batch, dict(policy), jax.random.PRNGKey(2), delta=0.02)  # a copy, a new δ
  assert not traced
