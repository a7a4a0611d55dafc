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
from jax.example_libraries import optimizers, stax

import policies
import sampling


def value_net(obs_shape, hidden=(64, 64)):
  """V(s): an MLP on the observation; stax (init, apply) → [B, 1].

  For Atari frames [4, 42, 42] the MLP sees the frames average-pooled 2×2 to [21, 21, 4]. The
  paper does not use a value function; this one only has to be a useful GAE baseline, and on
  CPU fitting it costs 0.6 s for 10 epochs on 2,048 frames against 17 s for the policy's CNN.
  """
  if len(obs_shape) == 3:
    pool = max(1, obs_shape[1] // 21)
    return stax.serial(policies.frames_to_nhwc(), stax.AvgPool((pool, pool), (pool, pool)),
                       stax.Flatten, policies.mlp(hidden, 1, out_scale=1.0))
  return policies.mlp(hidden, 1, out_scale=1.0)


@functools.partial(jax.jit, static_argnames=("apply",))
def value_predict(params, stats, obs, *, apply):
  """V(s) for obs [B, ...] → [B] (obs normalised by `sampling.normalize` with stats)."""
  return apply(params, sampling.normalize(stats, obs))[:, 0]


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
  x = sampling.normalize(stats, obs)
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
