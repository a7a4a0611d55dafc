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

import envs as envs_lib
import obsnorm
import trpo

# ----------------------------------------------------------------------------------------------
# Acting.
# ----------------------------------------------------------------------------------------------


def _act_for(policy):
  def act(params, stats, obs, noise):
    mu = policy["apply"](params, obsnorm.normalize(stats, obs))
    return policy["dist"]["mode"](mu) if noise is None else policy["dist"]["transform"](mu, noise)
  return act


def actor(policy):
  """`act` for one policy, compiled once per policy (`trpo.jit_for`): (params, stats, obs,
  noise=None) -> a. Loops make it before they start, so that an environment step runs only
  the compiled call."""
  compiled = trpo.jit_for(policy, _act_for)
  return lambda params, stats, obs, noise=None: compiled(params, stats, obs, noise)


def act(policy, params, stats, obs, noise=None):
  """a ~ π_θ(·|s) for observations [E, *obs_shape] (normalised with stats), as the transform of
  given standard noise (`dist["transform"]`); the most likely action when noise is None. One
  jit-compiled call per policy and shape."""
  return actor(policy)(params, stats, obs, noise)


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


def check_rewards(rewards, where):
  """Raises ValueError if a reward is NaN or ±inf, naming where it came from: it would make
  every return and advantage it reaches non-finite, and a logged mean return null, the mark
  of an iteration in which no episode ended."""
  bad = ~np.isfinite(np.asarray(rewards, np.float64))
  if np.any(bad):
    raise ValueError(f"the environment returned the reward {np.asarray(rewards)[bad].flat[0]} "
                     f"{where} (not finite); the iteration is refused and the last checkpoint "
                     "kept")


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
  policy_act = actor(policy)
  # On the device once, not at every step's call: numpy float64 statistics (or a process's
  # numpy parameters) would be converted and copied in each call.
  params, stats = jax.device_put((params, stats))
  for t in range(T):
    buf["obs"][t] = obs
    noise_t = jax.tree_util.tree_map(lambda x: x[t], noise)
    a = np.asarray(policy_act(params, stats, obs, noise_t))
    actions.append(a)
    try:
      obs, r, term, trunc, info = envs.step(envs_lib.env_action(space, a))
    except Exception as e:  # noqa: BLE001 - the environment's own error, in one line
      raise ValueError(f"the environment failed at step {t + 1} of this iteration: "
                       f"{type(e).__name__}: {e}") from e
    obsnorm.check_obs(obs, f"in environment {{row}} at step {t + 1} of this iteration's {T}")
    rewards[t], terminated[t], truncated[t] = r, term, trunc
    if "_episode" in info:
      for e in np.flatnonzero(info["_episode"]):
        episodes.append((float(info["episode"]["r"][e]), int(info["episode"]["l"][e])))
    if "_final_obs" in info:
      for e in np.flatnonzero(info["_final_obs"] & trunc & ~term):
        final_obs.append((t, int(e), as_input(info["final_obs"][e])))
    obs = as_input(obs)
  # Once for the whole rollout: no reward enters an estimate before the rollout ends.
  bad = np.flatnonzero(~np.isfinite(rewards).all(1))
  if bad.size:
    check_rewards(rewards[bad[0]], f"at step {bad[0] + 1} of this iteration's {T}")
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


def policy_batch(obs, actions, adv, stats):
  """The single-path batch of `trpo.step` (Section 5.1) from the samples obs, actions and their
  advantages adv, each [N, ...] (a rollout's [T, E, ...] `flatten`ed): {"obs" (normalised),
  "actions", "adv" (standardised)}."""
  # Standardising Â only rescales the surrogate (β is fixed by δ, not by |g|) and centring
  # acts as a constant baseline, which leaves the expected gradient unchanged (Section 5).
  adv = (adv - adv.mean()) / (adv.std() + 1e-8)
  return {"obs": obsnorm.normalize(stats, jnp.asarray(obs)), "actions": jnp.asarray(actions),
          "adv": jnp.asarray(adv)}


def gae_advantages(rollout, next_obs, value, gamma, lam):
  """GAE(λ) advantages and value targets [T, E] for a `single_path` rollout (Schulman et al.,
  2016, Eq. (16); in place of the Q̂ of Section 5.1).

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
  discounted returns of Section 5.1 (`discounted_returns`; no value function, no targets)."""
  if estimator == "gae":
    return gae_advantages(rollout, next_obs, predict, gamma, lam)
  dones = rollout["terminated"] | rollout["truncated"]
  return discounted_returns(rollout["rewards"], dones, gamma), None


# ----------------------------------------------------------------------------------------------
# Vine sampling (Section 5.2): a trunk, a rollout set of saved states, K branches per state with
# common random numbers.
# ----------------------------------------------------------------------------------------------


def _pad(x, size):
  """x [B, ...] padded to [size, ...] by repeating its last row (keeps one jit shape)."""
  return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]) if len(x) < size else x


def _lockstep(copies, snapshots, first_actions, policy, params, stats, noise, horizon, gamma):
  """The branches of one group, one per environment copy, stepped together."""
  n, size = len(snapshots), len(copies)
  space, obs, discount = copies[0].action_space, [None] * n, gamma
  total, running, steps = np.zeros(n), np.ones(n, bool), n
  policy_act, (params, stats) = actor(policy), jax.device_put((params, stats))
  for b in range(n):
    envs_lib.set_state(copies[b], snapshots[b])
    obs[b], r, term, trunc, _ = copies[b].step(envs_lib.env_action(space, first_actions[b]))
    total[b], running[b] = float(r), not (term or trunc)
  for t in range(horizon - 1):
    if not running.any():
      break
    noise_t = jax.tree_util.tree_map(lambda x: _pad(x[t], size), noise)
    a = np.asarray(policy_act(params, stats, _pad(np.stack([as_input(o) for o in obs]), size),
                              noise_t))
    for b in np.flatnonzero(running):
      obs[b], r, term, trunc, _ = copies[b].step(envs_lib.env_action(space, a[b]))
      total[b] += discount * float(r)
      running[b], steps = not (term or trunc), steps + 1
    discount *= gamma
  return total, steps


def branch_returns(copies, snapshots, first_actions, policy, params, stats, noise, horizon,
                   gamma):
  """Q̂ of B vine branches (Section 5.2), len(copies) of them at a time, in lockstep.

  Branch b restores an environment copy to snapshots[b] (`envs.set_state`), takes
  first_actions[b] ([B, ...]), then follows π_θ for horizon − 1 more steps on the standard
  noise noise[:, b] (leaves [≥ horizon − 1, B, ...], as from `rollout_noise`), and returns
  Σₜ γᵗ rₜ (t < horizon, stopping at the end of the episode). The branches of a group step
  together: one policy call per step for the whole group (finished branches' rows are computed
  and ignored, and the last group is padded, so the call keeps one shape). Common random
  numbers: branches from one state share its snapshot (the simulator state with its RNG) and
  its noise, so their estimates differ only through the first action. With one copy the
  branches run one after another. Returns (Q̂ [B] float64, simulator steps taken).
  """
  q, steps, size = np.zeros(len(snapshots)), 0, len(copies)
  for lo in range(0, len(snapshots), size):
    hi = min(lo + size, len(snapshots))
    group_noise = jax.tree_util.tree_map(lambda x: x[:, lo:hi], noise)
    q[lo:hi], used = _lockstep(copies, snapshots[lo:hi], first_actions[lo:hi], policy, params,
                               stats, group_noise, horizon, gamma)
    steps += used
  return q, steps


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
  ret, length, policy_act = trunk["ret"], trunk["len"], actor(policy)
  params, stats = jax.device_put((params, stats))        # once, as in `single_path`
  for t in range(trunk_steps):
    if t in picks:
      snapshots.append(envs_lib.get_state(env))
      states.append(as_input(obs))
    a = policy_act(params, stats, as_input(obs)[None],
                   jax.tree_util.tree_map(lambda x: x[t], noise))
    obs, r, term, trunc, _ = env.step(envs_lib.env_action(space, np.asarray(a)[0]))
    check_rewards(r, f"at step {t + 1} of the vine trunk's {trunk_steps}")
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
         trunk_steps, q="policy", copies=None, pool=None):
  """One vine batch (Section 5.2, Figure 1 right): `vine_trunk`, then `vine_actions`, then
  `branch_returns` from each saved state with common random numbers, Q̂ over `horizon` steps.

  The N·K branches run in lockstep groups of len(copies) environment copies (one policy call
  per step per group; default: the trunk's own environment, one branch at a time), or in the
  worker processes of `pool` (from `workers.branch_pool`, whose workers hold `copies` copies
  each; pass the same number as `copies` here, e.g. [None] * C, so that the groups are the
  same).

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
  n, k = actions.shape[:2]
  crns = [rollout_noise(policy, params, states[i:i + 1], key_i, horizon)
          for i, key_i in enumerate(jax.random.split(k_branch, n))]
  # Branch n·K + k: state n's snapshot and noise (common random numbers), first action a_{n,k}.
  noise = jax.tree_util.tree_map(lambda *x: np.repeat(np.concatenate(x, 1), k, 1), *crns)
  snaps = [s for s in snapshots for _ in range(k)]
  first = actions.reshape((n * k,) + actions.shape[2:])
  copies = copies or [env]
  if pool is None:
    q_hat, used = branch_returns(copies, snaps, first, policy, params, stats, noise, horizon, gamma)
  else:
    host, g = jax.tree_util.tree_map(np.asarray, (params, stats)), len(copies)
    tasks = [(snaps[lo:lo + g], first[lo:lo + g], host[0], host[1],
              jax.tree_util.tree_map(lambda x: x[:, lo:lo + g], noise), horizon, gamma)
             for lo in range(0, n * k, g)]
    results = pool["map"](tasks)
    q_hat, used = np.concatenate([r for r, _ in results]), sum(u for _, u in results)
  envs_lib.set_state(env, end)           # the trunk carries on from where it stopped
  batch = {"obs": states, "actions": actions, "q": q_hat.reshape(n, k).astype(np.float32)}
  if logp_q is not None:
    batch["logp_q"] = logp_q.astype(np.float32)
  return batch, trunk, episodes, trunk_steps + used


@functools.partial(jax.jit, static_argnames=("apply",))
def act_params(params, stats, obs, *, apply):
  """µ = π_θ's distribution parameters at observations [B, ...] (after normalisation)."""
  return apply(params, obsnorm.normalize(stats, obs))
