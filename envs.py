"""Environments: vectorized Gymnasium environments and the policy that fits their spaces.

The paper's tasks (Section 8): MuJoCo `Swimmer-v5`, `Hopper-v5`, `Walker2d-v5`; the Barto et al.
cart-pole `CartPole-v1`; and the seven Atari games of Table 1 with the preprocessing of Mnih et
al. (2013) — frame skip 4, grayscale, the last 4 frames stacked, kept as uint8 — built from
Gymnasium's own `AtariPreprocessing` and `FrameStackObservation`, with frames of 42×42 rather
than 84×84 (see `atari_wrappers`). Any other Gymnasium id
works if its action space is `Box`, `Discrete` or `MultiDiscrete`.

Environments are stepped by Gymnasium's vector environments with autoreset in the same step
(`AutoresetMode.SAME_STEP`): when an episode ends, `info["final_obs"]` holds its last
observation and the returned observation already starts the next one. `RecordEpisodeStatistics`
reports undiscounted episode returns. `vectorization="auto"` (the default) is synchronous for
classic control and MuJoCo, where a step costs less than a round trip between processes, and
asynchronous (a process per copy) for Atari, whose four emulated frames and resize per step
outweigh it (measured by `bench/vector_mode.py`: `results/vector_mode.txt`). With backend
"envpool", MuJoCo copies are stepped by EnvPool's C++ threads instead (`pool.py`).
"""

import copy
import os
import signal
import warnings

import ale_py
import gymnasium as gym
import jax
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode

import policies
import pool

VECTORIZATION = ("auto", "sync", "async")
# What steps a vector env: Gymnasium's own vector envs, or EnvPool's C++ threads (`pool.py`).
BACKENDS = ("gymnasium", "envpool")
# Copies of an environment in one vector env: each is built, and held in memory, up front.
MAX_ENVS = 1024

gym.register_envs(ale_py)   # the ALE/... ids (importing ale_py registers them; this keeps it used)


def _mujoco_warning(message):
  """MuJoCo's warnings (an unstable simulation, which MuJoCo resets itself) as Python warnings,
  once per kind, instead of MuJoCo's default: a MUJOCO_LOG.TXT in the working directory, outside
  the run directory. Its notes that a model file uses a deprecated attribute are dropped: they
  are about Gymnasium's files, which a user cannot change, and would come with every run."""
  if "deprecated" not in message:
    warnings.warn(f"MuJoCo: {message.split(' Time =')[0]}", RuntimeWarning, stacklevel=2)


mujoco.set_mju_user_warning(_mujoco_warning)


def is_atari(env_id):
  """True for an ALE id ("ALE/Pong-v5")."""
  return str(env_id).startswith("ALE/")


def fire_after_reset(env):
  """FIRE after every reset and after every lost life, as the FireResetEnv of OpenAI Baselines
  does after a reset: for games that wait for FIRE to serve (Breakout), so that a policy that
  never presses FIRE in the waiting frame cannot stall the game (README, Table 1). Not part of
  the paper's protocol; `train.py --fire-reset` turns it on.

  The extra FIRE step is taken inside reset() and inside the step() that lost the life (its
  reward is added, its observation returned, an episode it ends ends there). Built on a plain
  `gymnasium.Wrapper` whose reset and step are replaced, with its state (the lives count) an
  attribute, so that `get_state`/`set_state` save and restore it with the emulator (vine).
  """
  fire = env.unwrapped.get_action_meanings().index("FIRE")
  wrapper = gym.Wrapper(env)
  wrapper.lives = 0

  def reset(**kwargs):
    env.reset(**kwargs)
    obs, _, terminated, truncated, info = env.step(fire)
    if terminated or truncated:
      obs, info = env.reset(**kwargs)
    wrapper.lives = env.unwrapped.ale.lives()
    return obs, info

  def step(action):
    obs, reward, terminated, truncated, info = env.step(action)
    lives = env.unwrapped.ale.lives()
    if lives < wrapper.lives and not (terminated or truncated):
      obs, extra, terminated, truncated, info = env.step(fire)
      reward += extra
    wrapper.lives = env.unwrapped.ale.lives()
    return obs, reward, terminated, truncated, info
  wrapper.reset, wrapper.step = reset, step
  return wrapper


def family(env_id):
  """"atari" for an ALE id, "mujoco" for a Gymnasium MuJoCo task, "other" otherwise (classic
  control, Box2D, a factory): what `train.FAMILY_DEFAULTS` is keyed by."""
  if is_atari(env_id):
    return "atari"
  try:
    entry = str(gym.spec(env_id).entry_point) if isinstance(env_id, str) else ""
  except Exception:  # noqa: BLE001 - an unknown id is reported where the env is made
    entry = ""
  return "mujoco" if entry.startswith("gymnasium.envs.mujoco") else "other"


def atari_wrappers(screen_size=42, fire_reset=False):
  """Mnih et al. (2013) preprocessing as a list of Gymnasium wrappers (applied in order).

  `AtariPreprocessing`: up to 30 no-op actions at reset, frame skip 4 (max-pooled over the last
  two frames), grayscale, resized by area to screen_size × screen_size; `FrameStackObservation`:
  the last 4 frames, giving uint8 observations [4, screen_size, screen_size]. Mnih et al. resize
  to 84×84; our policy network (`policies.atari_cnn`) takes that frame averaged 2×2, and an area
  resize to 42×42 is the same average up to rounding (within one grey level, `test_train.py`),
  done once per frame here rather than in every network call. With `fire_reset`,
  `fire_after_reset` goes between the two (not in the paper's protocol).
  """
  return [lambda e: gym.wrappers.AtariPreprocessing(e, noop_max=30, frame_skip=4,
                                                    screen_size=screen_size, grayscale_obs=True),
          *([fire_after_reset] if fire_reset else []),
          lambda e: gym.wrappers.FrameStackObservation(e, 4)]


def _make_args(env_id, fire_reset=False):
  """(gym.make keyword arguments, wrappers) for an id; ValueError for an unknown id."""
  kwargs, wrappers = {}, []
  if is_atari(env_id):
    # Frame skipping is done by AtariPreprocessing; no sticky actions, as in Mnih et al. (2013).
    kwargs = {"frameskip": 1, "repeat_action_probability": 0.0}
    wrappers = atari_wrappers(fire_reset=fire_reset)
  try:
    gym.spec(env_id)
  except Exception as e:  # noqa: BLE001 - gymnasium raises several error types here
    raise ValueError(f"unknown environment id {env_id!r} ({type(e).__name__}: {e})") from None
  return kwargs, wrappers


def env_fn(env_id, env_kwargs=None, wrappers=(), fire_reset=False, render=False):
  """A function () -> one environment: `env_id` (a registered Gymnasium id, or a factory
  env_id(**env_kwargs) -> gymnasium.Env) made with `env_kwargs`, with our preprocessing for an
  id (Atari: `atari_wrappers`), then each of `wrappers` (functions env -> env) in order. A
  factory's environment is taken as it is, with the extra wrappers only. With `render`, the
  keyword arguments include render_mode="rgb_array" (for a factory too)."""
  kwargs, ours = ({}, []) if callable(env_id) else _make_args(env_id, fire_reset)
  kwargs = dict(kwargs, **(env_kwargs or {}), **({"render_mode": "rgb_array"} if render else {}))
  if render:   # frames are drawn off screen: with no display driver SDL (pygame) complains at
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")   # exit on every run; the user's is kept

  # The spec, not the id: it carries its entry point, so a worker process that has not
  # registered the ALE ids (the function is pickled into it) can still make the environment.
  spec, parent = None if callable(env_id) else gym.spec(env_id), os.getpid()

  def make_one():
    # Without this, the ALE prints its banner to stderr for every emulator, in every process.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    if os.getpid() != parent:   # a worker process (async vector env): Ctrl-C in a terminal
      # reaches the whole process group, the parent handles it and ends its workers, and a
      # worker interrupted mid-step would print a traceback and break its pipe.
      signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = env_id(**kwargs) if callable(env_id) else gym.make(spec, **kwargs)
    for wrap in list(ours) + list(wrappers):
      env = wrap(env)
    return env
  return make_one


def _made(env_id, make_fn, hint=""):
  """make_fn() for a registered id, with a failure to build it (a dependency that is not
  installed, an environment that moved elsewhere) as a one-line ValueError."""
  try:
    return make_fn()
  except Exception as e:  # noqa: BLE001 - Gymnasium and the simulators raise many types
    first = (str(e).strip().splitlines() or [""])[0]
    raise ValueError(f"environment {env_id!r} cannot be made here ({type(e).__name__}: "
                     f"{first}){hint}") from None


def check_num_envs(num_envs):
  """Raises ValueError unless num_envs is an integer from 1 to MAX_ENVS."""
  if not isinstance(num_envs, int) or not 1 <= num_envs <= MAX_ENVS:
    raise ValueError(f"num_envs must be an integer from 1 to {MAX_ENVS}, got {num_envs!r}")


def close(env, at_once=False):
  """Closes a vector or single environment; `at_once` (after an interrupt or an error) ends the
  workers of an async vector env without waiting for a pending step, whose replies an interrupt
  may have left half read: waiting for the rest would wait for ever."""
  with warnings.catch_warnings():   # that a step was pending: the point of closing at once
    warnings.filterwarnings("ignore", message=".*Calling `close` while waiting")
    env.close(**({"terminate": True} if at_once and isinstance(env, gym.vector.VectorEnv) else {}))


def envpool_refusal(env_id, env_kwargs=None, wrappers=(), fire_reset=False, video=None):
  """Why EnvPool cannot step these environments as Gymnasium would, or "" if it can: it serves
  the MuJoCo ids of `pool.IDS` without env_kwargs, wrappers, FIRE resets or video."""
  if wrappers or fire_reset or video:
    return "EnvPool takes no wrappers, fire_reset or video"
  return pool.serves(env_id, env_kwargs)


def make(env_id, num_envs=1, seed=0, vectorization="auto", video=None, env_kwargs=None,
         wrappers=(), fire_reset=False, backend="gymnasium", threads=None):
  """A vector environment of `num_envs` copies of `env_fn(env_id, env_kwargs, wrappers,
  fire_reset)` (an id or a factory), reset with `seed`; with `video` (a path ending .mp4)
  recorded by Gymnasium's `RecordVideo` into that file when closed (needs moviepy:
  `pip install -e ".[video]"`). With backend "envpool", the same task stepped by EnvPool in
  `threads` C++ threads (`pool.make`: a MuJoCo id of `pool.IDS`, no kwargs, wrappers or video;
  by default this machine's cores shared among the run's processes, `parallel`).

  Returns (envs, first observations [num_envs, *obs_shape]). Raises ValueError for an unknown
  id, an unsupported action space or a bad option.
  """
  if vectorization not in VECTORIZATION:
    raise ValueError(f"vectorization must be one of {VECTORIZATION}, got {vectorization!r}")
  if backend not in BACKENDS:
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
  check_num_envs(num_envs)
  if backend == "envpool":
    why = envpool_refusal(env_id, env_kwargs, wrappers, fire_reset, video)
    if why:
      raise ValueError(f"backend 'envpool' cannot serve this run: {why}; use backend "
                       "'gymnasium'")
    return pool.make(env_id, num_envs, seed,
                     threads or max(1, (os.cpu_count() or 1) // jax.process_count()))
  if vectorization == "auto":
    vectorization = "async" if is_atari(env_id) and num_envs > 1 else "sync"
  make_one = env_fn(env_id, env_kwargs, wrappers, fire_reset, render=bool(video))
  if video:
    os.environ.setdefault("MUJOCO_GL", "egl")   # MuJoCo renders off-screen: no display here
  if vectorization == "async":
    # Worker processes start from a fresh server process, not by forking this one: JAX runs
    # threads, and a fork of a multithreaded process can deadlock.
    vector = lambda: gym.vector.AsyncVectorEnv([make_one] * num_envs, context="forkserver",
                                               autoreset_mode=AutoresetMode.SAME_STEP)
  else:
    vector = lambda: gym.vector.SyncVectorEnv([make_one] * num_envs,
                                              autoreset_mode=AutoresetMode.SAME_STEP)
  envs = _made(env_id, vector,
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
  return (_recorded(envs, env_id, video) if video else envs), obs


def _recorded(envs, env_id, video):
  """envs recorded by Gymnasium's RecordVideo from the first step until close, into the file
  `video` (written as <name>-step-0.mp4 beside it, then renamed by the caller)."""
  try:
    _made(env_id, envs.render, "; recording needs its renderer (classic control: pygame, "
          "in the [video] extra)")
  except ValueError:
    envs.close()
    raise
  folder, name = os.path.split(os.path.abspath(video))
  with warnings.catch_warnings():   # that the last frame of an episode is not recorded
    warnings.filterwarnings("ignore", message=".*autoreset mode is same-step")
    return gym.wrappers.vector.RecordVideo(envs, folder, step_trigger=lambda t: t == 0,
                                           video_length=10**9, name_prefix=name[:-4])


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
  if len(obs_space.shape) == 3:   # frames [C, H, W]: 84×84 ones are averaged 2×2 to 42×42
    net = policies.atari_cnn(n_out, pool=max(1, obs_space.shape[1] // 42))
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


def make_single(env_id, seed=0, env_kwargs=None, wrappers=(), fire_reset=False):
  """One (non-vector) environment made as `make` makes each copy, reset with `seed`.

  Returns (env, first observation). Vine branch rollouts run on such environments, restored
  with `set_state`.
  """
  env = _made(env_id, env_fn(env_id, env_kwargs, wrappers, fire_reset))
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
  # Simulator handles are saved by _simulator_state; renderers hold no dynamics; functions
  # (a wrapper's transform, the methods `fire_after_reset` puts on its wrapper) are code, not
  # state, and a snapshot must pickle for vine's worker processes.
  skip = {"env", "ale", "model", "data", "renderer", "mujoco_renderer", "viewer", "screen",
          "clock", "_env"}
  return {k: copy.deepcopy(v) for k, v in vars(layer).items() if k not in skip and not callable(v)}


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
