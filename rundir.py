"""The run directory: what a training run writes and what resuming or evaluating reads.

DIR/checkpoint.npz holds the training state (flat policy and value parameters, the PRNG key,
the counters, the observation statistics, a baseline's search state) and the run's config as
JSON; it is rewritten atomically (a temporary file, then a rename) after every iteration.
DIR/log.jsonl holds one JSON object per iteration. Both loops use these functions: the TRPO
loop of `train.py` and the Section 8 baselines' loop of `baselines.py`; `load_policy` turns a
saved run into a policy and its environment. `build` makes what a config describes (the
environments, the policy of Appendix D that fits them, the value network).
"""

import json
import math
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import envs
import sampling
import value


def build(cfg, single_env=False):
  """What a config describes: {"env", "obs" (first observations), "policy", "value" (stax
  (init, apply) of V), "obs_shape"}.

  The environment is a vector env of cfg["num_envs"] copies, or with `single_env` one
  environment whose state can be saved and restored (vine, Section 5.2; the parameter searches).
  """
  if single_env:
    env, obs = envs.make_single(cfg["env"], cfg["seed"])
    obs_space, action_space = env.observation_space, env.action_space
  else:
    env, obs = envs.make(cfg["env"], cfg["num_envs"], cfg["seed"], cfg["vectorization"])
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
          "stats": sampling.obs_stats_init(obs_shape) if cfg["normalize_obs"] else None,
          "key": key, "iteration": 0, "steps": 0, "seconds": 0.0}


def start(cfg, out, resume, single_env=False):
  """(run, state, checkpoint path or None) for a training loop: run is what `build` makes for
  the config plus "saved" (the checkpoint's arrays when resuming, else None); state is the
  state at iteration 0 or, resuming, the checkpoint's (episodes restart: the simulator state
  is not checkpointed); DIR is prepared by `open_run`."""
  run = build(cfg, single_env)
  state, run["saved"] = init_state(cfg, run), None
  if resume:
    run["saved"] = load_checkpoint(out)[1]
    state = restore_state(state, run["saved"])
    run["obs"] = run["env"].reset(seed=cfg["seed"] + 7919 * state["iteration"])[0]
  return run, state, open_run(out, resume, state["iteration"]) if out else None


def save_checkpoint(path, state, cfg, extra=None):
  """Writes the state of `init_state` (plus `extra` arrays) to `path` atomically: a temporary
  file in the same directory, fsync, then os.replace."""
  arrays = {
      "policy": np.asarray(ravel_pytree(state["params"])[0]),
      "value": np.asarray(ravel_pytree(state["vparams"])[0]),
      "key": np.asarray(jax.random.key_data(state["key"])),
      "iteration": np.int64(state["iteration"]), "steps": np.int64(state["steps"]),
      "seconds": np.float64(state["seconds"]), "config": np.array(json.dumps(cfg)),
  }
  if state["stats"] is not None:
    arrays.update({f"stats_{k}": np.asarray(v) for k, v in state["stats"].items()})
  arrays.update(extra or {})
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_checkpoint(run_dir):
  """(config, arrays) from DIR/checkpoint.npz: the arrays `save_checkpoint` wrote."""
  path = os.path.join(run_dir, "checkpoint.npz")
  if not os.path.exists(path):
    raise ValueError(f"no checkpoint at {path}")
  with np.load(path) as z:
    cfg = json.loads(str(z["config"]))
    cfg["hidden"] = tuple(cfg["hidden"])
    data = {k: z[k] for k in z.files}
  return cfg, data


def restore_state(state, data):
  """The state of `init_state` with the saved arrays of `load_checkpoint` put in."""
  key = state["key"]
  stats = state["stats"]
  return dict(
      state, params=ravel_pytree(state["params"])[1](jnp.asarray(data["policy"])),
      vparams=ravel_pytree(state["vparams"])[1](jnp.asarray(data["value"])),
      key=(jax.random.wrap_key_data(jnp.asarray(data["key"]))
           if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jnp.asarray(data["key"])),
      stats=None if stats is None else {k: data[f"stats_{k}"] for k in stats},
      **{k: data[k].item() for k in ("iteration", "steps", "seconds")})


def open_run(out, resume, iteration):
  """Prepares DIR for writing: creates it, and keeps exactly the log lines of the iterations
  the checkpoint holds (resume) or starts an empty log. Returns the checkpoint path."""
  os.makedirs(out, exist_ok=True)
  log_path = os.path.join(out, "log.jsonl")
  if resume and os.path.exists(log_path):
    with open(log_path) as f:
      kept = [l for l in f if l.strip() and json.loads(l)["iteration"] <= iteration]
    with open(log_path, "w") as f:
      f.writelines(kept)
  elif not resume:
    open(log_path, "w").close()
  return os.path.join(out, "checkpoint.npz")


def record_iteration(ckpt_path, state, cfg, record, extra=None):
  """Saves the checkpoint, then appends the record to log.jsonl as strict JSON (readable by jq
  and other tools): a quantity a method does not have (KL for CEM) is null, not NaN."""
  save_checkpoint(ckpt_path, state, cfg, extra)
  with open(os.path.join(os.path.dirname(ckpt_path), "log.jsonl"), "a") as f:
    f.write(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                        for k, v in record.items()}, allow_nan=False) + "\n")


def loop(cfg, state, carry, iterate, ckpt=None, log=print, extra=None):
  """Runs `iterate` until cfg["steps"] environment steps are done: the bookkeeping both
  training loops share.

  iterate(state, carry, keys) -> (result, carry) performs one iteration with three fresh PRNG
  keys; result holds the new "params", "vparams", "stats" (and "search" for a baseline), and
  the iteration's "info" (of `trpo.step`), "episodes", "steps" and "vf_loss". carry is what
  continues across iterations without being checkpointed (observations, a vine trunk). After
  each iteration the state is checkpointed (with extra(state) arrays) and its record logged.
  Returns (state, the records).
  """
  history = []
  while state["steps"] < cfg["steps"]:
    t0 = time.perf_counter()
    key, *keys = jax.random.split(state["key"], 4)
    result, carry = iterate(state, carry, keys)
    # JAX dispatches asynchronously: wait for the update itself before reading the clock.
    jax.block_until_ready((result["params"], result["vparams"], result["info"]))
    seconds = time.perf_counter() - t0
    state = dict(state, **{k: result[k] for k in ("params", "vparams", "stats", "search")
                           if k in result},
                 key=key, iteration=state["iteration"] + 1,
                 steps=state["steps"] + result["steps"], seconds=state["seconds"] + seconds)
    history.append(iteration_record(state, result, seconds))
    if ckpt:
      record_iteration(ckpt, state, cfg, history[-1], extra(state) if extra else None)
    log(format_record(history[-1]))
  return state, history


def iteration_record(state, result, seconds):
  """The log record of an iteration (one line of log.jsonl)."""
  info = result["info"]
  return {
      "iteration": state["iteration"], "steps": state["steps"],
      "episodes": len(result["episodes"]), "mean_return": mean_return(result["episodes"]),
      "kl": float(info["kl"]), "surrogate_improve": float(info["actual_improve"]),
      "backtracks": int(info["backtracks"]), "accepted": bool(info["accepted"]),
      "vf_loss": result["vf_loss"], "steps_per_second": result["steps"] / seconds,
      "seconds": state["seconds"]}


def mean_return(episodes):
  """Mean return of the episodes that ended in this iteration; None if none did (a stalled or
  long episode must not repeat an earlier iteration's number in the log)."""
  return float(np.mean([r for r, _ in episodes])) if episodes else None


def format_record(record):
  """The one line per iteration printed while training."""
  ret = "-" if record["mean_return"] is None else f"{record['mean_return']:9.2f}"
  return (f"iter {record['iteration']:4d}  steps {record['steps']:9d}  episodes "
          f"{record['episodes']:4d}  return {ret:>9s}  kl {record['kl']:.5f}  "
          f"improve {record['surrogate_improve']:+.4f}  backtracks {record['backtracks']:2d}  "
          f"{record['steps_per_second']:7.0f} steps/s")


def load_policy(run_dir, seed):
  """The policy saved in DIR/checkpoint.npz, in one fresh environment of its task: {"config",
  "env" (a vector env of 1), "obs" (its first observation), "policy", "params", "stats"
  (observation statistics or None)}."""
  cfg, data = load_checkpoint(run_dir)
  cfg = dict(cfg, num_envs=1, seed=seed)
  built = build(cfg)
  state = restore_state(init_state(cfg, built), data)
  return {"config": cfg, "env": built["env"], "obs": built["obs"], "policy": built["policy"],
          "params": state["params"], "stats": state["stats"]}
