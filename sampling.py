"""Sampling: single-path trajectories (Section 5.1), return and advantage estimates.

Single path: run π_old in the environments and keep every (sₜ, aₜ); the paper estimates
Q_θold(sₜ, aₜ) "by taking the discounted sum of future rewards along the trajectory"
(`discounted_returns`). The sampling distribution is q = π_old. As an option we also provide
GAE(λ) advantages with a learned value function (Schulman et al., 2016, the authors' follow-up
and what users expect): time-limit truncation is bootstrapped with V of the final observation,
true termination is not.

Environments run as a Gymnasium vector env for a fixed number of steps per iteration; episodes
continue across iterations. The policy is evaluated once per vector step by one jitted call
(`act`), compiled once per policy. Vine sampling (Section 5.2) is at the end of the module.
"""

import concurrent.futures
import functools
import multiprocessing
import os
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

import envs as envs_lib
import policies

# ----------------------------------------------------------------------------------------------
# Running observation normalisation.
# ----------------------------------------------------------------------------------------------


def obs_stats_init(obs_shape):
  """Running mean/variance of observations: {"mean", "var", "count"} (count starts tiny)."""
  return {"mean": np.zeros(obs_shape, np.float64), "var": np.ones(obs_shape, np.float64),
          "count": np.float64(1e-4)}


def obs_stats_update(stats, obs):
  """Merge a batch obs [N, *shape] into the running moments (Chan et al.'s parallel update)."""
  obs = np.asarray(obs)
  n, mean = obs.shape[0], obs.mean(0, dtype=np.float64)
  if obs.dtype == np.uint8:
    # Frames: E[x²] − E[x]² is exact here (squares ≤ 255² in float32, sums in float64) and 10×
    # faster than numpy's two-pass var, which costs ~2 s on a 2,048-frame Atari batch.
    var = np.square(obs, dtype=np.float32).mean(0, dtype=np.float64) - mean**2
  else:
    var = obs.var(0, dtype=np.float64)   # two-pass: no cancellation when |mean| ≫ std
  total = stats["count"] + n
  d = mean - stats["mean"]
  new_mean = stats["mean"] + d * n / total
  m2 = stats["var"] * stats["count"] + var * n + d**2 * stats["count"] * n / total
  return {"mean": new_mean, "var": m2 / total, "count": np.float64(total)}


def normalize(stats, obs):
  """(obs − mean)/√(var + 1e-8), clipped to [−10, 10]; identity when stats is None.

  The clip keeps a never-seen observation from producing an extreme input; 1e-8 guards
  constant dimensions.
  """
  if stats is None:
    return obs
  z = (obs - stats["mean"].astype(jnp.float32)) / jnp.sqrt(stats["var"].astype(jnp.float32)
                                                           + 1e-8)
  return jnp.clip(z, -10.0, 10.0)


# ----------------------------------------------------------------------------------------------
# Acting.
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("policy",))
def _act(params, stats, obs, noise, *, policy):
  policy = policies.thaw(policy)
  mu = policy["apply"](params, normalize(stats, obs))
  return policy["dist"]["mode"](mu) if noise is None else policy["dist"]["transform"](mu, noise)


def act(policy, params, stats, obs, noise=None):
  """a ~ π_θ(·|s) for observations [E, *obs_shape] (normalised with stats), as the transform of
  given standard noise (`dist["transform"]`); the most likely action when noise is None. One
  jit-compiled call per policy and shape."""
  return _act(params, stats, obs, noise, policy=policies.freeze(policy))


def rollout_noise(policy, params, obs, key, n_steps):
  """Standard noise for n_steps policy samples at a batch of observations like obs [E, ...],
  drawn in one call and returned as numpy arrays with a leading axis [n_steps]."""
  mu = jax.eval_shape(policy["apply"], params, obs)
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros((n_steps,) + s.shape, s.dtype), mu)
  return jax.tree_util.tree_map(np.asarray, policy["dist"]["noise"](key, zeros))


def as_input(obs):
  """float32 for flat observations (MuJoCo returns float64); uint8 frames stay uint8."""
  obs = np.asarray(obs)
  return obs if obs.dtype == np.uint8 else obs.astype(np.float32)


def single_path(envs, obs, policy, params, stats, key, n_steps):
  """Runs π_θ for n_steps vector steps in `envs` (E environments), from observations `obs`.

  Returns (rollout, next_obs, episodes) where rollout holds arrays with leading axes [T, E]:
  "obs", "actions", "rewards", "terminated", "truncated", and "final_obs": a list of (t, e,
  observation) for episodes truncated by a time limit (needed to bootstrap them);
  next_obs [E, ...] continues the episodes; episodes is a list of (return, length) for the
  episodes that ended.
  """
  space = envs.single_action_space
  T, E = n_steps, envs.num_envs
  obs = as_input(obs)
  buf = {"obs": np.empty((T, E) + obs.shape[1:], obs.dtype)}
  rewards = np.empty((T, E), np.float32)
  terminated = np.empty((T, E), bool)
  truncated = np.empty((T, E), bool)
  actions, final_obs, episodes = [], [], []
  # All of the rollout's policy noise in one call: no per-step random-key dispatch.
  noise = rollout_noise(policy, params, obs, key, T)
  for t in range(T):
    buf["obs"][t] = obs
    noise_t = jax.tree_util.tree_map(lambda x: x[t], noise)
    a = np.asarray(act(policy, params, stats, obs, noise_t))
    actions.append(a)
    obs, r, term, trunc, info = envs.step(envs_lib.env_action(space, a))
    rewards[t], terminated[t], truncated[t] = r, term, trunc
    if "_episode" in info:
      for e in np.flatnonzero(info["_episode"]):
        episodes.append((float(info["episode"]["r"][e]), int(info["episode"]["l"][e])))
    if "_final_obs" in info:
      for e in np.flatnonzero(info["_final_obs"] & trunc & ~term):
        final_obs.append((t, int(e), as_input(info["final_obs"][e])))
    obs = as_input(obs)
  rollout = dict(buf, actions=np.stack(actions), rewards=rewards, terminated=terminated,
                 truncated=truncated, final_obs=final_obs)
  return rollout, obs, episodes


# ----------------------------------------------------------------------------------------------
# Estimators.
# ----------------------------------------------------------------------------------------------


def discounted_returns(rewards, dones, gamma):
  """Q̂ₜ = Σₖ γᵏ r_{t+k} up to the end of the episode or of the batch (Section 5.1).

  rewards, dones: [T, E]; dones[t] marks that the episode ended after step t. Episodes cut by
  the end of the batch are summed as far as they go (the estimate of the paper's single-path
  method, which samples whole trajectories).
  """
  q = np.zeros_like(rewards, dtype=np.float64)
  acc = np.zeros(rewards.shape[1], np.float64)
  for t in range(rewards.shape[0] - 1, -1, -1):
    acc = rewards[t] + gamma * acc * (1.0 - dones[t])
    q[t] = acc
  return q.astype(np.float32)


def gae(rewards, values, next_values, terminated, truncated, gamma, lam):
  """GAE(λ) advantages Âₜ = Σₖ (γλ)ᵏ δ_{t+k}, δₜ = rₜ + γ V(s_{t+1}) − V(sₜ) (Schulman et al.
  2016), all arrays [T, E].

  next_values[t] is V of the observation that followed step t: the true next state, including
  the final observation of a time-limit truncation (bootstrapped: the task would have gone on);
  it is ignored after true termination (V = 0 there). The recursion stops at episode ends.
  Returns (advantages, value targets Âₜ + V(sₜ)).
  """
  done = terminated | truncated
  adv = np.zeros_like(rewards, dtype=np.float64)
  acc = np.zeros(rewards.shape[1], np.float64)
  for t in range(rewards.shape[0] - 1, -1, -1):
    delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
    acc = delta + gamma * lam * (1.0 - done[t]) * acc
    adv[t] = acc
  return adv.astype(np.float32), (adv + values).astype(np.float32)


def flatten(x):
  """[T, E, ...] → [T·E, ...]: a rollout's time and environment axes as one batch axis."""
  return x.reshape((-1,) + x.shape[2:])


def policy_batch(rollout, adv, stats):
  """The single-path batch of `trpo.step` (Section 5.1) from a rollout and its advantages
  [T, E]: {"obs" (normalised), "actions", "adv" (standardised)}, each [T·E, ...]."""
  adv = flatten(adv)
  # Standardising Â only rescales the surrogate (β is fixed by δ, not by |g|) and centring
  # acts as a constant baseline, which leaves the expected gradient unchanged (Section 5).
  adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  return {"obs": normalize(stats, jnp.asarray(flatten(rollout["obs"]))),
          "actions": jnp.asarray(flatten(rollout["actions"])), "adv": jnp.asarray(adv)}


def gae_advantages(rollout, next_obs, value, gamma, lam):
  """GAE(λ) advantages and value targets [T, E] for a `single_path` rollout.

  value(obs [B, ...]) -> V [B] (numpy). V(s_{t+1}) is V of the next row, of next_obs [E, ...]
  after the last step, and of the pre-reset final observation where a time limit cut the
  episode (bootstrapped: the task would have gone on); true termination gets V = 0 (`gae`).
  """
  T = rollout["rewards"].shape[0]
  values = value(flatten(rollout["obs"])).reshape(T, -1)
  next_values = np.concatenate([values[1:], value(next_obs)[None]], 0)
  if rollout["final_obs"]:
    finals = value(np.stack([o for _, _, o in rollout["final_obs"]]))
    for (t, e, _), v in zip(rollout["final_obs"], finals):
      next_values[t, e] = v
  return gae(rollout["rewards"], values, next_values, rollout["terminated"],
             rollout["truncated"], gamma, lam)


def advantages(rollout, next_obs, predict, estimator, gamma, lam):
  """(Â [T, E], value targets [T, E] or None) for a `single_path` rollout: GAE(λ) with the
  value function predict(obs) -> V (`gae_advantages`), or with estimator "mc" the paper's
  discounted returns (`discounted_returns`; no value function, no targets)."""
  if estimator == "gae":
    return gae_advantages(rollout, next_obs, predict, gamma, lam)
  dones = rollout["terminated"] | rollout["truncated"]
  return discounted_returns(rollout["rewards"], dones, gamma), None


# ----------------------------------------------------------------------------------------------
# Vine sampling (Section 5.2): a trunk, a rollout set of saved states, K branches per state with
# common random numbers.
# ----------------------------------------------------------------------------------------------


def branch_returns(env, snapshot, first_actions, policy, params, stats, noise, horizon, gamma):
  """Q̂(s_n, a_k) for each first action a_k from the state saved in `snapshot` (Section 5.2).

  For every k: restore the environment (`envs.set_state`), take a_k, then follow π_θ for
  horizon − 1 more steps, and return Σₜ γᵗ rₜ (t < horizon, stopping at the end of the episode).
  Common random numbers: every branch restores the same simulator state, including its random
  number generator, and draws its policy actions from the same standard noise `noise`
  (leading axis ≥ horizon − 1, one entry per step, as from `rollout_noise` with one
  environment), so the K estimates differ only through the first action.
  first_actions: [K, ...]. Returns (Q̂ [K] float64, the number of simulator steps taken).
  """
  q, steps = np.zeros(len(first_actions)), 0
  space = env.action_space
  for k, a in enumerate(first_actions):
    envs_lib.set_state(env, snapshot)
    obs, r, term, trunc, _ = env.step(envs_lib.env_action(space, np.asarray(a)))
    total, discount, steps = float(r), gamma, steps + 1
    for t in range(horizon - 1):
      if term or trunc:
        break
      noise_t = jax.tree_util.tree_map(lambda x: x[t], noise)
      a_t = act(policy, params, stats, as_input(obs)[None], noise_t)
      obs, r, term, trunc, _ = env.step(envs_lib.env_action(space, np.asarray(a_t)[0]))
      total += discount * float(r)
      discount *= gamma
      steps += 1
    q[k] = total
  return q, steps


_WORKER = {}   # a branch worker process's own environment and policy (see `branch_pool`)


def _alive(pid):
  """Whether process `pid` runs: a zombie (killed, not yet reaped) counts as dead."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False
  except OSError:                         # no /proc: ask the kernel whether the pid exists
    try:
      os.kill(pid, 0)
      return True
    except ProcessLookupError:
      return False


def _exit_with(parent):
  """Ends this worker process once `parent` has died (checked every second): a SIGKILLed
  learner cannot shut its pool down, and its workers must not run on without it."""
  while _alive(parent):
    time.sleep(1.0)
  os._exit(0)


def _branch_worker_init(parent, env_id, seed, hidden, linear_policy, log_std_init):
  threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
  env, _ = envs_lib.make_single(env_id, seed)
  _WORKER["env"] = env
  _WORKER["policy"] = envs_lib.policy_for(env.observation_space, env.action_space, hidden,
                                          linear_policy, log_std_init)


def _branch_worker(task):
  snapshot, first_actions, params, stats, noise, horizon, gamma = task
  return branch_returns(_WORKER["env"], snapshot, first_actions, _WORKER["policy"], params,
                        stats, noise, horizon, gamma)


def branch_pool(env_id, seed, workers, hidden=(64, 64), linear_policy=False, log_std_init=0.0):
  """A process pool that runs vine branches (`branch_returns`) on `workers` cores.

  Each worker builds its own environment (`envs.make_single(env_id, seed)`) and policy functions
  (`envs.policy_for`, same architecture as the learner's) once; each task then carries a
  snapshot, the K first actions, the parameters and the common random numbers, so a branch
  computed in a worker equals the one computed in-process. Processes start by forkserver, since
  JAX is multithreaded, and end by themselves if this process dies. Pass it to
  `vine(..., pool=)`; shut it down with `pool.shutdown()`.
  """
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("forkserver"),
      initializer=_branch_worker_init,
      initargs=(os.getpid(), env_id, seed, tuple(hidden), linear_policy, log_std_init))


def vine_trunk(env, trunk, policy, params, stats, keys, trunk_steps, n_states):
  """The vine trunk (Section 5.2): π_θ runs `trunk_steps` steps in the single environment `env`
  from `trunk` = {"obs", "ret", "len"} (episodes continue across calls; finished ones are
  reset), and saves `n_states` of its states, chosen uniformly without replacement, whole
  (`envs.get_state`). keys: (for the policy's noise, for the choice of states).
  Returns (snapshots, states [N, ...], trunk, episodes)."""
  k_trunk, k_pick = keys
  space, obs = env.action_space, trunk["obs"]
  noise = rollout_noise(policy, params, as_input(obs)[None], k_trunk, trunk_steps)
  picks = set(np.asarray(jax.random.choice(k_pick, trunk_steps, (min(n_states, trunk_steps),),
                                            replace=False)).tolist())
  snapshots, states, episodes = [], [], []
  ret, length = trunk["ret"], trunk["len"]
  for t in range(trunk_steps):
    if t in picks:
      snapshots.append(envs_lib.get_state(env))
      states.append(as_input(obs))
    a = act(policy, params, stats, as_input(obs)[None],
            jax.tree_util.tree_map(lambda x: x[t], noise))
    obs, r, term, trunc, _ = env.step(envs_lib.env_action(space, np.asarray(a)[0]))
    ret, length = ret + float(r), length + 1
    if term or trunc:
      episodes.append((ret, length))
      obs, _ = env.reset()
      ret, length = 0.0, 0
  return snapshots, np.stack(states), {"obs": obs, "ret": ret, "len": length}, episodes


def vine_actions(policy, params, stats, states, key, n_actions, q, space):
  """K = n_actions first actions per rollout state from q (Section 5.2): "policy" (q = π_old,
  the paper's choice for continuous control), "uniform" (discrete; the paper's choice on
  Atari) or "all" (every discrete action once: the all-actions estimator of Eq. (15)).
  Returns (actions [N, K, ...], log q [N, K] or None for "all")."""
  n, dist = len(states), policy["dist"]
  if q == "policy":
    mu = act_params(params, stats, states, apply=policy["apply"])
    tiled = jax.tree_util.tree_map(lambda x: jnp.repeat(x, n_actions, axis=0), mu)
    actions = np.asarray(dist["sample"](key, tiled))
    logp_q = np.asarray(dist["log_prob"](tiled, actions)).reshape(n, n_actions)
    return actions.reshape((n, n_actions) + actions.shape[1:]), logp_q
  if q == "all":
    return np.tile(np.arange(space.n), (n, 1)), None
  return (np.asarray(jax.random.randint(key, (n, n_actions), 0, space.n)),
          np.full((n, n_actions), -np.log(space.n), np.float32))


def vine(env, trunk, policy, params, stats, key, *, n_states, n_actions, horizon, gamma,
         trunk_steps, q="policy", pool=None):
  """One vine batch (Section 5.2, Figure 1 right): `vine_trunk`, then `vine_actions`, then
  `branch_returns` from each saved state with common random numbers, Q̂ over `horizon` steps,
  in the worker processes of `pool` (from `branch_pool`) when given, else in this process.

  Returns (batch, trunk, episodes, simulator steps): batch = {"obs" [N, ...], "actions"
  [N, K, ...], "q" [N, K], "logp_q" [N, K] unless q == "all"} for `trpo.step`; episodes lists
  the (return, length) of trunk episodes that ended.
  """
  space = env.action_space
  if q not in ("policy", "uniform", "all"):
    raise ValueError(f"q must be 'policy', 'uniform' or 'all', got {q!r}")
  if q != "policy" and envs_lib.action_kind(space) != "categorical":
    raise ValueError(f"q={q!r} needs a Discrete action space, got {space}")
  k_trunk, k_pick, k_act, k_branch = jax.random.split(key, 4)
  snapshots, states, trunk, episodes = vine_trunk(
      env, trunk, policy, params, stats, (k_trunk, k_pick), trunk_steps, n_states)
  end = envs_lib.get_state(env)
  actions, logp_q = vine_actions(policy, params, stats, states, k_act, n_actions, q, space)
  n = len(states)
  crns = [rollout_noise(policy, params, states[i:i + 1], key_i, horizon)
          for i, key_i in enumerate(jax.random.split(k_branch, n))]
  if pool is None:
    results = [branch_returns(env, snapshots[i], actions[i], policy, params, stats, crns[i],
                              horizon, gamma) for i in range(n)]
  else:
    host = jax.tree_util.tree_map(np.asarray, (params, stats))
    tasks = [(snapshots[i], actions[i], host[0], host[1], crns[i], horizon, gamma)
             for i in range(n)]
    results = list(pool.map(_branch_worker, tasks, chunksize=max(1, n // 16)))
  envs_lib.set_state(env, end)           # the trunk carries on from where it stopped
  batch = {"obs": states, "actions": actions,
           "q": np.array([qi for qi, _ in results]).astype(np.float32)}
  if logp_q is not None:
    batch["logp_q"] = logp_q.astype(np.float32)
  return batch, trunk, episodes, trunk_steps + sum(used for _, used in results)


@functools.partial(jax.jit, static_argnames=("apply",))
def act_params(params, stats, obs, *, apply):
  """µ = π_θ's distribution parameters at observations [B, ...] (after normalisation)."""
  return apply(params, normalize(stats, obs))
