"""The run directory: what a training run writes and what resuming or evaluating reads.

DIR/checkpoint.npz holds the training state (flat policy and value parameters, the PRNG key,
the counters, the observation statistics, a baseline's search state) and the run's config as
JSON; it is rewritten atomically (a temporary file, then a rename) after every iteration.
DIR/log.jsonl holds one JSON object per iteration; DIR/lock names the process writing the run.
train.py's loop writes them (`record_iteration`); resuming reads them back (`load_checkpoint`,
`open_run`), and so do evaluation and plot.py. This module steps no simulator: what a config
makes (environments, networks) is train.py's `build`.
"""

import errno
import fcntl
import json
import math
import os
import stat
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import obsnorm


def env_options(cfg):
  """The keyword arguments of `envs.make` and `envs.make_single` beyond the id that a config
  holds: env_kwargs, wrappers, fire_reset. A config read back from a checkpoint names the
  wrappers (and a factory) it was trained with; those must be passed again."""
  missing = [w for w in (cfg["env"], *cfg["wrappers"]) if isinstance(w, str) and w.startswith(
      "python:")]
  if missing:
    raise ValueError(f"the run was made with {', '.join(missing)}, which a checkpoint cannot "
                     "hold: pass the same env factory or wrappers again (from Python)")
  return {"env_kwargs": cfg["env_kwargs"], "wrappers": tuple(cfg["wrappers"]),
          "fire_reset": cfg["fire_reset"]}


def config_json(cfg):
  """The config as JSON (as checkpoints hold it): an env factory or a wrapper, which is code,
  is written as its name, "python:module.name"."""
  name = lambda f: f if isinstance(f, str) else \
      f"python:{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
  return json.dumps(dict(cfg, env=name(cfg["env"]), wrappers=[name(w) for w in cfg["wrappers"]]))


REQUIRED = ("policy", "value", "key", "iteration", "steps", "seconds", "config")
# With them, the last record, the observation statistics and a search method's state.
KNOWN = REQUIRED + ("record", "stats_mean", "stats_var", "stats_count", "search_mean",
                    "search_std", "search_costs")
ENTRY_LIMIT = 2**28   # bytes of all entries, uncompressed: far above a run's, below a machine's
LOG_LIMIT = 2**30     # bytes of log.jsonl: about two million iterations' records


def open_regular(path, flags, limit=None):
  """os.open(path, flags) for a regular file of at most `limit` bytes, or ValueError in one line:
  a symbolic link is not followed (nothing a run reads or writes may lead out of, or around
  in, its directory), and a FIFO, device or directory is not read (it may never end)."""
  try:
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
  except OSError as e:
    if e.errno == errno.ELOOP:
      raise ValueError(f"{path} is a symbolic link; a run directory's files must be regular "
                       "files") from None
    if e.errno in (errno.EISDIR, errno.ENXIO):   # a directory to write; a socket
      raise ValueError(f"{path} is not a regular file (it is a "
                       f"{_kind(os.stat(path).st_mode)})") from None
    raise
  info = os.fstat(fd)
  if not stat.S_ISREG(info.st_mode) or (limit is not None and info.st_size > limit):
    os.close(fd)
    raise ValueError(f"{path} is not a regular file (it is a {_kind(info.st_mode)})"
                     if not stat.S_ISREG(info.st_mode) else
                     f"{path} holds {info.st_size:,} bytes, more than a run's (at most "
                     f"{limit:,})")
  return fd


def _kind(mode):
  return ("directory" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else
          "socket" if stat.S_ISSOCK(mode) else "device")


def _atomic_write(path, write):
  """write(file) into a temporary file beside `path`, fsync, then os.replace: a reader or a
  kill sees the old file or the new one, never a part. Stale temporaries of a killed write are
  removed by `open_run`."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                             prefix=os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _json_record(record):
  """One strict-JSON log line (readable by jq and other tools): a quantity a method does not
  have (KL for CEM) is null, not NaN."""
  return json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                     for k, v in record.items()}, allow_nan=False) + "\n"


def save_checkpoint(path, state, cfg, extra=None, record=None):
  """Writes the state of `init_state` (plus `extra` arrays, and the last log record) to `path`
  atomically. Only plain numeric and string arrays: loading never unpickles anything."""
  arrays = {
      "policy": np.asarray(ravel_pytree(state["params"])[0]),
      "value": np.asarray(ravel_pytree(state["vparams"])[0]),
      "key": np.asarray(jax.random.key_data(state["key"])),
      "iteration": np.int64(state["iteration"]), "steps": np.int64(state["steps"]),
      "seconds": np.float64(state["seconds"]), "config": np.array(config_json(cfg)),
  }
  if state["stats"] is not None:
    arrays.update({f"stats_{k}": np.asarray(v) for k, v in state["stats"].items()})
  if record is not None:
    arrays["record"] = np.array(_json_record(record))
  arrays.update(extra or {})
  _atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(run_dir):
  """(config, arrays) from DIR/checkpoint.npz: the arrays `save_checkpoint` wrote. Never
  unpickles (allow_pickle=False); a file that is not such a checkpoint is a ValueError."""
  path = os.path.join(run_dir, "checkpoint.npz")
  if not os.path.lexists(path):
    raise ValueError(f"no checkpoint at {path}")
  with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as f:
    try:   # only the entries a checkpoint has, of bounded size in all, are read at all
      with np.load(f, allow_pickle=False) as z:
        names = [k for k in z.files if k in KNOWN]
        sizes = {k: z.zip.getinfo(k + ".npy").file_size for k in names}
        data = {k: z[k] for k in names} if sum(sizes.values()) <= ENTRY_LIMIT else {}
    except Exception as e:  # noqa: BLE001 - whatever numpy raises: one message, and no advice
      raise ValueError(f"{path} is not a readable checkpoint of train.py (damaged, cut short "
                       f"or another kind of file: {type(e).__name__})") from None
  if sum(sizes.values()) > ENTRY_LIMIT:
    big = max(sizes, key=sizes.get)
    raise ValueError(f"{path} is not a checkpoint of train.py: its entries hold "
                     f"{sum(sizes.values()):,} bytes (at most {ENTRY_LIMIT:,}; {big!r} "
                     f"{sizes[big]:,})")
  missing = [k for k in REQUIRED if k not in data]
  if missing:
    raise ValueError(f"{path} is not a checkpoint of train.py: it lacks {missing}")
  kinds = {"iteration": "iu", "steps": "iu", "seconds": "iuf", "config": "U", "record": "U"}
  bad = [k for k in kinds if k in data and (np.ndim(data[k]) or data[k].dtype.kind not in kinds[k]
                                           or (kinds[k] != "U" and not 0 <= data[k] < 2**62))]
  cfg, record = (_json_object(data, k) for k in ("config", "record"))
  bad += [k for k, v in (("config", cfg), ("record", record))
          if k in data and k not in bad and not (isinstance(v, dict) and (k == "config" or (
              type(v.get("iteration")) is int and v["iteration"] == data["iteration"])))]
  if bad:
    raise ValueError(f"{path} is not a checkpoint of train.py: bad entries {bad}")
  return cfg, data


def _json_object(data, name):
  """The JSON text of entry `name` decoded, or None."""
  try:
    return json.loads(str(data[name])) if name in data and data[name].dtype.kind == "U" else None
  except (json.JSONDecodeError, RecursionError):   # not JSON, or nested beyond Python's stack
    return None


def check_sizes(cfg, built, data):
  """ValueError if the saved parameter vectors do not fit the networks the config builds,
  counted from their shapes alone (`jax.eval_shape`): a config that lies allocates nothing."""
  obs_shape, key = tuple(built["obs_shape"]), jax.random.PRNGKey(0)
  trees = {"policy": lambda k: built["policy"]["init"](k, obs_shape),
           "value": lambda k: built["value"][0](k, (-1,) + obs_shape)[1]}
  for name, init in trees.items():
    size = sum(x.size for x in jax.tree_util.tree_leaves(jax.eval_shape(init, key)))
    if np.shape(data[name]) != (size,):
      raise ValueError(f"the checkpoint's {name} has {np.shape(data[name])} parameters, but its "
                       f"config (env {cfg['env']}, hidden {list(cfg['hidden'])}, linear_policy "
                       f"{cfg['linear_policy']}) builds {size}")
    if data[name].dtype.kind != "f" or not np.all(np.isfinite(data[name])):
      raise ValueError(f"the checkpoint's {name} parameters are not all finite numbers")


def restore_state(state, data, cfg):
  """The state of `init_state` with the saved arrays of `load_checkpoint` put in (their sizes
  checked by `check_sizes` first)."""
  key = state["key"]
  stats = state["stats"]
  shape = np.shape(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                   else key)
  if np.shape(data["key"]) != shape or data["key"].dtype != np.uint32:
    raise ValueError(f"the checkpoint's random key is {data['key'].dtype} of shape "
                     f"{np.shape(data['key'])}, not uint32 of shape {shape}")
  for k in () if stats is None else ("mean", "var"):
    saved = np.shape(data[f"stats_{k}"]) if f"stats_{k}" in data else None
    if saved != np.shape(stats[k]):
      raise ValueError(f"the checkpoint's observation statistics are for observations of shape "
                       f"{saved}, but env {cfg['env']} gives {np.shape(stats[k])} (Atari runs "
                       "saved with 84×84 frames cannot be loaded since frames are 42×42)")
  if stats is not None:
    why = obsnorm.stats_refusal({k: data.get(f"stats_{k}") for k in stats})
    if why:
      raise ValueError(f"the checkpoint's observation statistics are not valid: {why}")
  return dict(
      state, params=ravel_pytree(state["params"])[1](jnp.asarray(data["policy"])),
      vparams=ravel_pytree(state["vparams"])[1](jnp.asarray(data["value"])),
      key=(jax.random.wrap_key_data(jnp.asarray(data["key"]))
           if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jnp.asarray(data["key"])),
      stats=None if stats is None else {k: data[f"stats_{k}"] for k in stats},
      **{k: data[k].item() for k in ("iteration", "steps", "seconds")})


def read_log(out, note=print):
  """The records of DIR/log.jsonl. A partial last line (a kill in mid-write) is dropped with a
  note; any other line that is not an iteration record is a ValueError."""
  path = os.path.join(out, "log.jsonl")
  if not os.path.lexists(path):
    return []
  with os.fdopen(open_regular(path, os.O_RDONLY, LOG_LIMIT), "rb") as f:
    raw = f.read(LOG_LIMIT + 1)
  try:
    lines = raw.decode("utf-8").split("\n")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not UTF-8 text (byte {e.start}); the log is damaged") from None
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except RecursionError:
      raise ValueError(f"{path} line {i + 1} is nested too deeply to be a record") from None
    except json.JSONDecodeError:
      if i == len(lines) - 1:          # no newline after it: the write was cut short
        note(f"{path}: dropped a partial last line (a write was cut short)")
        continue
      raise ValueError(f"{path} line {i + 1} is not JSON; the log is damaged") from None
    if not isinstance(record, dict) or type(record.get("iteration")) is not int:
      raise ValueError(f"{path} line {i + 1} is not an iteration record (no 'iteration')")
    if records and record["iteration"] != records[-1]["iteration"] + 1:
      raise ValueError(f"{path} line {i + 1} holds iteration {record['iteration']} after "
                       f"{records[-1]['iteration']}: the iterations of a log count up by one")
    records.append(record)
  return records


def hold(out):
  """Takes DIR/lock for this process (an exclusive `flock`, which the operating system releases
  when the process ends, however it ends) and returns the open lock file; close it to let go.
  Raises ValueError naming the holder if another process writes the run."""
  lock = os.fdopen(open_regular(os.path.join(out, "lock"), os.O_RDWR | os.O_CREAT, 4096), "r+")
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    message = f"{out} is being written by another run (process {lock.read(64).strip() or '?'}); "
    lock.close()
    raise ValueError(message + "wait for it to end or stop it, or use another directory") from None
  lock.truncate(0)
  print(os.getpid(), file=lock, flush=True)
  return lock


def open_run(out, resume, data=None, overwrite=False, note=print):
  """Prepares DIR for writing, held by this process alone (`hold`); returns (the checkpoint
  path, the lock file to close when the run ends).

  A new run refuses a DIR that holds a run unless `overwrite`. Resuming, the checkpoint is the
  authority: the log keeps exactly the iterations it holds (the last one from the copy in the
  checkpoint if a kill came between the two writes), rewritten atomically. Stale temporaries
  of a killed checkpoint write are removed.
  """
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise ValueError(f"cannot make the run directory {out!r}: {e.strerror}") from None
  lock = hold(out)   # before anything is read or removed: another writer's files are its own
  try:
    return _open_held(out, resume, data, overwrite, note), lock
  except BaseException:
    lock.close()
    raise


def _open_held(out, resume, data, overwrite, note):
  log_path, ckpt_path = os.path.join(out, "log.jsonl"), os.path.join(out, "checkpoint.npz")
  for path in (log_path, ckpt_path):   # replaced atomically below, but never in a link's place
    if os.path.islink(path):
      raise ValueError(f"{path} is a symbolic link; a run directory's files must be regular "
                       "files")
  for name in os.listdir(out):
    if name.endswith(".tmp") and name.startswith(("checkpoint.npz.", "log.jsonl.", "tmp")):
      os.remove(os.path.join(out, name))
  # A log with no record and no checkpoint (a run stopped before its first iteration) is no run.
  if not resume and not overwrite and (os.path.exists(ckpt_path) or read_log(out, note)):
    raise ValueError(f"{out} already holds a run; continue it with --resume {out}, or replace "
                     "it with --overwrite")
  records = []
  if resume:
    iteration = int(data["iteration"])
    records = [r for r in read_log(out, note) if r["iteration"] <= iteration]
    if (not records or records[-1]["iteration"] < iteration) and "record" in data:
      records.append(json.loads(str(data["record"])))
  _atomic_write(log_path, lambda f: f.write("".join(map(_json_record, records)).encode()))
  return ckpt_path


def record_iteration(ckpt_path, state, cfg, record, extra=None):
  """Saves the checkpoint (with a copy of the record), then appends the record to log.jsonl.
  `train.main` holds back SIGTERM and Ctrl-C until both are written (`in_record_iteration`);
  after a kill it cannot catch the log may lack the checkpoint's last iteration, which
  resuming restores from the checkpoint's copy."""
  save_checkpoint(ckpt_path, state, cfg, extra, record)
  log = os.path.join(os.path.dirname(ckpt_path), "log.jsonl")
  with os.fdopen(open_regular(log, os.O_WRONLY | os.O_APPEND), "ab") as f:
    f.write(_json_record(record).encode())
    f.flush()
    os.fsync(f.fileno())


def in_record_iteration(frame):
  """Whether the code at `frame` (a signal handler's) was called by `record_iteration`."""
  while frame is not None and frame.f_code is not record_iteration.__code__:
    frame = frame.f_back
  return frame is not None
