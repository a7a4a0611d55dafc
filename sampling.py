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

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import optimizers, stax

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


@functools.partial(jax.jit, static_argnames=("apply", "dist_name"))
def act(params, stats, obs, noise, *, apply, dist_name):
  """a ~ π_θ(·|s) for observations [E, *obs_shape], as the transform of given standard noise
  (`dist["transform"]`); the most likely action when noise is None."""
  dist = policies.DISTRIBUTIONS[dist_name]
  mu = apply(params, normalize(stats, obs))
  return dist["mode"](mu) if noise is None else dist["transform"](mu, noise)


def rollout_noise(policy, params, obs, key, n_steps):
  """Standard noise for n_steps policy samples at a batch of observations like obs [E, ...],
  drawn in one call and returned as numpy arrays with a leading axis [n_steps]."""
  mu = jax.eval_shape(policy["apply"], params, obs)
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros((n_steps,) + s.shape, s.dtype), mu)
  return jax.tree_util.tree_map(np.asarray, policy["dist"]["noise"](key, zeros))


def _as_input(obs):
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
  dist_name = policy["dist"]["name"]
  T, E = n_steps, envs.num_envs
  obs = _as_input(obs)
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
    a = np.asarray(act(params, stats, obs, noise_t, apply=policy["apply"], dist_name=dist_name))
    actions.append(a)
    obs, r, term, trunc, info = envs.step(envs_lib.env_action(space, a))
    rewards[t], terminated[t], truncated[t] = r, term, trunc
    if "_episode" in info:
      for e in np.flatnonzero(info["_episode"]):
        episodes.append((float(info["episode"]["r"][e]), int(info["episode"]["l"][e])))
    if "_final_obs" in info:
      for e in np.flatnonzero(info["_final_obs"] & trunc & ~term):
        final_obs.append((t, int(e), _as_input(info["final_obs"][e])))
    obs = _as_input(obs)
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


# ----------------------------------------------------------------------------------------------
# The value function V(s) for GAE.
# ----------------------------------------------------------------------------------------------


def value_net(obs_shape, hidden=(64, 64)):
  """V(s): an MLP on the observation; stax (init, apply) → [B, 1].

  For Atari frames [4, 84, 84] the MLP sees the frames average-pooled 4×4 to [21, 21, 4]. The
  paper does not use a value function; this one only has to be a useful GAE baseline, and on
  CPU fitting it costs 0.6 s for 10 epochs on 2,048 frames against 17 s for the policy's CNN.
  """
  if len(obs_shape) == 3:
    return stax.serial(policies._frames_to_nhwc(), stax.AvgPool((4, 4), (4, 4)), stax.Flatten,
                       policies.mlp(hidden, 1, out_scale=1.0))
  return policies.mlp(hidden, 1, out_scale=1.0)


@functools.partial(jax.jit, static_argnames=("apply",))
def value_predict(params, stats, obs, *, apply):
  """V(s) for obs [B, ...] → [B]."""
  return apply(params, normalize(stats, obs))[:, 0]


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
  x = normalize(stats, obs)
  params = adam_minibatch(loss, params, (x, targets), key, epochs=epochs,
                          n_minibatches=n_minibatches, lr=lr)
  return params, 2 * loss(params, x, targets)


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
      a_t = act(params, stats, _as_input(obs)[None], noise_t, apply=policy["apply"],
                dist_name=policy["dist"]["name"])
      obs, r, term, trunc, _ = env.step(envs_lib.env_action(space, np.asarray(a_t)[0]))
      total += discount * float(r)
      discount *= gamma
      steps += 1
    q[k] = total
  return q, steps


_WORKER = {}   # a branch worker process's own environment and policy (see `branch_pool`)


def _branch_worker_init(env_id, seed, hidden, linear_policy, log_std_init):
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
  JAX is multithreaded. Pass it to `vine(..., pool=)`; shut it down with `pool.shutdown()`.
  """
  import concurrent.futures
  import multiprocessing
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("forkserver"),
      initializer=_branch_worker_init,
      initargs=(env_id, seed, tuple(hidden), linear_policy, log_std_init))


def vine(env, trunk, policy, params, stats, key, *, n_states, n_actions, horizon, gamma,
         trunk_steps, q="policy", pool=None):
  """One vine batch (Section 5.2, Figure 1 right).

  Trunk: π_θ runs `trunk_steps` steps in the single environment `env` (episodes continue
  across calls through `trunk` = {"obs", "ret", "len"}; finished episodes are reset). Rollout
  set: `n_states` of the trunk's states, chosen uniformly without replacement, each saved with
  `envs.get_state`. Actions: K = `n_actions` per state drawn from q: "policy" (q = π_old, the
  paper's choice for continuous control), "uniform" (discrete; the paper's choice on Atari), or
  "all" (every discrete action once: the all-actions estimator of Eq. (15), K = |A|). Branches:
  `branch_returns` from each saved state with common random numbers, Q̂ over `horizon` steps,
  in the worker processes of `pool` (from `branch_pool`) when given, else in this process.

  Returns (batch, trunk, episodes, simulator steps): batch = {"obs" [N, ...], "actions"
  [N, K, ...], "q" [N, K], "logp_q" [N, K] unless q == "all"} for `trpo.step`; episodes lists
  the (return, length) of trunk episodes that ended.
  """
  space, dist = env.action_space, policy["dist"]
  k_trunk, k_pick, k_act, k_branch = jax.random.split(key, 4)
  obs = trunk["obs"]
  noise = rollout_noise(policy, params, _as_input(obs)[None], k_trunk, trunk_steps)
  picks = set(np.asarray(jax.random.choice(k_pick, trunk_steps, (min(n_states, trunk_steps),),
                                            replace=False)).tolist())
  snapshots, states, episodes = [], [], []
  ret, length = trunk["ret"], trunk["len"]
  for t in range(trunk_steps):
    if t in picks:
      snapshots.append(envs_lib.get_state(env))
      states.append(_as_input(obs))
    a = act(params, stats, _as_input(obs)[None], jax.tree_util.tree_map(lambda x: x[t], noise),
            apply=policy["apply"], dist_name=dist["name"])
    obs, r, term, trunc, _ = env.step(envs_lib.env_action(space, np.asarray(a)[0]))
    ret, length = ret + float(r), length + 1
    if term or trunc:
      episodes.append((ret, length))
      obs, _ = env.reset()
      ret, length = 0.0, 0
  end = envs_lib.get_state(env)
  states = np.stack(states)
  n = len(states)
  mu = act_params(params, stats, states, apply=policy["apply"])
  tiled = jax.tree_util.tree_map(lambda x: jnp.repeat(x, n_actions, axis=0), mu)
  logp_q = None
  if q == "policy":
    actions = np.asarray(dist["sample"](k_act, tiled))
    logp_q = np.asarray(dist["log_prob"](tiled, actions)).reshape(n, n_actions)
    actions = actions.reshape((n, n_actions) + actions.shape[1:])
  elif q in ("uniform", "all"):
    if envs_lib.action_kind(space) != "categorical":
      raise ValueError(f"q={q!r} needs a Discrete action space, got {space}")
    if q == "all":
      actions = np.tile(np.arange(space.n), (n, 1))
    else:
      actions = np.asarray(jax.random.randint(k_act, (n, n_actions), 0, space.n))
      logp_q = np.full((n, n_actions), -np.log(space.n), np.float32)
  else:
    raise ValueError(f"q must be 'policy', 'uniform' or 'all', got {q!r}")
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
  q_hat = np.array([qi for qi, _ in results])
  sim_steps = trunk_steps + sum(used for _, used in results)
  envs_lib.set_state(env, end)           # the trunk carries on from where it stopped
  batch = {"obs": states, "actions": actions, "q": q_hat.astype(np.float32)}
  if logp_q is not None:
    batch["logp_q"] = logp_q.astype(np.float32)
  return batch, {"obs": obs, "ret": ret, "len": length}, episodes, sim_steps


@functools.partial(jax.jit, static_argnames=("apply",))
def act_params(params, stats, obs, *, apply):
  """µ = π_θ's distribution parameters at observations [B, ...] (after normalisation)."""
  return apply(params, normalize(stats, obs))
