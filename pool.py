"""EnvPool: Gymnasium's MuJoCo tasks stepped in C++ threads, behind Gymnasium's vector interface.

Gymnasium's `SyncVectorEnv` steps each MuJoCo copy through Python; EnvPool (Weng et al., 2022,
`pip install envpool`) steps the same tasks, compiled from the same model files, in a C++
thread pool. Which tasks are the same is tested, not assumed (`test_pool.py`): with no reset
noise and the same actions, observations, rewards, termination and the 1,000-step truncation
of each id in IDS match Gymnasium's. Reacher and Pusher are left out (EnvPool takes no
`reset_noise_scale` for them, so the two cannot be started from one state to compare), and so
are Humanoid and HumanoidStandup (their observations differ from the first step).

`make` returns an object with the attributes the samplers use of a Gymnasium vector env
(`num_envs`, `single_observation_space`, `single_action_space`, `step`, `reset`, `close`) and
Gymnasium's semantics for them: autoreset in the same step (EnvPool resets an ended copy on
the next call instead, ignoring its action and returning a reward of 0), `info["final_obs"]`
and `info["_final_obs"]` for the copies that ended, and the episode statistics of
`RecordEpisodeStatistics` (`info["episode"]`, `info["_episode"]`). Its spaces are Gymnasium's
own, so that actions are clipped and cast (to float32) exactly as for Gymnasium.

EnvPool ships wheels for Linux on x86-64, macOS on Apple silicon and Windows; elsewhere it is
not installed (pyproject's platform markers) and `available()` is False.
"""

import types

import gymnasium as gym
import numpy as np

# The Gymnasium ids whose EnvPool task is shown equal to Gymnasium's (`test_pool.py`).
IDS = ("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "InvertedDoublePendulum-v5",
       "InvertedPendulum-v5", "Swimmer-v5", "Walker2d-v5")


def available():
  """Whether EnvPool can be imported here (it has no wheel for every platform)."""
  try:
    import envpool  # noqa: F401  (an optional dependency: imported where it is used)
  except ImportError:
    return False
  return True


def serves(env_id, env_kwargs=None):
  """"" if EnvPool can step `env_id` with `env_kwargs` as Gymnasium would, else why not (a
  clause for a one-line error)."""
  if not isinstance(env_id, str) or env_id not in IDS:
    return f"EnvPool steps only {', '.join(IDS)} here, not {env_id!r}"
  if env_kwargs:
    return f"EnvPool is not shown equal to Gymnasium with env_kwargs {env_kwargs!r}"
  if not available():
    return "EnvPool is not installed (it ships wheels for Linux x86-64, macOS arm64, Windows)"
  return ""


def _pool(env_id, num_envs, seed, num_threads, **kwargs):
  import envpool   # optional: only a run that uses it needs it
  return envpool.make_gymnasium(env_id, num_envs=num_envs, seed=seed, num_threads=num_threads,
                                max_episode_steps=gym.spec(env_id).max_episode_steps, **kwargs)


def make(env_id, num_envs, seed, num_threads=1, **kwargs):
  """`num_envs` copies of the MuJoCo task `env_id` (one of IDS) in EnvPool with `num_threads`
  threads, copy i seeded with seed + i; kwargs go to EnvPool's task (the tests pass
  reset_noise_scale). Returns (envs, first observations [num_envs, obs_dim]) as `envs.make`
  does: envs has Gymnasium's vector interface (the module docstring)."""
  probe = gym.make(env_id)   # Gymnasium's own spaces: actions are clipped and cast as there
  obs_space, action_space = probe.observation_space, probe.action_space
  probe.close()
  state = {"pool": _pool(env_id, num_envs, seed, num_threads, **kwargs),
           "ret": np.zeros(num_envs), "len": np.zeros(num_envs, np.int64)}

  def reset(seed=None, options=None):
    # EnvPool seeds its copies when it is made: a new seed makes a new pool.
    if seed is not None:
      state["pool"].close()
      state["pool"] = _pool(env_id, num_envs, seed, num_threads, **kwargs)
    obs, _ = state["pool"].reset()
    state["ret"][:], state["len"][:] = 0.0, 0
    return obs, {}

  def step(actions):
    obs, reward, terminated, truncated, _ = state["pool"].step(np.asarray(actions, np.float64))
    reward = reward.astype(np.float64)
    state["ret"] += reward
    state["len"] += 1
    ended = terminated | truncated
    info = {}
    if ended.any():
      ids = np.flatnonzero(ended)
      info = {"final_obs": obs.copy(), "_final_obs": ended,
              "episode": {"r": state["ret"].copy(), "l": state["len"].copy()},
              "_episode": ended}
      # The copies that ended start their next episode now, as Gymnasium's SAME_STEP autoreset
      # does: EnvPool's reset step of a copy ignores the action it is given.
      first, *_, info_ids = state["pool"].step(np.zeros((len(ids),) + action_space.shape),
                                               env_id=ids.astype(np.int32))
      obs = obs.copy()
      obs[info_ids["env_id"]] = first
      state["ret"][ids], state["len"][ids] = 0.0, 0
    return obs, reward, terminated, truncated, info

  envs = types.SimpleNamespace(
      num_envs=num_envs, single_observation_space=obs_space, single_action_space=action_space,
      observation_space=gym.vector.utils.batch_space(obs_space, num_envs),
      action_space=gym.vector.utils.batch_space(action_space, num_envs),
      reset=reset, step=step, close=lambda **kwargs: state["pool"].close())
  obs, _ = reset()
  return envs, obs
