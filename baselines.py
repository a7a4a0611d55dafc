"""The non-TRPO methods TRPO is compared with in Section 8 (Figure 4).

A separate file because these are not parts of TRPO: they are the paper's comparison points, and
each uses the same policies (`policies.py`), environments (`envs.py`), sampling, run directory
(`rundir.py`) and command line (`python train.py --method cem|cma|rwr|reps`) as TRPO. CEM,
CMA-ES and REPS have iterations of their own (`iteration_for`), which train.py's loop runs;
RWR differs from single-path TRPO only in its update (`rwr_step`) and runs as single path.

Derivative-free search over the flat parameter vector θ, each candidate scored by the return of
one episode of the deterministic policy (the mode of π_θ):
  - the cross-entropy method (CEM; Szita & Lőrincz, 2006): sample θ ~ N(m, diag s²), refit m, s
    to the elite fraction, plus decreasing extra noise (`cem_ask`, `cem_tell`);
  - CMA-ES (Hansen & Ostermeier, 1996), from the maintained `cma` package (`cma_init`; optional
    extra `pip install -e ".[baselines]"`), not written here.
Policy search by weighted maximum likelihood on single-path samples (the EM-like family):
  - reward-weighted regression (RWR; Peters & Schaal, 2007): maximise Σ w log π_θ(a|s) with
    w = exp(Â / τ) (`rwr_weights`, `weighted_ml`);
  - relative entropy policy search (REPS; Peters et al., 2010): the weights exp(δ_v/η) of the
    maximum-entropy distribution within KL ε of the sampling distribution, η and the state value
    v·φ(s) from its convex dual (`reps_dual`, `reps_weights`), then the same weighted fit.
"""

import functools
import math

import jax
import jax.numpy as jnp
import jax.scipy.optimize
import numpy as np
from jax.flatten_util import ravel_pytree

import envs as envs_lib
import obsnorm
import sampling
import trpo
import value

# The --method names of train.py run by `train` below. RWR samples and estimates advantages
# exactly as single-path TRPO does and differs only in its update: train.py runs it in the
# single-path TRPO loop with `rwr_step` as the update (chosen once, like natural gradient).
METHODS = ("cem", "cma", "reps")
SEARCH = ("cem", "cma")

# ----------------------------------------------------------------------------------------------
# Derivative-free search: CEM and CMA-ES.
# ----------------------------------------------------------------------------------------------


def cem_init(theta, std):
  """The CEM search distribution N(m, diag s²) as {"mean": θ [d], "std": s [d]}."""
  theta = np.asarray(theta, np.float64)
  return {"mean": theta, "std": np.full_like(theta, float(std))}


def cem_ask(search, rng, population):
  """population candidates θ_i ~ N(m, diag s²) → [population, d] (rng: numpy Generator)."""
  eps = rng.standard_normal((population, search["mean"].size))
  return search["mean"] + search["std"] * eps


def cem_tell(search, thetas, scores, elite_frac=0.2, extra_std=0.0):
  """Refits N(m, diag s²) to the best ⌈elite_frac·P⌉ candidates (highest scores).

  m ← mean of the elite, s² ← variance of the elite + extra_std². The extra noise is Szita &
  Lőrincz's fix for CEM's premature collapse of s; the caller decreases it over iterations.
  """
  thetas, scores = np.asarray(thetas), np.asarray(scores)
  if not np.all(np.isfinite(scores)):
    raise ValueError(f"CEM scores must be finite, got {scores}")
  n_elite = max(1, int(np.ceil(elite_frac * len(scores))))
  elite = thetas[np.argsort(-scores, kind="stable")[:n_elite]]
  return {"mean": elite.mean(0), "std": np.sqrt(elite.var(0) + extra_std**2)}


def cma_init(theta, std, population, seed, costs=()):
  """The CMA-ES search state {"es", "costs"}: a `cma.CMAEvolutionStrategy` started at θ with
  step size std (the package's own object: `es.ask()` → candidates, `es.tell(candidates,
  costs)`; it minimises, so pass −returns), and the costs told so far [iterations, population].

  Given the costs of earlier iterations, it replays them: the same seed gives the same
  candidates, so telling the same costs rebuilds the same state. That is how a checkpoint
  keeps CMA-ES as a plain array, with no pickled object to load.
  """
  try:
    import cma
  except ImportError:
    raise ValueError("method 'cma' needs the cma package: pip install -e '.[baselines]'") from None
  theta = np.asarray(theta, np.float64)
  # Full CMA-ES costs O(d²) memory and O(d³) per eigendecomposition; above 1,000 parameters we
  # use the package's separable (diagonal-covariance) variant, as large-scale users do.
  es = cma.CMAEvolutionStrategy(theta, float(std),
                                {"popsize": int(population), "seed": int(seed) + 1,
                                 "verbose": -9, "CMA_diagonal": theta.size > 1000})
  costs = np.asarray(costs, np.float64).reshape(-1, int(population))
  for c in costs:
    es.tell(es.ask(), list(c))
  return {"es": es, "costs": costs}


def episode_return(env, policy, unravel, theta, stats, max_steps=100_000):
  """(undiscounted return, steps) of one episode of the deterministic policy mode(π_θ(·|s)),
  from a reset of the single environment `env`."""
  params = unravel(jnp.asarray(theta, jnp.float32))
  space, policy_act = env.action_space, sampling.actor(policy)
  obs, _ = env.reset()
  total, steps = 0.0, 0
  while steps < max_steps:
    a = policy_act(params, stats, sampling.as_input(obs)[None])
    obs, r, terminated, truncated, _ = env.step(envs_lib.env_action(space, np.asarray(a)[0]))
    total, steps = total + float(r), steps + 1
    if terminated or truncated:
      break
  return total, steps


# ----------------------------------------------------------------------------------------------
# Weighted maximum likelihood: RWR and REPS.
# ----------------------------------------------------------------------------------------------


def _weighted_ml_for(policy, epochs, n_minibatches, lr):
  apply, dist = policy["apply"], policy["dist"]

  def fit(params, obs, actions, weights, key):
    w = weights / jnp.mean(weights)

    def loss(p, o, a, wb):
      return -jnp.mean(wb * dist["log_prob"](apply(p, o), a))
    return value.adam_minibatch(loss, params, (obs, actions, w), key, epochs=epochs,
                                n_minibatches=n_minibatches, lr=lr)
  return fit


def weighted_ml(policy, params, obs, actions, weights, key, *, epochs=10, n_minibatches=4,
                lr=1e-3):
  """argmax_θ Σ_n w_n log π_θ(a_n|s_n) / Σ_n w_n by Adam (`value.adam_minibatch`).

  obs [N, ...], actions [N, ...], weights [N] ≥ 0. The M-step of RWR and REPS. For a linear
  Gaussian policy its fixed point is weighted least squares for the mean and the weighted
  residual variance for σ² (what `test_weighted_ml_is_weighted_least_squares` checks).
  """
  fit = trpo.jit_for(policy, _weighted_ml_for, epochs, n_minibatches, lr)
  return fit(params, obs, actions, weights, key)


def rwr_weights(adv, temperature=1.0):
  """w_n = exp((Â_n − max Â) / τ) [N]: the exponential reward transformation of Peters & Schaal
  (2007), on advantages (a baseline only rescales all w). Subtracting the max avoids overflow."""
  adv = jnp.asarray(adv)
  return jnp.exp((adv - jnp.max(adv)) / temperature)


def reps_features(obs):
  """φ(s) = [s, s², 1] for flat observations [N, d] → [N, 2d + 1]: the state features of the
  value function v·φ(s) in REPS' dual."""
  obs = jnp.asarray(obs, jnp.float32).reshape(obs.shape[0], -1)
  return jnp.concatenate([obs, obs**2, jnp.ones_like(obs[:, :1])], axis=1)


def reps_bellman_errors(v, feats, next_feats, rewards, not_done, gamma):
  """δ_v(s, a) = r + γ·v·φ(s')·(1 − terminal) − v·φ(s) [N] (Peters et al., 2010, discounted)."""
  return rewards + gamma * not_done * (next_feats @ v) - feats @ v


def reps_dual(x, feats, next_feats, rewards, not_done, init_feats, gamma, epsilon):
  """REPS' dual, discounted: g(η, v) = η ε + η log (1/N) Σ_n exp(δ_v(n)/η) + (1−γ) v·φ̄₀,
  with x = [log η, v] (log η keeps η > 0) and φ̄₀ [F] the mean features of initial states.

  The primal (Peters et al., 2010, with discounting): maximise E_p[r] over distributions p on
  the samples with KL(p ‖ q) ≤ ε and the stationarity of the discounted state distribution,
  E_p[φ(s)] = (1−γ) φ̄₀ + γ E_p[(1 − terminal) φ(s')]. Its solution is p ∝ exp(δ/η). The
  (1−γ) v·φ̄₀ term is what keeps g bounded: without it the constant feature could drive δ → −∞.
  """
  eta, v = jnp.exp(x[0]), x[1:]
  delta = reps_bellman_errors(v, feats, next_feats, rewards, not_done, gamma)
  return (eta * epsilon + eta * (jax.nn.logsumexp(delta / eta) - jnp.log(delta.shape[0]))
          + (1 - gamma) * init_feats @ v)


@jax.jit
def reps_weights(feats, next_feats, rewards, not_done, init_feats, gamma, epsilon):
  """(w [N], η, v): minimises `reps_dual` by BFGS (`jax.scipy.optimize.minimize`) from η = 1,
  v = 0, and returns w_n = exp((δ_n − max δ)/η) (shifted against overflow; only ratios matter)."""
  x0 = jnp.zeros(feats.shape[1] + 1, jnp.float32)
  x = jax.scipy.optimize.minimize(reps_dual, x0, method="BFGS",
                                  args=(feats, next_feats, rewards, not_done, init_feats,
                                        gamma, epsilon)).x
  eta, v = jnp.exp(x[0]), x[1:]
  delta = reps_bellman_errors(v, feats, next_feats, rewards, not_done, gamma)
  return jnp.exp((delta - jnp.max(delta)) / eta), eta, v


def _kl_info(policy, old_params, new_params, obs):
  """The info dict of `trpo.step` for a weighted-ML update: mean KL(old ‖ new) and the old
  policy's mean entropy on the batch."""
  dist, old = policy["dist"], policy["apply"](old_params, obs)
  kl = jnp.mean(dist["kl"](old, policy["apply"](new_params, obs)))
  return {"kl": kl, "actual_improve": jnp.nan, "backtracks": 0, "accepted": True,
          "entropy": trpo.mean_entropy(dist, old)}


def rwr_step(params, batch, policy, key, temperature=1.0, epochs=10, lr=1e-2):
  """One RWR update on a single-path batch {"obs", "actions", "adv"} (as for `trpo.step`):
  weights from the advantages, then the weighted maximum-likelihood fit. Returns (params, info)
  like `trpo.step`."""
  w = rwr_weights(batch["adv"], temperature)
  new = weighted_ml(policy, params, batch["obs"], batch["actions"], w, key, epochs=epochs, lr=lr)
  return new, _kl_info(policy, params, new, batch["obs"])


def reps_update(params, obs, actions, next_obs, rewards, terminated, init_obs, policy, key,
                gamma, epsilon=0.1, epochs=10, lr=1e-2):
  """One REPS iteration on single-path samples: dual → weights → weighted maximum likelihood.

  obs, next_obs [N, d] (normalised as the policy sees them), rewards [N], terminated [N],
  init_obs [M, d] initial states of episodes (M ≥ 1). Returns (params, info) like `trpo.step`.
  """
  init_feats = jnp.mean(reps_features(init_obs), axis=0)
  w, _, _ = reps_weights(reps_features(obs), reps_features(next_obs),
                         jnp.asarray(rewards, jnp.float32),
                         1.0 - jnp.asarray(terminated, jnp.float32), init_feats, gamma, epsilon)
  if not bool(jnp.all(jnp.isfinite(w))):
    # The dual diverged (the features cannot be matched on this batch): no step rather than NaNs.
    info = _kl_info(policy, params, params, obs)
    return params, dict(info, accepted=False)
  new = weighted_ml(policy, params, obs, actions, w, key, epochs=epochs, lr=lr)
  return new, _kl_info(policy, params, new, obs)


def search_iteration(method, search, env, policy, unravel, stats, rng, population,
                     elite_frac, extra_std):
  """One CEM or CMA-ES iteration: `population` candidates, one episode each.

  Returns (search, mean θ [d], [(return, length)] of the P candidates' episodes).
  """
  if method == "cem":
    thetas = cem_ask(search, rng, population)
  else:
    thetas = np.asarray(search["es"].ask())
  results = [episode_return(env, policy, unravel, th, stats) for th in thetas]
  returns = np.array([r for r, _ in results])
  if method == "cem":
    search = cem_tell(search, thetas, returns, elite_frac, extra_std)
    return search, search["mean"], results
  search["es"].tell(list(thetas), list(-returns))
  search = {"es": search["es"], "costs": np.concatenate([search["costs"], -returns[None]])}
  return search, np.asarray(search["es"].mean), results


# ----------------------------------------------------------------------------------------------
# The training loop of CEM, CMA-ES and REPS (`python train.py --method cem|cma|reps`).
# ----------------------------------------------------------------------------------------------


def search_arrays(state):
  """The checkpoint entries of a search state: CEM's mean and std, CMA-ES's costs so far."""
  search = state["search"]
  if "es" in search:
    return {"search_costs": search["costs"]}
  return {f"search_{k}": v for k, v in search.items()}


def _search_state(cfg, theta0, saved, iteration):
  """The search state of a checkpoint (CEM: its mean and std; CMA-ES: rebuilt from θ₀ and the
  costs so far), or a new one centred on θ₀."""
  if cfg["method"] == "cem":
    if saved is None:
      return cem_init(theta0, cfg["search_std"])
    shape = np.shape(saved.get("search_mean"))
    if shape != theta0.shape or np.shape(saved.get("search_std")) != shape:
      raise ValueError(f"the checkpoint's CEM state has shape {shape}, the policy {theta0.shape}")
    return {"mean": saved["search_mean"], "std": saved["search_std"]}
  costs = np.zeros((0, cfg["population"])) if saved is None else saved.get("search_costs")
  if np.shape(costs) != (iteration, cfg["population"]) or not np.all(np.isfinite(costs)):
    raise ValueError(f"the checkpoint's CMA-ES costs have shape {np.shape(costs)}, expected "
                     f"finite costs of shape ({iteration}, {cfg['population']}) (iterations, "
                     "population)")
  return cma_init(theta0, cfg["search_std"], cfg["population"], cfg["seed"], costs)


def search_train_iteration(cfg, run, state, carry, keys):
  """One CEM / CMA-ES iteration: `population` candidates of one deterministic episode each."""
  rng = np.random.default_rng([cfg["seed"], state["iteration"]])
  # Szita & Lőrincz's extra noise against CEM's collapse, decreased linearly to zero at half
  # the budget (CMA-ES adapts its step size itself and ignores it).
  extra = 0.1 * cfg["search_std"] * max(0.0, 1.0 - 2.0 * state["steps"] / cfg["steps"])
  unravel = ravel_pytree(state["params"])[1]
  search, mean, episodes = search_iteration(
      cfg["method"], state["search"], run["env"], run["policy"], unravel, state["stats"], rng,
      cfg["population"], cfg["elite_frac"], extra)
  return {"params": unravel(jnp.asarray(mean, jnp.float32)), "vparams": state["vparams"],
          "stats": state["stats"], "search": search,
          "info": {"kl": math.nan, "actual_improve": math.nan, "backtracks": 0, "accepted": True,
                   "entropy": math.nan},
          "episodes": episodes, "steps": sum(n for _, n in episodes), "vf_loss": None}, carry


def _stats_after(stats, roll):
  return None if stats is None else obsnorm.obs_stats_update(stats, sampling.flatten(roll["obs"]))


def reps_successors(roll, next_obs):
  """(s' [T, E, ...], initial states [M, ...]) of a single-path rollout, for REPS' dual.

  s' is the next row, and next_obs after the last. Where an episode ended that is the reset
  state: an initial state for the dual's φ̄₀ (the rollout's first states stand in when no
  episode ended in it). Where a time limit cut the episode, s' is the pre-reset observation;
  after a termination s' is unused (1 − terminal).
  """
  after = np.concatenate([roll["obs"][1:], np.asarray(next_obs)[None]], 0)
  starts = after[roll["terminated"] | roll["truncated"]]
  init_obs = starts if len(starts) else roll["obs"][0]
  for t, e, o in roll["final_obs"]:
    after[t, e] = o
  return after, init_obs


def reps_iteration(cfg, run, state, obs, keys):
  """One REPS iteration on single-path samples: the dual on Bellman errors (REPS estimates its
  own state values: no value function), then the weighted maximum-likelihood fit."""
  k_roll, k_step, _ = keys
  params, stats = state["params"], state["stats"]
  T = max(1, cfg["batch"] // cfg["num_envs"])
  roll, obs, episodes = sampling.single_path(run["env"], obs, run["policy"], params, stats,
                                             k_roll, T)
  b = sampling.policy_batch(sampling.flatten(roll["obs"]), sampling.flatten(roll["actions"]),
                            np.zeros(roll["rewards"].size, np.float32), stats)
  after, init_obs = reps_successors(roll, obs)
  n = b["obs"].shape[0]
  next_obs = obsnorm.normalize(stats, jnp.asarray(after)).reshape(b["obs"].shape)
  params, info = reps_update(
      params, b["obs"], b["actions"], next_obs, roll["rewards"].reshape(n),
      roll["terminated"].reshape(n), obsnorm.normalize(stats, jnp.asarray(init_obs)),
      run["policy"], k_step, cfg["gamma"], cfg["reps_epsilon"], cfg["ml_epochs"], cfg["ml_lr"])
  return {"params": params, "vparams": state["vparams"], "stats": _stats_after(stats, roll),
          "info": info, "episodes": episodes, "steps": T * cfg["num_envs"], "vf_loss": None}, obs


def iteration_for(cfg, run, state, initial):
  """What train.py's loop needs to run the comparison method cfg["method"] (CEM, CMA-ES, REPS)
  on `run` (what `train.start` builds), `initial` the run's state at iteration 0:
  (iterate(state, carry, keys), the state with a search method's "search" state, extra(state)
  -> the checkpoint's search arrays or None)."""
  if cfg["method"] not in SEARCH:
    return functools.partial(reps_iteration, cfg, run), state, None
  theta0 = np.asarray(ravel_pytree(initial["params"])[0])
  state = dict(state, search=_search_state(cfg, theta0, run["saved"], state["iteration"]))
  return functools.partial(search_train_iteration, cfg, run), state, search_arrays
