"""The value function V(s), the baseline of GAE(λ) advantages (`sampling.gae_advantages`).

Not part of the 2015 paper, whose single-path estimator is the discounted return
(`sampling.discounted_returns`); GAE(λ) with a learned V is the authors' follow-up (Schulman et
al., 2016) and what users expect. V is a small network fitted by minibatch Adam
(`adam_minibatch`, from `jax.example_libraries.optimizers`), which the weighted
maximum-likelihood fit of the Section 8 baselines (`baselines.weighted_ml`) uses too.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import optimizers

import policies
import obsnorm


def features(obs):
  """φ(s), what V's MLP reads: frames [B, C, H, W] scaled as the policy's network scales them
  (`policies.scale_frames`), average-pooled (H // 21)×(H // 21), flattened in NHWC order:
  [B, 21·21·C] for Atari's [4, 42, 42]; vectors [B, D] as they are.

  φ has no parameters, so `value_fit` computes it once per batch instead of in each of its
  minibatch steps; the fitted parameters are bit-for-bit the same. The frames are pooled before
  they are transposed to NHWC, so the transpose moves a quarter of the data (the same numbers as
  pooling after it).
  """
  if obs.ndim != 4:
    return obs
  n, c, h, w = obs.shape
  p = max(1, h // 21)
  x = policies.scale_frames(obs)[:, :, :h // p * p, :w // p * p]
  x = x.reshape(n, c, h // p, p, w // p, p).mean((3, 5))
  return jnp.transpose(x, (0, 2, 3, 1)).reshape(n, -1)


def value_net(obs_shape, hidden=(64, 64)):
  """V(s) = MLP(φ(s)) → [B, 1]: stax (init, apply), where init takes the observations' shape
  (-1, *obs_shape) and apply takes φ(s) (`features`).

  The paper does not use a value function; this one only has to be a useful GAE baseline, and
  a small MLP on 2×2-pooled frames costs far less to fit than the policy's CNN.
  """
  mlp_init, apply = policies.mlp(hidden, 1, out_scale=1.0)

  def init(key, input_shape):
    phi = jax.eval_shape(features, jax.ShapeDtypeStruct((1,) + tuple(input_shape[1:]), jnp.float32))
    return mlp_init(key, (-1,) + phi.shape[1:])
  return init, apply


@functools.partial(jax.jit, static_argnames=("apply",))
def value_predict(params, stats, obs, *, apply):
  """V(s) for obs [B, ...] → [B] (obs normalised by `obsnorm.normalize` with stats)."""
  return apply(params, features(obsnorm.normalize(stats, obs)))[:, 0]


def adam_minibatch(loss, params, data, key, *, epochs, n_minibatches, lr):
  """Minimises loss(params, *minibatch) by Adam (`jax.example_libraries.optimizers`).

  `data` is a tuple of arrays with a common leading axis N; each of `epochs` passes shuffles it
  into `n_minibatches` minibatches (dropping N mod n_minibatches rows at random). Call it inside
  a jitted function: `loss` is traced, not a jit argument. Returns the fitted params.
  """
  opt_init, opt_update, get_params = optimizers.adam(lr)
  size = data[0].shape[0]
  n = size // n_minibatches * n_minibatches

  def epoch(carry, k):
    idx = jax.random.permutation(k, size)[:n].reshape(n_minibatches, -1)

    def minibatch(carry, ib):
      state, i = carry
      g = jax.grad(loss)(get_params(state), *(x[ib] for x in data))
      return (opt_update(i, g, state), i + 1), None
    return jax.lax.scan(minibatch, carry, idx)[0], None

  (state, _), _ = jax.lax.scan(epoch, (opt_init(params), 0), jax.random.split(key, epochs))
  return get_params(state)


@functools.partial(jax.jit, static_argnames=("apply", "epochs", "n_minibatches", "lr"))
def value_fit(params, stats, obs, targets, key, *, apply, epochs=5, n_minibatches=8, lr=1e-3):
  """Regress V(s) on targets [N] by Adam on ½(V − target)² (see `adam_minibatch`).

  Returns (params, mean squared error after fitting).
  """
  def loss(p, xb, yb):
    return 0.5 * jnp.mean((apply(p, xb)[:, 0] - yb)**2)
  x = features(obsnorm.normalize(stats, obs))
  params = adam_minibatch(loss, params, (x, targets), key, epochs=epochs,
                          n_minibatches=n_minibatches, lr=lr)
  return params, 2 * loss(params, x, targets)


def predictor(params, stats, apply):
  """obs [B, ...] (numpy) ↦ V(s) [B] (numpy): V as the advantage estimators take it."""
  return lambda obs: np.asarray(value_predict(params, stats, obs, apply=apply))


def refit(params, stats, obs, targets, key, *, apply, epochs, lr):
  """V refitted to value targets, obs [N, ...] and targets [N] (`value_fit`); with targets
  None (no value function in use) V is left as it is. Returns (params, mean squared error as
  a float, or None)."""
  if targets is None:
    return params, None
  params, loss = value_fit(params, stats, jnp.asarray(obs), jnp.asarray(targets), key,
                           apply=apply, epochs=epochs, lr=lr)
  return params, float(loss)
