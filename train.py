"""The training program: TRPO from the command line (Section 6's "repeatedly perform").

    python train.py [--env ID] [--steps N] [--seed S] [--out DIR] [hyperparameters]
    python train.py --resume DIR [--steps N]
    python train.py --eval DIR [--episodes K]

`train` is the program: it makes the run (its config, environments, networks and directory),
then loops until the step budget is spent; each iteration samples with π_θold, estimates
advantages, takes one `trpo.step`, refits the value function (`single_path_iteration`, or
`vine_iteration` for Section 5.2's vine), logs and checkpoints. `--method` picks one of the
algorithms of Figure 4; the non-TRPO ones (CEM, CMA-ES, REPS) bring their own iteration from
`baselines.py`, run by the same loop. Below `train`: one iteration of each method, what a config
makes (`build`, `start`), evaluation, the defaults and their validation, and the command line.
The run directory's files (checkpoint, log, lock) are `rundir.py`.
"""

import argparse
import functools
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

import baselines
import envs
import obsnorm
import parallel
import rundir
import sampling
import trpo
import value
import workers


def train(env_id=None, steps=None, seed=None, out=None, resume=False, log=print,
          overwrite=False, callback=None, **options):
  """Trains a policy with TRPO (or, by `method`, a Section 8 comparison method).

  Each single-path iteration: sample `batch` environment steps with π_θold (Section 5.1);
  estimate advantages (GAE(λ) with a learned value function, or the paper's discounted returns
  with `estimator="mc"`); standardise them; take one update; refit the value function.
  `method="vine"` samples by the vine method instead (Section 5.2).

  With `out`, writes DIR/log.jsonl (one JSON object per iteration) and DIR/checkpoint.npz
  (atomically, every iteration); a DIR that holds a run is refused unless `overwrite`.
  `resume=True` continues from that checkpoint (options given then must not change the task,
  networks or seed; others apply and are noted). `log` receives one line per iteration and the
  notes; callback(record) each iteration's record (a dict, as in log.jsonl), and a true
  result stops the run after that iteration. Options are the keys of DEFAULTS (None: the
  default). Returns {"policy", "params", "history" (the iterations' records), "config",
  "state"}.
  """
  cfg, run, state, ckpt = begin({"env": env_id, "steps": steps, "seed": seed, **options}, out,
                                resume, overwrite, log)
  log = log if jax.process_index() == 0 else (lambda line: None)   # one writer: process 0
  history, start_rate, stopped = [], None, True   # stopped: by an exception or a signal
  try:
    iterate, carry, state, extra = method_iteration(cfg, run, state)
    # Section 6: "the algorithms repeatedly perform the following steps".
    while state["steps"] < cfg["steps"]:
      t0 = time.perf_counter()
      key, *keys = jax.random.split(state["key"], 4)
      # Sample with π_θold, estimate advantages, update the policy, refit V.
      result, carry = iterate(state, carry, keys)
      # JAX dispatches asynchronously: wait for the update itself before reading the clock.
      jax.block_until_ready((result["params"], result["vparams"], result["info"]))
      seconds = time.perf_counter() - t0
      state = dict(state, **{k: result[k] for k in ("params", "vparams", "stats", "search")
                             if k in result},
                   key=key, iteration=state["iteration"] + 1,
                   steps=state["steps"] + result["steps"], seconds=state["seconds"] + seconds)
      history.append(iteration_record(state, result, seconds))
      record(ckpt, state, cfg, history[-1], extra)
      # The rate for the ETA leaves out this session's first iteration, which compiles.
      start_rate = start_rate or (state["steps"], state["seconds"])
      rate = (state["steps"] - start_rate[0]) / max(state["seconds"] - start_rate[1], 1e-9)
      log(format_record(history[-1],
                        max(0, cfg["steps"] - state["steps"]) / rate if rate else None))
      if callback is not None and callback(history[-1]):
        break
    stopped = False
  finally:
    close_run(run, stopped)
  if not history:
    log(f"nothing to do: the run has {state['steps']} steps (iteration {state['iteration']}) "
        f"of the {cfg['steps']} asked for; ask for more with steps (--steps)")
  return {"policy": run["policy"], "params": state["params"], "history": history,
          "config": cfg, "state": state}


def begin(given, out, resume, overwrite, log):
  """(cfg, run, state, checkpoint path) of a run starting or resuming (`make_config`, `start`).
  With several processes, one that refuses the run says so in a collective before the first
  of training, where the others wait (a peer that left would leave them waiting for ever)."""
  try:
    cfg = make_config(given, out, resume, log)
    if jax.process_count() > 1 and cfg["method"] in ("vine",) + baselines.METHODS:
      raise ValueError(f"several processes run the single-path methods, not {cfg['method']!r}")
    single_env = cfg["method"] == "vine" or cfg["method"] in baselines.SEARCH
    run, state, ckpt = start(cfg, out, resume, single_env, overwrite,
                             log if jax.process_index() == 0 else (lambda line: None))
  except (ValueError, OSError):
    parallel.any_process(True)
    raise
  if parallel.any_process(False):
    run["env"].close()
    raise ValueError("another process refused the run (process 0 says why)")
  run["pool"], run["copies"] = None, [run["env"]]
  return cfg, run, state, ckpt


def record(ckpt, state, cfg, line, extra):
  """The checkpoint, then the log line (`rundir.record_iteration`), by process 0 (ckpt None
  elsewhere). With several processes they agree on whether it was written: a write that failed
  (a full disk) stops every one of them here, not at the next collective, where the others
  would wait for process 0 for ever."""
  try:
    if ckpt:
      rundir.record_iteration(ckpt, state, cfg, line, extra(state) if extra else None)
  except OSError:
    parallel.any_process(True)
    raise
  if parallel.any_process(False):
    raise ValueError("process 0 could not write the run directory (it says why)")


def close_run(run, stopped):
  """Closes what a run opened: its environments (at once if `stopped` in the middle of a step),
  the vine's worker pool, the run directory's lock."""
  for env in (e for e in run["copies"] if e is not None):
    envs.close(env, at_once=stopped)
  if run["pool"] is not None:
    run["pool"]["shutdown"]()
  if run["lock"] is not None:
    run["lock"].close()


def single_path_iteration(cfg, run, state, obs, keys):
  """Sample `batch` steps with π_θold (Section 5.1; with several processes, each samples its
  share); advantages by GAE(λ) with the value function, or the paper's discounted returns
  (estimator "mc"); one update and the refit of V on the batch of all processes (`parallel`).
  Returns (the iteration's results, the observations that continue the episodes)."""
  k_roll, k_step, k_vf = keys
  if jax.process_count() > 1:              # each process draws its own actions
    k_roll = jax.random.fold_in(k_roll, jax.process_index())
  params, vparams, stats = state["params"], state["vparams"], state["stats"]
  T = max(1, cfg["batch"] // cfg["num_envs"] // jax.process_count())
  roll, obs, episodes = sampling.single_path(run["env"], obs, run["policy"], params, stats,
                                             k_roll, T)
  adv, targets = sampling.advantages(roll, obs, value.predictor(vparams, stats, run["value"][1]),
                                     cfg["estimator"], cfg["gamma"], cfg["lam"])
  # Every process's samples, on every process (one collective; the identity with one process).
  every = parallel.gather({"obs": sampling.flatten(roll["obs"]),
                           "actions": sampling.flatten(roll["actions"]),
                           "adv": sampling.flatten(adv),
                           **({} if targets is None else {"targets": sampling.flatten(targets)})})
  batch = sampling.policy_batch(every["obs"], every["actions"], every["adv"], stats)
  params, info = run["update"](params, batch, run["policy"], k_step)
  vparams, vf_loss = value.refit(vparams, stats, every["obs"], every.get("targets"), k_vf,
                                 apply=run["value"][1], epochs=cfg["vf_epochs"], lr=cfg["vf_lr"])
  if stats is not None:
    stats = obsnorm.obs_stats_update(stats, every["obs"])
  params, vparams = parallel.from_process_0((params, vparams))
  # A copy ends at most one episode a step: T·E episodes at most on a process.
  episodes = parallel.gather_list(episodes, T * cfg["num_envs"])
  return {"params": params, "vparams": vparams, "stats": stats, "info": info,
          "episodes": episodes, "vf_loss": vf_loss,
          "steps": T * cfg["num_envs"] * jax.process_count()}, obs


def vine_iteration(cfg, run, state, trunk, keys):
  """One vine iteration (Section 5.2): trunk, rollout set, branches (`sampling.vine`), one
  update on the vine batch. Returns (the iteration's results, the trunk that continues)."""
  k_roll, k_step, _ = keys
  params, stats = state["params"], state["stats"]
  vb, trunk, episodes, n = sampling.vine(
      run["env"], trunk, run["policy"], params, stats, k_roll, n_states=cfg["vine_states"],
      n_actions=cfg["vine_actions"], horizon=cfg["vine_horizon"], gamma=cfg["gamma"],
      trunk_steps=cfg["batch"], q=cfg["vine_q"], copies=run["copies"], pool=run["pool"])
  # A common shift of Q̂ leaves both vine estimators' gradients unchanged (their weights sum to
  # one) and the step length is set by δ: standardising only keeps the numbers tame.
  vb["q"] = (vb["q"] - vb["q"].mean()) / (vb["q"].std() + 1e-8)
  raw_states = vb["obs"]
  vb = {k: jnp.asarray(v) for k, v in vb.items()}
  vb["obs"] = obsnorm.normalize(stats, vb["obs"])
  params, info = run["update"](params, vb, run["policy"], k_step)
  if stats is not None:
    stats = obsnorm.obs_stats_update(stats, raw_states)
  return {"params": params, "vparams": state["vparams"], "stats": stats, "info": info,
          "episodes": episodes, "steps": n, "vf_loss": None}, trunk


def policy_update(cfg):
  """update(params, batch, policy, key) -> (params, info) of a single-path or vine method:
  `trpo.step` with the config's options, or the Section 8 variant `cfg["method"]` names."""
  if cfg["method"] == "rwr":
    return functools.partial(baselines.rwr_step, temperature=cfg["temperature"],
                             epochs=cfg["ml_epochs"], lr=cfg["ml_lr"])
  common = {"damping": cfg["damping"], "cg_iters": cfg["cg_iters"], "subsample": cfg["subsample"]}
  if cfg["method"] == "natural_gradient":
    return functools.partial(trpo.natural_gradient_step, step_size=cfg["step_size"], **common)
  fisher = trpo.fisher_vp_empirical if cfg["method"] == "empirical_fim" else \
      trpo.fisher_vp_analytic
  constraint = jnp.max if cfg["method"] == "max_kl" else jnp.mean
  return functools.partial(trpo.step, delta=cfg["delta"], fisher=fisher, constraint=constraint,
                           **common)


def branch_runners(cfg, env):
  """(copies, pool) for the vine branches: `vine_copies` environments stepped in lockstep
  (the trunk's own `env` among them), or with vine_workers > 1 a `workers.branch_pool` whose
  workers hold that many copies each (then copies only sets the group size)."""
  size = cfg["vine_copies"]
  if cfg["vine_workers"] > 1:
    pool = workers.branch_pool(cfg["env"], cfg["seed"], cfg["vine_workers"], size,
                                cfg["hidden"], cfg["linear_policy"], cfg["log_std_init"],
                                rundir.env_options(cfg))
    return [env] + [None] * (size - 1), pool
  return [env] + [envs.make_single(cfg["env"], cfg["seed"], **rundir.env_options(cfg))[0]
                  for _ in range(size - 1)], None


def method_iteration(cfg, run, state):
  """What `train`'s loop runs for cfg["method"]: (iterate, carry, state, extra).

  iterate(state, carry, keys) -> (result, carry) performs one iteration with three fresh PRNG
  keys; result holds the new "params", "vparams", "stats" (and "search" for a baseline), and
  the iteration's "info" (of `trpo.step`), "episodes", "steps" and "vf_loss". carry is what
  continues across iterations without being checkpointed (observations, a vine trunk); state
  gains a search method's state; extra(state) gives the checkpoint's extra arrays (or extra is
  None). Vine starts its branch copies or workers in run (closed by `close_run`)."""
  if cfg["method"] in baselines.METHODS:
    iterate, state, extra = baselines.iteration_for(cfg, run, state, init_state(cfg, run))
    return iterate, run["obs"], state, extra
  run["update"] = policy_update(cfg)
  if cfg["method"] != "vine":
    return functools.partial(single_path_iteration, cfg, run), run["obs"], state, None
  run["copies"], run["pool"] = branch_runners(cfg, run["env"])
  return (functools.partial(vine_iteration, cfg, run), {"obs": run["obs"], "ret": 0.0, "len": 0},
          state, None)


def iteration_record(state, result, seconds):
  """The log record of an iteration (one line of log.jsonl)."""
  info = result["info"]
  return {
      "iteration": state["iteration"], "steps": state["steps"],
      "episodes": len(result["episodes"]), "mean_return": mean_return(result["episodes"]),
      # A KL is ≥ 0; rounding in the mean of many tiny terms can leave it a hair below.
      "kl": max(float(info["kl"]), 0.0) if np.isfinite(info["kl"]) else float(info["kl"]),
      "surrogate_improve": float(info["actual_improve"]),
      "backtracks": int(info["backtracks"]), "accepted": bool(info["accepted"]),
      "entropy": float(info["entropy"]), "vf_loss": result["vf_loss"],
      "steps_per_second": result["steps"] / seconds,
      "seconds": state["seconds"]}


def mean_return(episodes):
  """Mean return of the episodes that ended in this iteration; None if none did (a stalled or
  long episode must not repeat an earlier iteration's number in the log)."""
  return float(np.mean([r for r, _ in episodes])) if episodes else None


def format_record(record, eta=None):
  """The one line per iteration printed while training (eta: seconds left, None on the first
  iteration, whose steps/s include JAX's compilation)."""
  ret = "-" if record["mean_return"] is None else f"{record['mean_return']:9.2f}"
  left = "compiling" if eta is None else f"eta {int(eta) // 60:d}m{int(eta) % 60:02d}s"
  return (f"iter {record['iteration']:4d}  steps {record['steps']:9d}  episodes "
          f"{record['episodes']:4d}  return {ret:>9s}  kl {record['kl']:.5f}  "
          f"improve {record['surrogate_improve']:+.4f}  backtracks {record['backtracks']:2d}  "
          f"entropy {record['entropy']:.3f}  "
          f"{record['steps_per_second']:7.0f} steps/s  {left}")


# ----------------------------------------------------------------------------------------------
# What a config makes: the environments, the networks, the state of a new or resumed run.
# ----------------------------------------------------------------------------------------------


def build(cfg, single_env=False, video=None):
  """What a config describes: {"env", "obs" (first observations), "policy", "value" (stax
  (init, apply) of V), "obs_shape"}.

  The environment is a vector env of cfg["num_envs"] copies, or with `single_env` one
  environment whose state can be saved and restored (vine, Section 5.2; the parameter searches).
  """
  seed = cfg["seed"] + 10007 * jax.process_index()      # processes sample apart (`parallel`)
  if single_env:
    env, obs = envs.make_single(cfg["env"], seed, **rundir.env_options(cfg))
    obs_space, action_space = env.observation_space, env.action_space
  else:
    env, obs = envs.make(cfg["env"], cfg["num_envs"], seed, cfg["vectorization"], video,
                         backend=cfg["backend"], **rundir.env_options(cfg))
    obs_space, action_space = env.single_observation_space, env.single_action_space
  try:
    policy = envs.policy_for(obs_space, action_space, tuple(cfg["hidden"]),
                             cfg["linear_policy"], cfg["log_std_init"])
  except ValueError:
    env.close()
    raise
  return {"env": env, "obs": obs, "policy": policy, "obs_shape": obs_space.shape,
          "value": value.value_net(obs_space.shape, tuple(cfg["hidden"]))}


def init_state(cfg, built):
  """The training state at iteration 0: {"params", "vparams", "stats", "key", "iteration",
  "steps", "seconds"}, all drawn from PRNGKey(cfg["seed"])."""
  key, kp, kv = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)
  obs_shape = tuple(built["obs_shape"])
  return {"params": built["policy"]["init"](kp, obs_shape),
          "vparams": built["value"][0](kv, (-1,) + obs_shape)[1],
          "stats": obsnorm.obs_stats_init(obs_shape) if cfg["normalize_obs"] else None,
          "key": key, "iteration": 0, "steps": 0, "seconds": 0.0}


def start(cfg, out, resume, single_env=False, overwrite=False, note=print):
  """(run, state, checkpoint path or None) for a training loop: run is what `build` makes for
  the config plus "saved" (the checkpoint's arrays when resuming, else None) and "lock" (DIR's
  lock, which the caller closes when the run ends; None without DIR); state is the
  state at iteration 0 or, resuming, the checkpoint's (episodes restart: the simulator state
  is not checkpointed); DIR is prepared by `open_run` (by process 0 only, if there are
  several: see `parallel`)."""
  run = build(cfg, single_env)
  run["saved"] = None
  try:
    if resume:
      run["saved"] = rundir.load_checkpoint(out)[1]
      rundir.check_sizes(cfg, run, run["saved"])
    state = init_state(cfg, run)
    if resume:
      state = rundir.restore_state(state, run["saved"], cfg)
      seed = cfg["seed"] + 7919 * state["iteration"] + 10007 * jax.process_index()
      run["obs"] = run["env"].reset(seed=seed)[0]
    # One writer: process 0 (`parallel`); the others read the checkpoint to resume.
    write = out and jax.process_index() == 0
    ckpt, run["lock"] = rundir.open_run(out, resume, run["saved"], overwrite, note) if write else \
        (None, None)
  except BaseException:
    run["env"].close()
    raise
  return run, state, ckpt


def load_policy(run_dir, seed, check, video=None, code=None):
  """The policy saved in DIR/checkpoint.npz, in one fresh environment of its task: {"config",
  "env" (a vector env of 1, recorded to `video` if given: `envs.make`), "obs" (its first
  observation), "policy", "params", "stats" (observation statistics or None)}. check(saved
  config) gives the config to build (options it predates filled in) or raises ValueError;
  `code` gives {"env": factory, "wrappers": (...)} again."""
  cfg, data = rundir.load_checkpoint(run_dir)
  # Evaluated by Gymnasium, whatever stepped the training (EnvPool's tasks are shown equal to
  # its): it records video and reports what a task measures (`x_position`) in `info`.
  cfg = {**check(cfg), "num_envs": 1, "seed": seed, "backend": "gymnasium", **(code or {})}
  cfg["hidden"] = tuple(cfg["hidden"])
  built = build(cfg, video=video)
  try:
    rundir.check_sizes(cfg, built, data)
    state = rundir.restore_state(init_state(cfg, built), data, cfg)
  except ValueError:
    built["env"].close()
    raise
  return {"config": cfg, "env": built["env"], "obs": built["obs"], "policy": built["policy"],
          "params": state["params"], "stats": state["stats"]}


# ----------------------------------------------------------------------------------------------
# Evaluating a saved policy.
# ----------------------------------------------------------------------------------------------


def _code(env, wrappers):
  """What a checkpoint cannot hold, given again: the env factory and the extra wrappers."""
  return {k: v for k, v in (("env", env), ("wrappers", tuple(wrappers or ()))) if v}


def evaluate(run_dir, episodes=10, seed=12345, video=None, env=None, wrappers=None):
  """Runs the saved policy deterministically (the mode of π) for `episodes` episodes, in an
  environment reset with `seed`, recorded into the MP4 file `video` if given. A run trained on
  an env factory or with extra wrappers needs them again (`env`, `wrappers`). Returns the list
  of undiscounted episode returns (`evaluate_episodes` gives their lengths and distances too).
  """
  return [e["return"] for e in evaluate_episodes(run_dir, episodes, seed, video, env, wrappers)]


def evaluate_episodes(run_dir, episodes=10, seed=12345, video=None, env=None, wrappers=None):
  """`evaluate`'s episodes as {"return", "length", "distance"}: distance is the task's
  `x_position` at the episode's end where its info reports one (Gymnasium's MuJoCo locomotion
  tasks, whose robots start within their reset noise of x = 0: how far the robot moved
  forward), else None."""
  if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
    raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")
  if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
    raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
  if video and (not str(video).endswith(".mp4") or os.path.isdir(video) or not os.path.isdir(
      os.path.dirname(os.path.abspath(video)))):
    raise ValueError(f"--video must name an .mp4 file (not a directory) in an existing "
                     f"directory, got {video!r}")
  # Recorded into a directory of its own beside the file (which fails at once where the file
  # could not be written), then moved to its name: nothing else in that directory is touched.
  folder = tempfile.mkdtemp(prefix=".recording-", dir=os.path.dirname(os.path.abspath(video))) \
      if video else None
  try:
    recording = folder and os.path.join(folder, "video", "e.mp4")   # RecordVideo makes "video"
    saved = load_policy(run_dir, seed, checked_config, recording, _code(env, wrappers))
    env, obs, returns, policy_act = saved["env"], saved["obs"], [], sampling.actor(saved["policy"])
    try:
      while len(returns) < episodes:
        a = policy_act(saved["params"], saved["stats"], sampling.as_input(obs))
        obs, _, _, _, info = env.step(envs.env_action(env.single_action_space, np.asarray(a)))
        if "_episode" in info and info["_episode"][0]:
          final = info.get("final_info", {})
          returns.append({"return": float(info["episode"]["r"][0]),
                          "length": int(info["episode"]["l"][0]),
                          "distance": float(final["x_position"][0]) if "x_position" in final
                          else None})
    finally:
      env.close()
    if video:
      os.replace(os.path.join(folder, "video", "e-step-0.mp4"), video)
  finally:
    if folder:
      shutil.rmtree(folder, ignore_errors=True)
  return returns


def policy_from_run(run_dir, env=None, wrappers=None):
  """The policy saved in DIR as a function: one observation (as its environment returns it)
  in, the deterministic action (the mode of π, as `evaluate` takes it) out. `env`, `wrappers`:
  as for `evaluate`."""
  saved = load_policy(run_dir, 0, checked_config, code=_code(env, wrappers))
  space, shape = saved["env"].single_action_space, saved["env"].single_observation_space.shape
  saved["env"].close()
  policy_act = sampling.actor(saved["policy"])

  def act(obs):
    if np.shape(obs) != shape:
      raise ValueError(f"the policy takes an observation of shape {shape}, got {np.shape(obs)}")
    return envs.env_action(space, np.asarray(policy_act(
        saved["params"], saved["stats"], sampling.as_input(obs)[None]))[0])
  return act


# ----------------------------------------------------------------------------------------------
# The defaults and their validation.
# ----------------------------------------------------------------------------------------------


DEFAULTS = {
    "env": "CartPole-v1", "steps": 100_000, "seed": 0, "method": "single_path",
    # The update's options: trpo's defaults (the paper's δ, k and Fisher subsample).
    "delta": trpo.DELTA, "damping": trpo.DAMPING, "cg_iters": trpo.CG_ITERS,
    "subsample": trpo.SUBSAMPLE,
    "gamma": 0.99, "lam": 0.97, "batch": 2048, "num_envs": 8, "estimator": "gae",
    "hidden": (64, 64),
    "normalize_obs": False, "linear_policy": False, "vf_epochs": 10, "vf_lr": 1e-3,
    "vectorization": "auto", "log_std_init": 0.0,
    # What steps the environments (`envs.BACKENDS`): Gymnasium, or EnvPool for the MuJoCo
    # family (below). A checkpoint that predates the option was stepped by Gymnasium.
    "backend": "gymnasium",
    # The environment beyond its id (`envs.make`): gym.make keyword arguments, extra wrappers
    # (Python only), and FIRE after reset and a lost life on Atari (not the paper's protocol).
    "env_kwargs": {}, "wrappers": (), "fire_reset": False,
    # Vine (Section 5.2; Table 2 uses N·K = 500 Q-values, K = 4, rollouts of 50 on Swimmer).
    "vine_states": 125, "vine_actions": 4, "vine_horizon": 50, "vine_q": "policy",
    "vine_workers": 1, "vine_copies": 16,
    # The comparison methods of Section 8 (see ALGORITHMS and baselines.py).
    "step_size": 0.1, "population": 20, "elite_frac": 0.2, "search_std": 0.5,
    "temperature": 1.0, "reps_epsilon": 0.1, "ml_epochs": 10, "ml_lr": 1e-2,
}


# Settings by environment family (`envs.family`), applied over DEFAULTS when a run starts; an
# option given explicitly wins. MuJoCo locomotion: the Hopper settings of the README (batch
# 4,096, δ 0.02, γ 0.995, running observation normalisation), stepped by EnvPool where it can
# serve the run (`envpool_refusal`; else by Gymnasium, the same task). Atari: frames normalised per
# pixel (without it the CNN learned only action frequencies on Pong) and λ = 0.95, the
# Table 1 settings. Classic control: DEFAULTS. The parameter searches (cem, cma) keep
# observations raw.
FAMILY_DEFAULTS = {
    "mujoco": {"batch": 4096, "delta": 0.02, "gamma": 0.995, "normalize_obs": True,
               "backend": "envpool"},
    "atari": {"normalize_obs": True, "lam": 0.95},
    "other": {},
}


# Over the family's, for single tasks the family settings do not train: Pendulum-v1 (a dense
# reward over a short horizon) was far from solved after 100k steps with γ = 0.99; with 0.9,
# the RL Zoo's value, it is solved (`python bench/defaults.py`, results/defaults.txt). Swimmer's
# reward comes from slow progress over its whole 1,000-step episode: it needs γ near 1, and the
# long horizon λ = 0.99. HalfCheetah (no termination: a cautious policy is never stopped)
# learns its gait with larger and more frequent steps, as the Zoo found (its target KL 0.04).
# Ant: with the family's initial σ = 1 the control cost of its eight joints outweighs the
# reward for staying alive, and the policy learns to end its episodes at once; from σ = e⁻¹ it
# learns to walk. Walker2d and Ant walk further with the Zoo's shorter horizon (γ 0.99, λ 0.95).
# Each setting tried is in results/defaults-tuning.txt.
TASK_DEFAULTS = {"Pendulum-v1": {"gamma": 0.9},
                 "Swimmer-v5": {"gamma": 0.999, "lam": 0.99, "batch": 2048},
                 "HalfCheetah-v5": {"delta": 0.04, "batch": 2048},
                 "Ant-v5": {"log_std_init": -1.0, "gamma": 0.99, "lam": 0.95},
                 "Walker2d-v5": {"gamma": 0.99, "lam": 0.95}}


# --method: the algorithms of Figure 4. TRPO with single-path or vine sampling (Section 5); the
# methods that sample like single path and change only the update: a fixed step instead of the
# KL constraint (natural_gradient), the Fisher matrix from score covariances (empirical_fim),
# the max-KL constraint of Eq. (11) (max_kl), reward-weighted regression (rwr); and the
# baselines with a loop of their own in baselines.py (baselines.METHODS: CEM, CMA-ES, REPS).
ALGORITHMS = ("single_path", "vine", "natural_gradient", "empirical_fim", "max_kl", "rwr") + \
    baselines.METHODS


# Options a resumed run keeps: they define its task, its networks or its randomness. Every
# other option may be changed on --resume (the change is printed).
FIXED_ON_RESUME = ("env", "env_kwargs", "wrappers", "fire_reset", "seed", "method", "hidden",
                   "linear_policy", "log_std_init", "normalize_obs", "backend")


def _is_json(value):
  try:
    json.dumps(value, allow_nan=False)
    return True
  except (TypeError, ValueError):
    return False


def _of_type(value, default):
  """Whether value has the type of the option's default (an int for a float, a list for a tuple;
  a bool is not an int)."""
  kinds = {bool: bool, int: int, float: (int, float), str: str, tuple: (tuple, list), dict: dict}
  return isinstance(value, kinds[type(default)]) and (isinstance(default, bool) or
                                                      not isinstance(value, bool))


def _check_types(cfg):
  """Raises ValueError naming the first option unknown or not of its default's type."""
  unknown = set(cfg) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
  for k in (k for k in DEFAULTS if k != "env" and not _of_type(cfg[k], DEFAULTS[k])):
    raise ValueError(f"{k} must be of type {type(DEFAULTS[k]).__name__}, got {cfg[k]!r}")


def validate_config(cfg):
  """Raises ValueError naming the first option of the wrong type or outside its allowed range.
  The options of `trpo.step` are checked by `trpo.check_options`, num_envs by
  `envs.check_num_envs`, vectorization by `envs.make`. The same for a new run, a resumed one
  and an evaluated one."""
  _check_types(cfg)
  envs.check_num_envs(cfg["num_envs"])
  checks = [
      ("env", isinstance(cfg["env"], str) or callable(cfg["env"]),
       "a Gymnasium id or a function returning an environment"),
      ("env_kwargs", isinstance(cfg["env_kwargs"], dict) and _is_json(cfg["env_kwargs"]),
       "a dict of gym.make keyword arguments (numbers, strings, lists, dicts)"),
      ("wrappers", all(callable(w) or isinstance(w, str) for w in cfg["wrappers"]),
       "a sequence of functions env -> env"),
      ("fire_reset", not cfg["fire_reset"] or envs.is_atari(cfg["env"]),
       "off except for an Atari id (ALE/...)"),
      ("steps", cfg["steps"] >= 1, "an integer >= 1"),
      ("seed", isinstance(cfg["seed"], int) and 0 <= cfg["seed"] < 2**32,
       "an integer in [0, 2**32)"),
      ("gamma", 0 < cfg["gamma"] < 1, "in (0, 1)"),
      ("lam", 0 <= cfg["lam"] <= 1, "in [0, 1]"),
      ("batch", cfg["num_envs"] <= cfg["batch"] <= 2**24,
       f"an integer from num_envs ({cfg['num_envs']}) to 2**24"),
      ("batch", cfg["batch"] % cfg["num_envs"] == 0 or cfg["method"] == "vine" or
       cfg["method"] in baselines.SEARCH, f"a multiple of num_envs ({cfg['num_envs']}): each "
       "environment takes batch / num_envs steps an iteration"),
      ("estimator", cfg["estimator"] in ("gae", "mc"), "'gae' or 'mc'"),
      ("method", cfg["method"] in ALGORITHMS, f"one of {ALGORITHMS}"),
      *((k, cfg[k] >= 1, "an integer >= 1") for k in ("vine_states", "vine_actions",
                                                      "vine_horizon", "vine_workers",
                                                      "vine_copies", "vf_epochs", "ml_epochs")),
      ("hidden", all(isinstance(h, int) and 1 <= h <= 2**16 for h in cfg["hidden"]),
       "layer sizes from 1 to 65536"),
      ("vf_lr", 0 < cfg["vf_lr"] < math.inf, "a number > 0"),
      ("log_std_init", abs(cfg["log_std_init"]) < 20, "a number in (-20, 20)"),
      ("population", cfg["population"] >= 2, "an integer >= 2"),
      ("elite_frac", 0 < cfg["elite_frac"] <= 1, "in (0, 1]"),
      ("search_std", 0 < cfg["search_std"] < math.inf, "a number > 0"),
      ("temperature", 0 < cfg["temperature"] < math.inf, "a number > 0"),
      ("reps_epsilon", 0 < cfg["reps_epsilon"] < math.inf, "a number > 0"),
      ("ml_lr", 0 < cfg["ml_lr"] < math.inf, "a number > 0"),
      ("normalize_obs", not (cfg["method"] in baselines.SEARCH and cfg["normalize_obs"]),
       f"off with method {cfg['method']!r} (the parameter search scores fixed policies)"),
      ("backend", cfg["backend"] in envs.BACKENDS, f"one of {envs.BACKENDS}"),
  ]
  for name, ok, allowed in checks:
    if not ok:
      raise ValueError(f"{name} must be {allowed}, got {cfg[name]!r}")
  if cfg["backend"] == "envpool" and envpool_refusal(cfg):
    raise ValueError(f"backend must be 'gymnasium' here, got 'envpool': {envpool_refusal(cfg)}")
  trpo.check_options(delta=cfg["delta"], damping=cfg["damping"], cg_iters=cfg["cg_iters"],
                     subsample=cfg["subsample"], step_size=cfg["step_size"])


def envpool_refusal(cfg):
  """Why EnvPool cannot step this run's environments, or "" if it can: it serves the vector
  environments of the single-path methods on the MuJoCo ids of `pool.IDS`, without env_kwargs,
  wrappers or FIRE resets; vine and the parameter searches restore or run single environments."""
  if cfg["method"] == "vine" or cfg["method"] in baselines.SEARCH:
    return f"method {cfg['method']!r} steps single Gymnasium environments"
  return envs.envpool_refusal(cfg["env"], cfg["env_kwargs"], cfg["wrappers"], cfg["fire_reset"])


def make_config(given, out, resume, note=print):
  """The run's config: DEFAULTS with the options `given`, or when resuming the saved config
  (with DEFAULTS for options it predates) with the given options that may change applied, and
  noted; validated."""
  given = {k: tuple(v) if k in ("hidden", "wrappers") and isinstance(v, (list, tuple)) else v
           for k, v in given.items() if v is not None}
  if not resume:
    env = given.get("env", DEFAULTS["env"])
    family = dict(FAMILY_DEFAULTS[envs.family(env)],
                  **TASK_DEFAULTS.get(env if isinstance(env, str) else None, {}))
    if given.get("method") in baselines.SEARCH:
      family.pop("normalize_obs", None)
    cfg = {**DEFAULTS, **family, **given}
    if "backend" not in given and envpool_refusal(cfg):   # the family's EnvPool, where it can
      cfg["backend"] = DEFAULTS["backend"]
  elif not out:
    raise ValueError("resume=True needs out, the run directory holding checkpoint.npz")
  else:
    saved = checked_config(rundir.load_checkpoint(out)[0])
    saved["hidden"], saved["wrappers"] = tuple(saved["hidden"]), tuple(saved["wrappers"])
    # Compared as the checkpoint writes them: a factory or wrapper by its name.
    now, before = (json.loads(rundir.config_json(c)) for c in (dict(saved, **given), saved))
    for k in FIXED_ON_RESUME:
      if k in given and now[k] != before[k]:
        raise ValueError(f"{k} cannot change on resume (the run in {out} has {k} "
                         f"{saved[k]!r}, given {given[k]!r}); start a new run instead")
    changed = {k: v for k, v in given.items() if k not in ("steps",) + FIXED_ON_RESUME
               and v != saved[k]}
    if changed:
      note("resuming with " + ", ".join(f"{k} {saved[k]!r} -> {v!r}" for k, v in changed.items()))
    cfg = dict(saved, **given)
  validate_config(cfg)
  return cfg


def checked_config(saved):
  """A saved config (of a run to evaluate) as a run would use it: DEFAULTS for the options it
  predates, validated as `make_config` validates."""
  cfg = dict(DEFAULTS, **saved)
  validate_config(cfg)
  return cfg


# ----------------------------------------------------------------------------------------------
# The command line.
# ----------------------------------------------------------------------------------------------


def _parse_json(text):
  try:
    value = json.loads(text)
  except (ValueError, RecursionError) as e:   # RecursionError: nested beyond Python's stack
    raise argparse.ArgumentTypeError(f"--env-kwargs must be a JSON object, got {text[:80]!r} "
                                     f"({type(e).__name__}: {str(e)[:80]})")
  if not isinstance(value, dict):
    raise argparse.ArgumentTypeError(f"--env-kwargs must be a JSON object, got {text!r}")
  return value


def _parse_hidden(text):
  try:
    sizes = tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"--hidden must be comma-separated integers, got {text!r}")
  if not sizes or min(sizes) < 1:
    raise argparse.ArgumentTypeError(f"--hidden must be positive integers, got {text!r}")
  return sizes


FLAGS = [   # (option, type or choices, help) for the command line
    ("delta", float, "max mean KL δ (Eq. (12))"),
    ("gamma", float, "discount γ"),
    ("lam", float, "GAE λ"),
    ("batch", int, "environment steps per iteration (vine: the trunk length)"),
    ("num_envs", int, "parallel environments (single path)"),
    ("cg_iters", int, "conjugate-gradient iterations k"),
    ("damping", float, "added to the Fisher matrix in CG"),
    ("subsample", float, "fraction of the batch for Fisher-vector products"),
    ("estimator", ("gae", "mc"), "gae: GAE(λ) with a value function; mc: the paper's returns"),
    ("hidden", "sizes", "hidden layer sizes, e.g. 64,64"),
    ("normalize_obs", bool, "running observation normalization"),
    ("linear_policy", bool, "a linear policy (no hidden layer)"),
    ("vf_epochs", int, "value-function epochs per iteration"),
    ("vf_lr", float, "value-function Adam learning rate"),
    ("vectorization", envs.VECTORIZATION, "auto: async for Atari, sync otherwise"),
    ("backend", envs.BACKENDS, "what steps the environments: Gymnasium, or EnvPool's C++ "
     "threads (single-path methods on the MuJoCo tasks of pool.IDS; where EnvPool is not "
     "installed, the MuJoCo default is Gymnasium)"),
    ("env_kwargs", "json", "gym.make keyword arguments as JSON, e.g. '{\"ctrl_cost_weight\": 0}'"),
    ("fire_reset", bool, "Atari: FIRE after reset and after a lost life (not the paper's)"),
    ("log_std_init", float, "initial log standard deviation of a Gaussian policy"),
    ("method", ALGORITHMS, "the algorithm (Section 8): TRPO single_path or vine, an ablation, or "
     "a baseline of baselines.py"),
    ("vine_states", int, "vine: N, states in the rollout set"),
    ("vine_actions", int, "vine: K, actions (branches) per state"),
    ("vine_horizon", int, "vine: T, length of each branch rollout"),
    ("vine_q", ("policy", "uniform", "all"), "vine: q (all: every discrete action, Eq. (15))"),
    ("vine_workers", int, "vine: processes for the branch rollouts (1: in this process)"),
    ("vine_copies", int, "vine: environment copies whose branches step together, one policy "
     "call per step (1: one branch at a time)"),
    ("step_size", float, "natural_gradient: the fixed step 1/λ along A⁻¹g"),
    ("population", int, "cem, cma: candidates per iteration (one episode each)"),
    ("elite_frac", float, "cem: fraction of candidates refitted to"),
    ("search_std", float, "cem, cma: initial standard deviation of the parameter search"),
    ("temperature", float, "rwr: τ in the weights exp(Â/τ) (Â standardised)"),
    ("reps_epsilon", float, "reps: the KL bound ε"),
    ("ml_epochs", int, "rwr, reps: Adam epochs of the weighted maximum-likelihood fit"),
    ("ml_lr", float, "rwr, reps: Adam learning rate of that fit"),
]


def parser():
  """The command line's argparse parser: the run flags and one flag per option of FLAGS.
  Option flags default to None (not given), so that --resume can tell what the user asked."""
  ap = argparse.ArgumentParser(
      prog="train.py", description="Train a policy with TRPO (Schulman et al., 2015).")
  ap.add_argument("--env", help=f"Gymnasium id (default: {DEFAULTS['env']})")
  ap.add_argument("--steps", type=int,
                  help=f"environment steps in total (default: {DEFAULTS['steps']})")
  ap.add_argument("--seed", type=int, help=f"random seed (default: {DEFAULTS['seed']}; "
                  "with --eval: 12345)")
  ap.add_argument("--out", help="run directory (default: runs/ENV-seedS)")
  ap.add_argument("--overwrite", action="store_true", help="replace the run in --out")
  ap.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
  ap.add_argument("--eval", metavar="DIR", help="evaluate the policy saved in DIR")
  ap.add_argument("--episodes", type=int, help="episodes for --eval (default: 10)")
  ap.add_argument("--video", metavar="FILE.mp4", help="with --eval: record the episodes")
  ap.add_argument("--processes", type=int, default=1, help="data-parallel processes on this "
                  "machine, each sampling its share of the batch (default: 1)")
  ap.add_argument("--coordinator", metavar="HOST:PORT", help="several hosts: process 0's "
                  "address, with --num-processes and --process-id (see parallel.py)")
  ap.add_argument("--coordinator-timeout", type=float, metavar="SECONDS",
                  help=f"with --coordinator: how long to wait for every process (default: "
                  f"{parallel.TIMEOUT})")
  ap.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
  ap.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
  for name, kind, help_text in FLAGS:
    flag = "--" + name.replace("_", "-")
    by_family = "".join(f"; {f}: {d[name]}" for f, d in (*FAMILY_DEFAULTS.items(),
                                                          *TASK_DEFAULTS.items()) if name in d)
    help_text = f"{help_text} (default: {DEFAULTS[name]}{by_family})"
    if kind is bool:   # --flag / --no-flag: either wins over the environment family's default
      ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    elif isinstance(kind, tuple):
      ap.add_argument(flag, choices=kind, help=help_text)
    else:
      ap.add_argument(flag, type={"sizes": _parse_hidden, "json": _parse_json}.get(kind, kind),
                      help=help_text)
  return ap


def fail(message, prog="train.py"):
  """The command line's one-line error on stderr; returns exit status 2."""
  print(f"{prog}: error: {message}", file=sys.stderr)
  return 2


def flag_error(args):
  """The first flag that cannot take effect as given, as a one-line message; None if all can:
  a flag is refused rather than ignored."""
  hosts = [args.coordinator, args.num_processes, args.process_id]
  cores = os.cpu_count() or 1
  checks = [
      (1 <= args.processes <= cores, f"--processes must be from 1 to this machine's {cores} "
       f"cores, got {args.processes}"),
      (all(h is None for h in hosts) or (None not in hosts and args.num_processes >= 2 and
                                         0 <= args.process_id < args.num_processes),
       "several hosts take --coordinator HOST:PORT --num-processes N (N >= 2) --process-id I "
       "(0 <= I < N), all three"),
      (args.coordinator is None or re.fullmatch(r"[^:\s]+:\d{1,5}", args.coordinator),
       f"--coordinator must be HOST:PORT, got {args.coordinator!r}"),
      (args.coordinator_timeout is None or (args.coordinator and 0 < args.coordinator_timeout
                                            < 1e6), "--coordinator-timeout takes seconds in "
       f"(0, 1e6) and goes with --coordinator, got {args.coordinator_timeout}"),
      (args.processes == 1 or (args.coordinator is None and not args.eval),
       "--processes N trains with N processes on this machine: not with --eval or --coordinator"),
      (all(getattr(args, k) != "" for k in ("eval", "resume", "out")),
       "--eval, --resume and --out take a run directory, not an empty string"),
      (args.eval or (args.video is None and args.episodes is None),
       "--video and --episodes go with --eval DIR"),
      (args.episodes is None or args.episodes >= 1, f"--episodes must be >= 1, got "
       f"{args.episodes}"),
      (not args.eval or args.seed is None or 0 <= args.seed < 2**32,
       f"--seed must be an integer in [0, 2**32), got {args.seed}"),
  ]
  return next((message for ok, message in checks if not ok), None)


def run_command(args, callback=None):
  """Evaluates, resumes or starts the run the parsed flags ask for (callback as in `train`);
  returns the exit status."""
  given = {k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None}
  if args.eval:
    extra = ["--resume"] * bool(args.resume) + ["--out"] * bool(args.out) + \
        ["--overwrite"] * args.overwrite + [f"--{k.replace('_', '-')}" for k in given
                                            if k != "seed"]
    if extra:
      return fail(f"--eval takes only --episodes and --seed, not {extra[0]}")
    played = evaluate_episodes(args.eval, args.episodes or 10, given.get("seed", 12345),
                               args.video)
    returns = [e["return"] for e in played]
    for i, e in enumerate(played):
      moved = "" if e["distance"] is None else f", x_position at the end {e['distance']:.2f}"
      print(f"episode {i + 1}: return {e['return']:.2f}, {e['length']} steps{moved}")
    print(f"mean_return: {np.mean(returns):.2f} ± {np.std(returns):.2f} (std over "
          f"{len(returns)} episodes)")
    return 0
  if args.resume:
    if args.overwrite or (args.out and args.out != args.resume):
      return fail("--resume DIR continues the run in DIR: it takes no --out or --overwrite")
    train(out=args.resume, resume=True, callback=callback, **given)
    return 0
  train(out=args.out, overwrite=args.overwrite, callback=callback, **given)
  print(f"saved to {args.out}")
  return 0


def interrupted(args):
  """The one-line message for a run stopped by SIGTERM or Ctrl-C: what its checkpoint holds."""
  if args.eval:
    return "interrupted"
  try:
    iteration = int(rundir.load_checkpoint(args.resume or args.out)[1]["iteration"])
  except ValueError:
    return "interrupted before the first iteration completed; no checkpoint was written"
  return f"interrupted; the checkpoint holds iteration {iteration}, the last completed"


def main(argv=None):
  """python train.py [--env ID] [--steps N] [--seed S] [--out DIR] [hyperparameters];
  python train.py --resume DIR [--steps N]; python train.py --eval DIR [--episodes K]."""
  ap = parser()
  ap.error = lambda message: sys.exit(fail(message))   # argparse's errors, as one line too
  argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
  args = ap.parse_args(argv)
  if flag_error(args):
    return fail(flag_error(args))
  if args.processes > 1:
    rest = [a for i, a in enumerate(argv) if not a.startswith("--processes") and
            (i == 0 or argv[i - 1] != "--processes")]
    return parallel.launch(rest, args.processes)
  if args.coordinator:
    parallel.end_with_launcher()
    try:
      parallel.initialize(args.coordinator, args.num_processes, args.process_id,
                          args.coordinator_timeout or parallel.TIMEOUT)
    except ValueError as e:
      return fail(str(e))
  if not (args.eval or args.resume or args.out):
    args.out = f"runs/{(args.env or DEFAULTS['env']).replace('/', '_')}-seed" \
        f"{DEFAULTS['seed'] if args.seed is None else args.seed}"

  # `kill PID` (SIGTERM) stops a run as Ctrl-C does, and Ctrl-C works even for a run started in
  # the background (where the shell sets SIGINT to be ignored): both end in the one-line message
  # below, with the last completed iteration in the (atomically written) checkpoint and log.
  # With several processes, every one must stop at the same iteration boundary (one left alone
  # in a collective waits for its peer for ever), so they only note the signal and agree below.
  received = []
  def interrupt(signum, frame):
    received.append(signum)
    if not (args.coordinator or rundir.in_record_iteration(frame)):   # stop once both agree
      raise KeyboardInterrupt

  # Held back there, or raised inside a garbage-collector callback (JAX has one) or destructor,
  # where Python prints and drops it: the run then stops after the iteration, written in full.
  def stop_if_received(record):
    if parallel.any_process(bool(received)):
      raise KeyboardInterrupt
  previous, hook = {}, sys.unraisablehook
  if threading.current_thread() is threading.main_thread():
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    sys.unraisablehook = lambda u: None if u.exc_type is KeyboardInterrupt else hook(u)
  try:
    return run_command(args, stop_if_received)
  except ValueError as e:
    return fail(str(e).splitlines()[0])
  except OSError as e:    # a full disk, a directory that cannot be written
    return fail(f"{e.strerror or type(e).__name__}: {e.filename or ''}".rstrip(": "))
  except KeyboardInterrupt:   # the message once, from process 0 when there are several
    return fail(interrupted(args)) if jax.process_index() == 0 else 2
  finally:   # main() may be called from other code (the tests): give back its handlers
    for sig, handler in previous.items():
      signal.signal(sig, handler)
    sys.unraisablehook = hook


if __name__ == "__main__":
  sys.exit(main())
