"""Environments: vectorized Gymnasium environments and the policy that fits their spaces.

The paper's tasks (Section 8): MuJoCo `Swimmer-v5`, `Hopper-v5`, `Walker2d-v5`; the Barto et al.
cart-pole `CartPole-v1`; and the seven Atari games of Table 1 with the preprocessing of Mnih et
al. (2013) — frame skip 4, grayscale, 84×84, the last 4 frames stacked, kept as uint8 — built
from Gymnasium's own `AtariPreprocessing` and `FrameStackObservation`. Any other Gymnasium id
works if its action space is `Box`, `Discrete` or `MultiDiscrete`.

Environments are stepped by Gymnasium's vector environments with autoreset in the same step
(`AutoresetMode.SAME_STEP`): when an episode ends, `info["final_obs"]` holds its last
observation and the returned observation already starts the next one. `RecordEpisodeStatistics`
reports undiscounted episode returns. `vectorization="auto"` (the default) picks by measurement
on this 2-core machine (`bench/vector_mode.py`, `results/vector_mode.txt`, 8 copies):
synchronous for classic control and MuJoCo, where a step takes microseconds to tens of
microseconds, less than a round trip between processes (async/sync throughput 0.16 on
CartPole, 0.59 on Hopper, 0.60 on Walker2d); asynchronous (a process per copy) for Atari, whose
four emulated frames and resize per step outweigh the round trip (async/sync 1.24 on Pong).
"""

import copy
import os

import ale_py
import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode

import policies

VECTORIZATION = ("auto", "sync", "async")

gym.register_envs(ale_py)   # the ALE/... ids (importing ale_py registers them; this keeps it used)


def is_atari(env_id):
  """True for an ALE id ("ALE/Pong-v5")."""
  return str(env_id).startswith("ALE/")


def atari_wrappers():
  """Mnih et al. (2013) preprocessing as a list of Gymnasium wrappers (applied in order).

  `AtariPreprocessing`: up to 30 no-op actions at reset, frame skip 4 (max-pooled over the last
  two frames), grayscale, resized to 84×84; `FrameStackObservation`: the last 4 frames, giving
  uint8 observations [4, 84, 84].
  """
  return [lambda e: gym.wrappers.AtariPreprocessing(e, noop_max=30, frame_skip=4, screen_size=84,
                                                    grayscale_obs=True),
          lambda e: gym.wrappers.FrameStackObservation(e, 4)]


def _make_args(env_id):
  """(gym.make keyword arguments, wrappers) for an id; ValueError for an unknown id."""
  kwargs, wrappers = {}, []
  if is_atari(env_id):
    # Frame skipping is done by AtariPreprocessing; no sticky actions, as in Mnih et al. (2013).
    kwargs = {"frameskip": 1, "repeat_action_probability": 0.0}
    wrappers = atari_wrappers()
  try:
    gym.spec(env_id)
  except Exception as e:  # noqa: BLE001 - gymnasium raises several error types here
    raise ValueError(f"unknown environment id {env_id!r} ({type(e).__name__}: {e})") from None
  return kwargs, wrappers


def _made(env_id, make_fn, hint=""):
  """make_fn() for a registered id, with a failure to build it (a dependency that is not
  installed, an environment that moved elsewhere) as a one-line ValueError."""
  try:
    return make_fn()
  except Exception as e:  # noqa: BLE001 - Gymnasium and the simulators raise many types
    first = (str(e).strip().splitlines() or [""])[0]
    raise ValueError(f"environment {env_id!r} cannot be made here ({type(e).__name__}: "
                     f"{first}){hint}") from None


def make(env_id, num_envs=1, seed=0, vectorization="auto", video=None):
  """A vector environment of `num_envs` copies of `env_id`, reset with `seed`; with `video` (a
  path ending .mp4) recorded by Gymnasium's `RecordVideo` into that file when closed (needs
  moviepy: `pip install -e ".[video]"`).

  Returns (envs, first observations [num_envs, *obs_shape]). Raises ValueError for an unknown
  id, an unsupported action space or a bad option.
  """
  if vectorization not in VECTORIZATION:
    raise ValueError(f"vectorization must be one of {VECTORIZATION}, got {vectorization!r}")
  if not isinstance(num_envs, int) or num_envs < 1:
    raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
  if vectorization == "auto":
    vectorization = "async" if is_atari(env_id) and num_envs > 1 else "sync"
  kwargs, wrappers = _make_args(env_id)
  if video:
    kwargs["render_mode"] = "rgb_array"
    os.environ.setdefault("MUJOCO_GL", "egl")   # MuJoCo renders off-screen: no display here
  vector_kwargs = {"autoreset_mode": AutoresetMode.SAME_STEP}
  if vectorization == "async":
    # Worker processes start from a fresh server process, not by forking this one: JAX runs
    # threads, and a fork of a multithreaded process can deadlock.
    vector_kwargs["context"] = "forkserver"
  envs = _made(env_id, lambda: gym.make_vec(env_id, num_envs=num_envs,
                                            vectorization_mode=vectorization,
                                            vector_kwargs=vector_kwargs, wrappers=wrappers,
                                            **kwargs),
               "; async environments start processes, so a script must call train under "
               "`if __name__ == '__main__':` (or use vectorization='sync')"
               if vectorization == "async" else "")
  try:
    action_kind(envs.single_action_space)
  except ValueError:
    envs.close()
    raise
  envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
  obs, _ = envs.reset(seed=seed)
  envs.action_space.seed(seed)
  if video:   # one recording from the first step until close, as <name>-step-0.mp4
    try:
      _made(env_id, envs.render, "; recording needs its renderer (classic control: pygame, "
            "in the [video] extra)")
    except ValueError:
      envs.close()
      raise
    folder, name = os.path.split(os.path.abspath(video))
    envs = gym.wrappers.vector.RecordVideo(envs, folder, step_trigger=lambda t: t == 0,
                                           video_length=10**9, name_prefix=name[:-4])
  return envs, obs


def action_kind(space):
  """"gaussian" for Box, "categorical" for Discrete, "factored" for MultiDiscrete (Appendix D)."""
  if isinstance(space, gym.spaces.Box):
    if len(space.shape) != 1:
      raise ValueError(f"Box action spaces must be 1-D, got shape {space.shape}")
    return "gaussian"
  if isinstance(space, gym.spaces.Discrete):
    return "categorical"
  if isinstance(space, gym.spaces.MultiDiscrete):
    if space.nvec.ndim != 1:
      raise ValueError(f"MultiDiscrete action spaces must be 1-D, got nvec {space.nvec}")
    return "factored"
  raise ValueError(f"unsupported action space {space}: TRPO here handles Box (Gaussian), "
                   "Discrete (categorical) and MultiDiscrete (factored categorical)")


def policy_for(obs_space, action_space, hidden=(64, 64), linear=False, log_std_init=0.0):
  """The policy for a pair of spaces: the Atari CNN of Figure 3 for stacked uint8 frames, an MLP
  (or a linear map, `linear=True`, the paper's cart-pole policy) for flat observations; the
  distribution of Appendix D that matches the action space."""
  kind = action_kind(action_space)
  if not isinstance(obs_space, gym.spaces.Box):
    raise ValueError(f"unsupported observation space {obs_space}: flat Box vectors or stacked "
                     "frames")
  n_out = {"gaussian": lambda: action_space.shape[0],
           "categorical": lambda: int(action_space.n),
           "factored": lambda: int(np.sum(action_space.nvec))}[kind]()
  if len(obs_space.shape) == 3:
    net = policies.atari_cnn(n_out)
  elif len(obs_space.shape) == 1:
    net = policies.linear(n_out) if linear else policies.mlp(hidden, n_out)
  else:
    raise ValueError(f"unsupported observation shape {obs_space.shape}: flat vectors or stacked "
                     "frames [C, H, W]")
  if kind == "gaussian":
    return policies.gaussian_policy(net, n_out, log_std_init)
  if kind == "categorical":
    return policies.categorical_policy(net)
  return policies.factored_categorical_policy(net, [int(n) for n in action_space.nvec])


def env_action(action_space, action):
  """What the environment is given: Gaussian actions clipped to a Box's bounds (the batch keeps
  the unclipped sample, whose log-probability the update needs); integers otherwise."""
  if isinstance(action_space, gym.spaces.Box):
    return np.clip(action, action_space.low, action_space.high).astype(action_space.dtype)
  return np.asarray(action).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Saving and restoring the complete state of one environment (Section 5.2: the vine method
# "requires the system to be restored to particular states").
# ----------------------------------------------------------------------------------------------


def make_single(env_id, seed=0):
  """One (non-vector) environment with the same preprocessing as `make`, reset with `seed`.

  Returns (env, first observation). Vine branch rollouts run on such environments, restored
  with `set_state`.
  """
  kwargs, wrappers = _make_args(env_id)
  env = _made(env_id, lambda: gym.make(env_id, **kwargs))
  for wrap in wrappers:
    env = wrap(env)
  obs, _ = env.reset(seed=seed)
  return env, obs


def _layers(env):
  """The wrapper chain, outermost first, ending with the unwrapped environment."""
  out = [env]
  while hasattr(out[-1], "env"):
    out.append(out[-1].env)
  return out


def _simulator_state(base):
  """The state of the simulator inside an unwrapped environment, by family."""
  if hasattr(base, "ale"):
    # The emulator: RAM, CPU and TIA registers, frame counters, and its random number
    # generator (include_rng), so that restored rollouts replay exactly.
    return ("ale", base.ale.cloneState(include_rng=True))
  if hasattr(base, "data") and hasattr(base, "model"):
    # mjSTATE_INTEGRATION: time, qpos, qvel, act (actuator state), warm-start accelerations,
    # controls and applied forces — everything mj_step reads.
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    buf = np.empty(mujoco.mj_stateSize(base.model, spec))
    mujoco.mj_getState(base.model, base.data, buf, spec)
    return ("mujoco", buf)
  return ("python", None)   # classic control: the state vector lives in the attributes below


def _copyable_attributes(layer):
  # Simulator handles are saved by _simulator_state; renderers hold no dynamics.
  skip = {"env", "ale", "model", "data", "renderer", "mujoco_renderer", "viewer", "screen",
          "clock", "_env"}
  return {k: copy.deepcopy(v) for k, v in vars(layer).items() if k not in skip}


def get_state(env):
  """A snapshot of everything that determines the environment's future given its actions: the
  simulator state (MuJoCo positions, velocities, actuator state and time; the ALE emulator
  including its RNG; a classic-control state vector) and every wrapper's own state (time-limit
  counters, frame stacks, max-pool buffers, the environments' np_random generators)."""
  layers = _layers(env)
  return {"sim": _simulator_state(layers[-1]), "attrs": [_copyable_attributes(l) for l in layers]}


def set_state(env, state):
  """Restores a snapshot from `get_state` into the same kind of environment (in place)."""
  layers = _layers(env)
  if len(layers) != len(state["attrs"]):
    raise ValueError("set_state: the snapshot was taken from a different wrapper chain")
  for layer, attrs in zip(layers, state["attrs"]):
    vars(layer).update(copy.deepcopy(attrs))
  kind, sim = state["sim"]
  base = layers[-1]
  if kind == "ale":
    base.ale.restoreState(sim)
  elif kind == "mujoco":
    mujoco.mj_setState(base.model, base.data, sim, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(base.model, base.data)
