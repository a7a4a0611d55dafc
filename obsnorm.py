"""Running observation normalisation: the statistics of the observations seen so far.

Not in the paper: observations are standardised by a running mean and variance (Chan et al.'s
parallel update) before the policy and value networks see them, as most TRPO implementations
do for MuJoCo (train.py's MuJoCo and Atari defaults). The statistics are part of a run's state:
updated after each iteration from its batch, saved in the checkpoint, used again on resume and
evaluation.
"""

import jax
import jax.numpy as jnp
import numpy as np


# The largest observation magnitude the statistics take: a larger one (or inf, NaN) would make
# the variance overflow float32 in `normalize`, and every input constant from then on.
OBS_LIMIT = 1e18


def check_obs(obs, where):
  """Raises ValueError if float observations [N, ...] hold a value that is not finite or
  exceeds OBS_LIMIT, naming where it came from (`where` formatted with row, its index in N): it
  must not reach the statistics, the batch or a checkpoint."""
  obs = np.asarray(obs)
  ok = obs.dtype == np.uint8 or np.abs(obs) <= OBS_LIMIT
  if not np.all(ok):
    i = np.unravel_index(np.flatnonzero(~ok)[0], obs.shape)
    raise ValueError(f"the environment returned the observation value {obs[i]:g} "
                     f"{where.format(row=i[0])} (not finite, or beyond {OBS_LIMIT:g}); the "
                     "iteration is refused and the last checkpoint kept")


def stats_refusal(stats):
  """Why {"mean", "var", "count"} (as a checkpoint holds them) cannot be the statistics of any
  observations `check_obs` lets through, or "": each must be finite numbers, the variance in
  [0, OBS_LIMIT²], the count > 0."""
  arrays = {k: np.asarray(v) for k, v in stats.items() if v is not None}
  if set(arrays) != {"mean", "var", "count"} or any(a.dtype.kind != "f" for a in arrays.values()):
    return "they need float arrays 'mean', 'var' and 'count'"
  if not all(np.all(np.isfinite(a)) for a in arrays.values()):
    return "they hold a value that is not finite"
  if np.any(np.abs(arrays["mean"]) > OBS_LIMIT) or np.any(arrays["var"] < 0) or \
      np.any(arrays["var"] > OBS_LIMIT**2) or not arrays["count"] > 0:
    return (f"a mean beyond {OBS_LIMIT:g}, a variance outside [0, {OBS_LIMIT**2:g}] or a count "
            "<= 0")
  return ""


def obs_stats_init(obs_shape):
  """Running mean/variance of observations: {"mean", "var", "count"} (count starts tiny)."""
  return {"mean": np.zeros(obs_shape, np.float64), "var": np.ones(obs_shape, np.float64),
          "count": np.float64(1e-4)}


def obs_stats_update(stats, obs):
  """Merge a batch obs [N, *shape] into the running moments (Chan et al.'s parallel update)."""
  obs = np.asarray(obs)
  check_obs(obs, "in row {row} of the batch for the observation statistics")
  n, mean = obs.shape[0], obs.mean(0, dtype=np.float64)
  if obs.dtype == np.uint8:
    # Frames: E[x²] − E[x]² is exact here (squares ≤ 255² in float32, sums in float64) and one
    # pass, where numpy's two-pass var is slow on a batch of Atari frames.
    var = np.square(obs, dtype=np.float32).mean(0, dtype=np.float64) - mean**2
  else:
    var = obs.var(0, dtype=np.float64)   # two-pass: no cancellation when |mean| ≫ std
  total = stats["count"] + n
  d = mean - stats["mean"]
  new_mean = stats["mean"] + d * n / total
  m2 = stats["var"] * stats["count"] + var * n + d**2 * stats["count"] * n / total
  return {"mean": new_mean, "var": m2 / total, "count": np.float64(total)}


@jax.jit
def normalize(stats, obs):
  """(obs − mean)/√(var + 1e-8), clipped to [−10, 10]; identity when stats is None.

  The clip keeps a never-seen observation from producing an extreme input; 1e-8 guards
  constant dimensions. Compiled, so that the four operations are one pass over obs, not four.
  """
  if stats is None:
    return obs
  z = (obs - stats["mean"].astype(jnp.float32)) / jnp.sqrt(stats["var"].astype(jnp.float32) + 1e-8)
  return jnp.clip(z, -10.0, 10.0)
