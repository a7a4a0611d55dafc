"""Tests of the run directory and the command line under faults: crafted and damaged
checkpoints, kills at chosen points (by patching the writes, or by signals to a subprocess),
a full disk, conflicting flags. Each case is what a user or an operator could do."""

import errno
import io
import json
import math
import re
import os
import signal
import subprocess
import sys
import time
import zipfile

import gymnasium as gym
import numpy as np
import pytest

import rundir
import train

ROOT = os.path.dirname(os.path.abspath(__file__))
SMALL = ["--steps", "2048", "--batch", "1024"]      # two CartPole iterations


def _cli(capsys, *argv):
  """(exit status, stdout lines, stderr lines) of `python train.py ARGV`, run in-process."""
  capsys.readouterr()
  code = train.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out.strip().splitlines(), err.strip().splitlines()


def _iterations(run):
  return [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A finished two-iteration CartPole run directory (copied by the tests that change it)."""
  run = tmp_path_factory.mktemp("saved") / "run"
  assert train.main(["--out", str(run)] + SMALL) == 0
  return run


def _copy(src, dst):
  dst.mkdir()
  for f in src.iterdir():
    (dst / f.name).write_bytes(f.read_bytes())
  return dst


def _one_line_error(code, err, *fragments):
  assert code == 2 and len(err) == 1 and err[0].startswith("train.py: error: "), err
  for fragment in fragments:
    assert fragment in err[0], err


# ----------------------------------------------------------------------------------------------
# Loading never executes code.
# ----------------------------------------------------------------------------------------------

def _crafted_npz(path, entries, name, marker):
  """An .npz like `np.savez(path, **entries)`, but entry `name` is an object array whose pickle
  (raw protocol-0 opcodes: the global builtins.open called on (marker, "w")) creates the file
  `marker` when unpickled: what an attacker would put in a shared run directory."""
  payload = b"cbuiltins\nopen\n(V" + str(marker).encode() + b"\nVw\ntR."
  with zipfile.ZipFile(path, "w") as z:
    for key, value in dict(entries, **{name: None}).items():
      f = io.BytesIO()
      if key == name:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        f.write(payload)
      else:
        np.lib.format.write_array(f, np.asarray(value))
      z.writestr(key + ".npy", f.getvalue())


def test_a_crafted_pickle_in_any_checkpoint_entry_is_never_loaded(saved_run, tmp_path, capsys):
  with np.load(saved_run / "checkpoint.npz") as z:
    entries = {k: z[k] for k in z.files}
  _crafted_npz(tmp_path / "probe.npz", entries, "policy", tmp_path / "probe")
  with np.load(tmp_path / "probe.npz", allow_pickle=True) as z:
    z["policy"]
  assert (tmp_path / "probe").exists()                 # the payload works when unpickled
  for name in list(entries) + ["search_mean", "search_pickle"]:
    run = tmp_path / f"run-{name}"
    run.mkdir()
    marker = tmp_path / f"executed-{name}"
    _crafted_npz(run / "checkpoint.npz", entries, name, marker)
    for argv in (["--resume", run], ["--eval", run, "--episodes", "1"]):
      code, _, err = _cli(capsys, *argv)
      assert not marker.exists(), f"{name}: loading executed code"
      if name == "search_pickle":   # a name no checkpoint has: never read at all
        assert code == 0 or argv[0] == "--resume"
        continue
      _one_line_error(code, err, str(run / "checkpoint.npz"))
      assert "allow_pickle" not in err[0]


# ----------------------------------------------------------------------------------------------
# Damaged files: one line naming the file, exit 2.
# ----------------------------------------------------------------------------------------------

def test_damaged_checkpoints_give_one_line(saved_run, tmp_path, capsys):
  good = (saved_run / "checkpoint.npz").read_bytes()
  with np.load(saved_run / "checkpoint.npz") as z:
    entries = {k: z[k] for k in z.files}
  cases = {"half": good[:len(good) // 2], "empty": b"",
           "random": np.random.default_rng(0).bytes(5000)}
  for name, content in cases.items():
    run = tmp_path / name
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(content)
    code, _, err = _cli(capsys, "--resume", run)
    _one_line_error(code, err, str(run / "checkpoint.npz"))
    assert "allow_pickle" not in err[0]
  run = tmp_path / "missing-entry"
  run.mkdir()
  np.savez(run / "checkpoint.npz", **{k: v for k, v in entries.items() if k != "value"})
  _one_line_error(*_cli(capsys, "--eval", run)[::2], "lacks ['value']")
  run = tmp_path / "a-directory"
  (run / "checkpoint.npz").mkdir(parents=True)
  _one_line_error(*_cli(capsys, "--resume", run)[::2], "it is a directory")
  run = tmp_path / "mismatch"                      # weights of another architecture
  run.mkdir()
  cfg = dict(json.loads(str(entries["config"])), hidden=[8])
  np.savez(run / "checkpoint.npz", **dict(entries, config=np.array(json.dumps(cfg))))
  _one_line_error(*_cli(capsys, "--eval", run)[::2], "policy has (4610,) parameters",
                  "env CartPole-v1, hidden [8]")
  run = tmp_path / "stats-shape"   # statistics of other observations (84×84 Atari frames)
  run.mkdir()
  cfg = dict(json.loads(str(entries["config"])), normalize_obs=True)
  np.savez(run / "checkpoint.npz", **dict(entries, config=np.array(json.dumps(cfg)),
                                          stats_mean=np.zeros(6), stats_var=np.ones(6),
                                          stats_count=np.float64(5.0)))
  _one_line_error(*_cli(capsys, "--eval", run)[::2], "observations of shape (6,)",
                  "CartPole-v1 gives (4,)")


def _with_entry(src, dst, name, header, chunks):
  """A copy of checkpoint src with one more (deflated) entry NAME.npy: an .npy header for
  `header` then the byte chunks, streamed, so that a large entry is never in memory whole."""
  dst.mkdir()
  with zipfile.ZipFile(src / "checkpoint.npz") as z_in, \
      zipfile.ZipFile(dst / "checkpoint.npz", "w", zipfile.ZIP_DEFLATED) as z_out:
    for item in z_in.infolist():
      z_out.writestr(item, z_in.read(item))
    with z_out.open(name + ".npy", "w", force_zip64=True) as f:
      np.lib.format.write_array_header_1_0(f, header)
      for chunk in chunks:
        f.write(chunk)
  return dst


def test_a_checkpoint_is_read_entry_by_entry_and_bounded(saved_run, tmp_path, capsys):
  # An entry no checkpoint has is never read, however damaged or large; an entry it has, of a
  # size no run writes, is refused in one line before it is decompressed.
  header = lambda n: {"descr": "<f8", "fortran_order": False, "shape": (n,)}
  junk = _with_entry(saved_run, tmp_path / "junk", "extra", header(10**9), [b"not floats"])
  keys = lambda run: rundir.load_checkpoint(str(run))[1].keys()
  assert keys(junk) == keys(saved_run)
  assert _cli(capsys, "--eval", junk, "--episodes", "1")[0] == 0
  n = rundir.ENTRY_LIMIT // 8 + 1
  big = _with_entry(saved_run, tmp_path / "big", "search_costs", header(n),
                    (bytes(2**24) for _ in range(-(-n * 8 // 2**24))))
  _one_line_error(*_cli(capsys, "--eval", big)[::2], "its entries hold", "'search_costs'",
                  f"(at most {rundir.ENTRY_LIMIT:,}")


@pytest.mark.parametrize("option, value", [("batch", "2048"), ("normalize_obs", "no"),
                                           ("gamma", "NaN"), ("hidden", 64), ("hidden", "64"),
                                           ("batch", 1e18), ("steps", "abc")])
def test_an_option_of_the_wrong_type_is_named(option, value, tmp_path):
  # From Python as from a saved config: a TypeError deep inside, or a value taken wrongly
  # ("no" is true), would be worse than one line naming the option.
  kind = type(train.DEFAULTS[option]).__name__
  with pytest.raises(ValueError, match=re.escape(f"{option} must be of type {kind}, got {value!r}")):
    train.train("CartPole-v1", out=str(tmp_path / "run"), **{"steps": 1024, option: value})
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, message", [
    ({"hidden": 64}, "hidden must be of type tuple"), ({"wrappers": 5}, "wrappers must be"),
    ({"env_kwargs": "abc"}, "env_kwargs must be"), ({"gamma": "NaN"}, "gamma must be"),
    ({"steps": "abc"}, "steps must be"), ({"batch": 1e18}, "batch must be"),
    # Sizes that would allocate gigabytes before the mismatch showed: counted, not built.
    ({"hidden": [16384, 16384]}, "the checkpoint's policy has (4610,) parameters"),
    ({"policy": np.full(4610, np.nan, np.float32)}, "policy parameters are not all finite"),
    ({"num_envs": 3_000_000}, "num_envs must be an integer from 1 to 1024, got 3000000"),
    ({"batch": 2**30}, "batch must be an integer from num_envs (8) to 2**24, got 1073741824"),
    ({"iteration": np.array(-5)}, "bad entries ['iteration'"),
    ({"steps": np.array(2048.5)}, "bad entries ['steps']"),
    ({"record": np.array("[1]")}, "bad entries ['record']"),
    ({"record": np.array('{"iteration": 7}')}, "bad entries ['record']"),
])
def test_a_saved_config_or_array_that_lies_gives_one_line(saved_run, tmp_path, capsys, change,
                                                          message):
  with np.load(saved_run / "checkpoint.npz") as z:
    entries = {k: z[k] for k in z.files}
  cfg = json.loads(str(entries["config"]))
  arrays = {k: v for k, v in change.items() if isinstance(v, np.ndarray)}
  cfg.update({k: v for k, v in change.items() if k not in arrays})
  (tmp_path / "run").mkdir()
  np.savez(tmp_path / "run" / "checkpoint.npz",
           **dict(entries, config=np.array(json.dumps(cfg)), **arrays))
  for flag in ("--eval", "--resume"):
    _one_line_error(*_cli(capsys, flag, tmp_path / "run")[::2], message)


def test_a_checkpoint_from_before_an_option_existed_resumes(saved_run, tmp_path, capsys):
  run = _copy(saved_run, tmp_path / "old")
  with np.load(run / "checkpoint.npz") as z:
    entries = {k: z[k] for k in z.files}
  cfg = json.loads(str(entries["config"]))
  del cfg["ml_lr"], cfg["vine_workers"]
  np.savez(run / "checkpoint.npz", **dict(entries, config=np.array(json.dumps(cfg))))
  assert _cli(capsys, "--resume", run, "--steps", "3072")[0] == 0
  assert _iterations(run) == [1, 2, 3]


@pytest.mark.parametrize("log, message", [
    ('{"iteration": 1}\n[1, 2]\n', "log.jsonl line 2 is not an iteration record"),
    ('{"iteration": true}\n', "log.jsonl line 1 is not an iteration record"),
    ('{"iteration": 1}\n{"iteration": 2}\n{"iteration": 2}\n',
     "log.jsonl line 3 holds iteration 2 after 2"),
    ('{"iteration": 2}\n{"iteration": 1}\n', "log.jsonl line 2 holds iteration 1 after 2")])
def test_log_lines_that_are_not_records_in_order_give_one_line(saved_run, tmp_path, capsys, log,
                                                                 message):
  run = _copy(saved_run, tmp_path / "run")
  (run / "log.jsonl").write_text(log)
  _one_line_error(*_cli(capsys, "--resume", run, "--steps", "4096")[::2], message)


def test_a_saved_key_of_another_shape_gives_one_line(saved_run, tmp_path, capsys):
  run = _copy(saved_run, tmp_path / "run")
  with np.load(run / "checkpoint.npz") as z:
    entries = {k: z[k] for k in z.files}
  np.savez(run / "checkpoint.npz", **dict(entries, key=np.zeros(3, np.uint32)))
  _one_line_error(*_cli(capsys, "--resume", run, "--steps", "4096")[::2],
                  "random key is uint32 of shape (3,), not uint32 of shape (2,)")


# ----------------------------------------------------------------------------------------------
# No lost data.
# ----------------------------------------------------------------------------------------------

def test_an_existing_run_is_refused_unless_overwritten(saved_run, tmp_path, capsys):
  run = _copy(saved_run, tmp_path / "run")
  before = (run / "log.jsonl").read_text()
  _one_line_error(*_cli(capsys, "--out", run, *SMALL)[::2], "already holds a run",
                  "--resume", "--overwrite")
  assert (run / "log.jsonl").read_text() == before
  assert _cli(capsys, "--out", run, "--overwrite", "--steps", "1024", "--batch", "1024")[0] == 0
  assert _iterations(run) == [1]


def test_a_kill_while_resume_rewrites_the_log_loses_nothing(saved_run, tmp_path, capsys,
                                                            monkeypatch):
  run = _copy(saved_run, tmp_path / "run")
  before = (run / "log.jsonl").read_text()

  def killed(*args):
    raise KeyboardInterrupt             # the moment the rewritten log would be moved in place
  monkeypatch.setattr(rundir.os, "replace", killed)
  code, _, err = _cli(capsys, "--resume", run, "--steps", "4096")
  assert code == 2 and "the checkpoint holds iteration 2" in err[0]
  assert (run / "log.jsonl").read_text() == before
  assert not [f for f in os.listdir(run) if f.endswith(".tmp")]


def test_log_and_checkpoint_agree_after_a_kill_between_their_writes(saved_run, tmp_path, capsys,
                                                                    monkeypatch):
  run = _copy(saved_run, tmp_path / "run")
  real_save = rundir.save_checkpoint

  def save_then_die(path, state, *args):   # the checkpoint of iteration 3 lands, its log does not
    real_save(path, state, *args)
    if state["iteration"] == 3:
      raise KeyboardInterrupt
  monkeypatch.setattr(rundir, "save_checkpoint", save_then_die)
  code, _, err = _cli(capsys, "--resume", run, "--steps", "8192")
  assert code == 2 and "the checkpoint holds iteration 3" in err[0]
  assert _iterations(run) == [1, 2]
  monkeypatch.undo()
  assert _cli(capsys, "--resume", run, "--steps", "5120")[0] == 0
  assert _iterations(run) == [1, 2, 3, 4, 5]
  assert int(rundir.load_checkpoint(str(run))[1]["iteration"]) == 5


def test_a_partial_last_log_line_and_stale_temporaries_are_cleaned_up(saved_run, tmp_path,
                                                                      capsys):
  run = _copy(saved_run, tmp_path / "run")
  with open(run / "log.jsonl", "a") as f:
    f.write('{"iteration": 3, "steps": 30')           # a kill in mid-write
  (run / "checkpoint.npz.abc123.tmp").write_bytes(b"half a checkpoint")
  (run / "tmpq1w2e3.npz.tmp").write_bytes(b"an older temporary")
  code, out, _ = _cli(capsys, "--resume", run, "--steps", "3072")
  assert code == 0 and any("dropped a partial last line" in line for line in out)
  assert _iterations(run) == [1, 2, 3]
  assert not [f for f in os.listdir(run) if f.endswith(".tmp")]


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(saved_run, tmp_path, capsys,
                                                               monkeypatch):
  run = _copy(saved_run, tmp_path / "run")
  before = (run / "checkpoint.npz").read_bytes()

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(rundir.np, "savez", full)
  _one_line_error(*_cli(capsys, "--resume", run, "--steps", "4096")[::2], "No space left")
  assert (run / "checkpoint.npz").read_bytes() == before and _iterations(run) == [1, 2]
  assert not [f for f in os.listdir(run) if f.endswith(".tmp")]


# ----------------------------------------------------------------------------------------------
# Bad input on the command line: one line, exit 2.
# ----------------------------------------------------------------------------------------------

def test_bad_places_seeds_and_environments_give_one_line(tmp_path, capsys):
  (tmp_path / "a-file").write_text("")
  for out in (tmp_path / "a-file", tmp_path / "a-file" / "run", "/proc/x"):
    _one_line_error(*_cli(capsys, "--out", out, *SMALL)[::2], "cannot make the run directory")
  for seed in ("-1", str(2**32)):
    _one_line_error(*_cli(capsys, "--seed", seed, "--out", tmp_path / "s", *SMALL)[::2],
                    "seed must be an integer in [0, 2**32)")
  _one_line_error(*_cli(capsys, "--env", "LunarLander-v3", "--out", tmp_path / "l")[::2],
                  "'LunarLander-v3' cannot be made here", "Box2D")


def test_conflicting_and_ignored_flags(saved_run, tmp_path, capsys):
  run = _copy(saved_run, tmp_path / "run")
  _one_line_error(*_cli(capsys, "--resume", run, "--env", "Pendulum-v1")[::2],
                  "env cannot change on resume")
  _one_line_error(*_cli(capsys, "--eval", run, "--resume", run)[::2], "--eval takes only")
  code, out, _ = _cli(capsys, "--resume", run, "--steps", "2048")
  assert code == 0 and out[-1].startswith("nothing to do: the run has 2048 steps")
  code, out, _ = _cli(capsys, "--resume", run, "--steps", "3072", "--delta", "0.02")
  assert code == 0 and out[0] == "resuming with delta 0.01 -> 0.02"
  assert rundir.load_checkpoint(str(run))[0]["delta"] == 0.02
  seeded = lambda s: train.evaluate(str(run), episodes=3, seed=s)
  code, out, _ = _cli(capsys, "--eval", run, "--episodes", "3", "--seed", "5")
  # "episode 1: return R, L steps": the returns as evaluate gives them, from --seed
  assert [float(re.search(r"return (-?[\d.]+),", line)[1]) for line in out[:3]] == \
      [round(r, 2) for r in seeded(5)] != [round(r, 2) for r in seeded(12345)]


@pytest.mark.parametrize("argv, message", [
    (["--processes", "0"], "--processes must be from 1 to this machine's"),
    (["--processes", "-1"], "--processes must be from 1"),
    (["--processes", "1000"], "--processes must be from 1"),
    (["--coordinator", "10.0.0.1:1234"], "several hosts take --coordinator"),
    (["--process-id", "1"], "several hosts take"),
    (["--num-processes", "2"], "several hosts take"),
    (["--coordinator", "garbage", "--num-processes", "2", "--process-id", "0"],
     "--coordinator must be HOST:PORT, got 'garbage'"),
    (["--coordinator-timeout", "5"], "--coordinator-timeout takes seconds in (0, 1e6) and goes "
     "with --coordinator"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "0",
      "--coordinator-timeout", "0"], "--coordinator-timeout takes seconds"),
    (["--video", "v.mp4"], "--video and --episodes go with --eval DIR"),
    (["--episodes", "3"], "--video and --episodes go with --eval DIR"),
    (["--eval", ""], "take a run directory, not an empty string"),
    (["--resume", ""], "take a run directory, not an empty string"),
    (["--eval", "DIR", "--seed", "-1"], "--seed must be an integer in [0, 2**32), got -1"),
    (["--eval", "DIR", "--seed", str(2**64)], "--seed must be an integer in [0, 2**32)"),
    (["--eval", "DIR", "--processes", "2"], "not with --eval"),
])
def test_flags_that_cannot_take_effect_are_refused(argv, message, tmp_path, capsys, monkeypatch):
  # Each would otherwise be ignored (a new 100k-step run, one process), or fail later with a
  # traceback; none may start anything.
  monkeypatch.chdir(tmp_path)
  _one_line_error(*_cli(capsys, *argv)[::2], message)
  assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------
# Signals and worker processes (subprocesses).
# ----------------------------------------------------------------------------------------------

def _start(argv, ignore_sigint=False):
  """`python train.py ARGV` as a subprocess; with ignore_sigint, started as `nohup ... &`
  starts it (SIGINT ignored)."""
  prefix = ["-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"] if ignore_sigint else []
  return subprocess.Popen([sys.executable] + prefix + ["train.py"] + [str(a) for a in argv],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _signal_when(proc, ready, sig=signal.SIGTERM):
  """Sends `sig` once ready() holds; returns (exit status, stderr lines). The 300 s deadline
  guards against hanging; it is not a timing assertion."""
  try:
    deadline = time.monotonic() + 300
    while not ready():
      assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
      time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  return proc.returncode, err.strip().splitlines()


def _logged(run):
  return lambda: (run / "log.jsonl").exists() and (run / "log.jsonl").read_text().strip() != ""


def test_sigterm_stops_a_background_run_with_its_checkpoint(tmp_path):
  # `kill PID` on a run started in the background must end it with the one-line message and
  # leave a checkpoint that resumes.
  run = tmp_path / "run"
  proc = _start(["--steps", "10000000", "--batch", "512", "--out", run], ignore_sigint=True)
  code, err = _signal_when(proc, _logged(run))
  cfg, state = rundir.load_checkpoint(str(run))
  last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
  assert code == 2 and err[-1] == (f"train.py: error: interrupted; the checkpoint holds "
                                   f"iteration {last['iteration']}, the last completed")
  assert cfg["env"] == "CartPole-v1" and int(state["iteration"]) == last["iteration"] >= 1


# SIGTERM sent to itself once the first iteration is logged, from inside a garbage-collector
# callback (where Python drops the handler's KeyboardInterrupt, as it did once in CI, in JAX's),
# or once the first checkpoint is written, before its log line (where CI once stopped a run).
_SIGNAL_INSIDE = """
import gc, os, signal, sys, threading
import rundir, train
log, sent = os.path.join(sys.argv[1], "log.jsonl"), []
def send():
  if not sent:
    sent.append(signal.SIGTERM)
    signal.raise_signal(signal.SIGTERM)   # runs the handler before it returns
def in_gc(phase, info):
  if threading.current_thread() is threading.main_thread() and os.path.exists(log) and \\
      os.path.getsize(log):
    send()
if sys.argv[2] == "gc":
  gc.callbacks.append(in_gc)
else:
  save = rundir.save_checkpoint
  rundir.save_checkpoint = lambda *args, **kwargs: (save(*args, **kwargs), send())
sys.exit(train.main(["--steps", "40960", "--batch", "512", "--out", sys.argv[1]]))
"""


@pytest.mark.parametrize("inside", ["gc", "checkpoint"])
def test_a_signal_inside_a_gc_callback_or_a_checkpoint_stops_the_run_where_log_agrees(
    tmp_path, inside):
  run = tmp_path / "run"
  proc = subprocess.run([sys.executable, "-c", _SIGNAL_INSIDE, str(run), inside], cwd=ROOT,
                        text=True, capture_output=True, timeout=600)
  _, state = rundir.load_checkpoint(str(run))
  assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
      f"train.py: error: interrupted; the checkpoint holds iteration {_iterations(run)[-1]}, "
      "the last completed"], proc.stderr
  assert int(state["iteration"]) == _iterations(run)[-1] < (2 if inside == "checkpoint" else 80)


# Worker processes: an Atari run's async vector env, or the vine's branch pool. A signal in
# the middle of their work: SIGTERM once the first env worker's reply is read and not the
# other's (waiting for both again hung for ever), or SIGINT to the whole process group while
# the workers work, as Ctrl-C in a terminal sends it (the workers printed tracebacks).
_SIGNAL_IN_A_STEP = """
import os, signal, sys
import gymnasium as gym
import train, workers
log, wait, sent = os.path.join(sys.argv[1], "log.jsonl"), gym.vector.AsyncVectorEnv.step_wait, []
def ready():
  return not sent and os.path.exists(log) and os.path.getsize(log) and not sent.append(1)
def step_wait(self, timeout=None):
  if sys.argv[2] == "half-read" and ready():
    self._poll_pipe_envs(None)
    self.parent_pipes[0].recv()
    signal.raise_signal(signal.SIGTERM)
  elif sys.argv[2] == "process group" and ready():
    os.killpg(0, signal.SIGINT)
  return wait(self, timeout)
gym.vector.AsyncVectorEnv.step_wait = step_wait
def branch_pool(*args, **kwargs):
  pool = pool_of(*args, **kwargs)
  run = pool["map"]
  return dict(pool, map=lambda tasks: (ready() and os.killpg(0, signal.SIGINT), run(tasks))[1])
pool_of, workers.branch_pool = workers.branch_pool, branch_pool
argv = ["--method", "vine", "--vine-workers", "2", "--batch", "500"] if sys.argv[2] == "vine" \\
    else ["--env", "ALE/Pong-v5", "--num-envs", "2", "--batch", "32", "--vf-epochs", "1"]
sys.exit(train.main(argv + ["--steps", "100000", "--out", sys.argv[1]]))
"""


@pytest.mark.parametrize("signal_in_step", ["half-read", "process group", "vine"])
def test_a_signal_in_the_middle_of_workers_work_stops_the_run_with_one_line(tmp_path,
                                                                            signal_in_step):
  run = tmp_path / "run"
  proc = subprocess.run([sys.executable, "-c", _SIGNAL_IN_A_STEP, str(run), signal_in_step],
                        cwd=ROOT, text=True, capture_output=True, timeout=300,
                        start_new_session=True)   # the process group is the run's own
  _, state = rundir.load_checkpoint(str(run))
  assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
      f"train.py: error: interrupted; the checkpoint holds iteration {_iterations(run)[-1]}, "
      "the last completed"], proc.stderr
  assert int(state["iteration"]) == _iterations(run)[-1] == 1


def test_sigterm_before_the_first_iteration_says_nothing_was_saved(tmp_path):
  run = tmp_path / "run"
  proc = _start(["--out", run, "--steps", "100000", "--batch", "100000"])
  code, err = _signal_when(proc, (run / "log.jsonl").exists)
  assert code == 2 and err[-1] == ("train.py: error: interrupted before the first iteration "
                                   "completed; no checkpoint was written")


def _children(pid):
  """Every live descendant of a process, from /proc."""
  kids = []
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
      continue
    if entry.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
      kids.append(int(entry))
  return kids + [d for k in kids for d in _children(k)]


def test_vine_workers_end_when_their_parent_is_killed(tmp_path):
  run, family = tmp_path / "run", []
  proc = _start(["--out", run, "--method", "vine", "--vine-workers", "2", "--steps", "10000000",
                 "--batch", "200", "--vine-states", "10"])

  def ready():                            # a first iteration done: the workers exist
    family.extend(_children(proc.pid) if _logged(run)() else [])
    return bool(family)
  _signal_when(proc, ready, signal.SIGKILL)   # no handler, no shutdown
  assert len(family) >= 2                 # the forkserver and the workers
  _assert_all_end(family)


def _assert_all_end(pids):
  """Waits up to 120 s (a guard against hanging, not a timing assertion) for every process of
  pids to end."""
  deadline = time.monotonic() + 120
  alive = pids
  while alive and time.monotonic() < deadline:
    time.sleep(0.5)
    alive = [p for p in pids if _running(p)]
  assert not alive, f"processes left running after their parent died: {alive}"


def _running(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


# ----------------------------------------------------------------------------------------------
# What users and machines do to a run: a poisoned observation, two writers, a video's name.
# ----------------------------------------------------------------------------------------------

def _poison(value):
  """An extra wrapper whose environment returns `value` in every observation entry once, at its
  600th observation (in the third 2,048-step CartPole iteration of 8 environments)."""
  def wrap(env):
    calls = [0]

    def observe(obs):
      calls[0] += 1
      return np.full_like(obs, value) if calls[0] == 600 else obs
    return gym.wrappers.TransformObservation(env, observe, env.observation_space)
  wrap.__name__ = f"poison_{value}"
  return wrap


@pytest.mark.parametrize("value", [np.inf, 1e30])
def test_a_poisoned_observation_is_refused_and_the_run_goes_on(tmp_path, value):
  run, poison = str(tmp_path / "run"), _poison(value)
  with pytest.raises(ValueError, match=r"observation value (inf|1e\+30) in environment \d at step "
                                       r"\d+ of this iteration's 256"):
    train.train("CartPole-v1", steps=16384, out=run, normalize_obs=True, wrappers=[poison],
                log=lambda line: None)
  cfg, data = rundir.load_checkpoint(run)
  assert int(data["iteration"]) == 2 and _iterations(tmp_path / "run") == [1, 2]
  assert all(np.all(np.isfinite(data[k])) and np.abs(data[k]).max() < 1e6
             for k in ("stats_mean", "stats_var"))
  # The run goes on from the last good checkpoint (its environments start afresh, so the
  # poison comes again only in the third iteration after resuming).
  done = train.train(out=run, resume=True, steps=8192, wrappers=[poison], log=lambda line: None)
  assert [r["iteration"] for r in done["history"]] == [3, 4]
  assert done["history"][-1]["mean_return"] > 9


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, capsys):
  # --resume or --overwrite on a directory whose run is still training would interleave two
  # histories in one log; the directory is held by one process at a time, and freed when it dies.
  run = tmp_path / "run"
  proc = _start(["--steps", "10000000", "--batch", "512", "--out", run])
  try:
    deadline = time.monotonic() + 300
    while not _logged(run)():
      assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
      time.sleep(0.1)
    for argv in (["--resume", run], ["--out", run, "--overwrite"] + SMALL):
      _one_line_error(*_cli(capsys, *argv)[::2], f"is being written by another run (process "
                      f"{proc.pid})")
  finally:
    proc.kill()
    proc.wait()
  code, out, err = _cli(capsys, "--resume", run, "--steps", "1")   # SIGKILL released it
  assert code == 0 and err == [] and "nothing to do" in out[-1], (out, err)


def test_a_config_that_lies_about_its_sizes_allocates_nothing(saved_run, tmp_path):
  # Hidden sizes of 16,384 would take gigabytes to build; counted from shapes they take nothing.
  # The peak memory of the evaluating process itself (os.wait4), not a time.
  with np.load(saved_run / "checkpoint.npz") as z:
    entries = {k: z[k] for k in z.files}
  cfg = dict(json.loads(str(entries["config"])), hidden=[16384, 16384])
  (tmp_path / "run").mkdir()
  np.savez(tmp_path / "run" / "checkpoint.npz", **dict(entries, config=np.array(json.dumps(cfg))))
  proc = subprocess.Popen([sys.executable, "train.py", "--eval", str(tmp_path / "run")], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  err = proc.stderr.read().decode()
  assert os.waitstatus_to_exitcode(status) == 2 and "the checkpoint's policy has" in err, err
  assert usage.ru_maxrss < 1_500_000, usage.ru_maxrss   # kilobytes: under 1.5 GB


def test_an_environment_that_fails_at_its_first_step_gives_one_line_and_no_run(tmp_path, capsys):
  # A keyword argument of the wrong type for a real parameter passes construction and fails at
  # the first step: one line, and the directory (holding no iteration) takes the next attempt.
  run = tmp_path / "run"
  _one_line_error(*_cli(capsys, "--env", "Pendulum-v1", "--env-kwargs", '{"g": "abc"}', "--out",
                        run, "--steps", "512", "--batch", "512")[::2],
                  "the environment failed at step 1 of this iteration: TypeError")
  assert _cli(capsys, "--env", "Pendulum-v1", "--env-kwargs", '{"g": 9.81}', "--out", run,
              "--steps", "512", "--batch", "512")[0] == 0


def test_the_python_api_names_its_wrong_arguments(saved_run):
  with pytest.raises(ValueError, match="episodes must be an integer >= 1, got '3'"):
    train.evaluate(str(saved_run), episodes="3")
  act = train.policy_from_run(str(saved_run))
  assert act([0.0, 0.0, 0.05, 0.0]) in (0, 1)
  with pytest.raises(ValueError, match=r"takes an observation of shape \(4,\), got \(3,\)"):
    act([0.0, 0.0, 0.05])


# ----------------------------------------------------------------------------------------------
# A run directory's files are regular files of bounded size, never links; its numbers are
# checked; processes never outlive their launcher; every error is one line.
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lock", "checkpoint.npz", "log.jsonl"])
def test_a_link_in_place_of_a_run_file_is_refused_and_followed_nowhere(saved_run, tmp_path,
                                                                       capsys, name):
  run = _copy(saved_run, tmp_path / "run")
  outside = tmp_path / "outside.txt"
  outside.write_text("a user's file\n")
  target = run / f"{name}.real"
  if name != "lock":   # the link leads to the run's own file, moved aside
    (run / name).rename(target)
  (run / name).unlink(missing_ok=True)
  (run / name).symlink_to(outside if name == "lock" else target)
  _one_line_error(*_cli(capsys, "--resume", run, "--steps", "4096")[::2],
                  f"{run / name} is a symbolic link")
  assert outside.read_text() == "a user's file\n"
  if name != "lock":
    assert target.read_bytes() == (saved_run / name).read_bytes()


def test_a_fifo_or_an_endless_log_is_refused_not_read(saved_run, tmp_path):
  import plot
  fifo, endless = _copy(saved_run, tmp_path / "fifo"), _copy(saved_run, tmp_path / "endless")
  (fifo / "log.jsonl").unlink()
  os.mkfifo(fifo / "log.jsonl")
  (endless / "log.jsonl").unlink()
  (endless / "log.jsonl").symlink_to("/dev/zero")
  for run, message in ((fifo, "is not a regular file"), (endless, "is a symbolic link")):
    # In a subprocess with a deadline: reading a FIFO would block, /dev/zero never end.
    code = (f"import sys, plot, rundir; sys.exit(plot.main([{str(run)!r}, '--out', "
            f"{str(tmp_path / 'p.png')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
    resumed = subprocess.run([sys.executable, "train.py", "--resume", str(run), "--steps",
                              "4096"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2 and resumed.stderr.count("\n") == 1, resumed.stderr
    assert message in resumed.stderr
  assert plot   # imported first so that the subprocesses' import is warm on disk


def test_a_fifo_lock_is_refused_in_one_line(saved_run, tmp_path, capsys):
  run = _copy(saved_run, tmp_path / "run")
  (run / "lock").unlink(missing_ok=True)
  os.mkfifo(run / "lock")
  _one_line_error(*_cli(capsys, "--resume", run, "--steps", "4096")[::2],
                  f"{run / 'lock'} is not a regular file")


def test_statistics_entries_are_bounded_in_total(saved_run, tmp_path, capsys):
  # Entries each under the limit but over it together: a small file that would expand into
  # gigabytes of arrays is refused before any is decompressed.
  n = rundir.ENTRY_LIMIT // 8 // 2 + 1
  header = {"descr": "<f8", "fortran_order": False, "shape": (n,)}
  first = _with_entry(saved_run, tmp_path / "one", "search_mean", header,
                      (bytes(2**24) for _ in range(-(-n * 8 // 2**24))))
  both = _with_entry(first, tmp_path / "two", "search_std", header,
                     (bytes(2**24) for _ in range(-(-n * 8 // 2**24))))
  _one_line_error(*_cli(capsys, "--eval", both)[::2], "its entries hold",
                  f"(at most {rundir.ENTRY_LIMIT:,}")


@pytest.mark.parametrize("entry, value", [("stats_mean", np.nan), ("stats_var", -1.0),
                                          ("stats_var", 3e38), ("stats_count", 0.0)])
def test_bad_observation_statistics_are_refused(tmp_path, capsys, entry, value):
  run = tmp_path / "run"
  assert train.main(["--out", run, "--normalize-obs"] + SMALL) == 0
  with np.load(run / "checkpoint.npz") as z:
    data = {k: z[k] for k in z.files}
  data[entry] = np.full_like(data[entry], value)
  np.savez(run / "checkpoint.npz", **data)
  for argv in (["--eval", run, "--episodes", "1"], ["--resume", run, "--steps", "4096"]):
    _one_line_error(*_cli(capsys, *argv)[::2], "observation statistics are not valid")


def test_a_non_finite_reward_is_refused_not_logged_as_no_episode(tmp_path, capsys):
  def wrap(env):
    calls = [0]

    def reward(r):
      calls[0] += 1
      return -np.inf if calls[0] == 150 else r
    return gym.wrappers.TransformReward(env, reward)
  for method in ("single_path", "vine"):
    with pytest.raises(ValueError, match=r"returned the reward -inf .* \(not finite\)"):
      train.train("CartPole-v1", steps=4096, out=str(tmp_path / method), wrappers=(wrap,),
                  method=method, batch=1024, vine_states=10, log=lambda s: None)


def test_killing_the_launcher_leaves_no_process(tmp_path):
  run, family = tmp_path / "run", []
  proc = _start(["--processes", "2", "--out", run, "--steps", "10000000", "--batch", "1024"])

  def ready():                            # both training processes running, one iteration done
    family[:] = _children(proc.pid) if _logged(run)() else []
    return len(family) >= 2
  _signal_when(proc, ready, signal.SIGKILL)
  _assert_all_end(family)


def test_a_write_error_in_one_process_ends_them_all(tmp_path):
  # A full disk: a 64 KiB tmpfs (root may mount one; elsewhere the case cannot be made).
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a small tmpfs here")
  try:
    proc = subprocess.run([sys.executable, "train.py", "--processes", "2", "--out",
                           str(disk / "run"), "--steps", "200000", "--batch", "1024",
                           "--hidden", "256,256"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
  finally:
    subprocess.run(["umount", "-l", str(disk)])
  assert proc.returncode == 2 and "No space left" in proc.stderr, proc.stderr


def test_nested_json_anywhere_is_one_line(saved_run, tmp_path, capsys):
  deep = "[" * 5000 + "]" * 5000
  capsys.readouterr()
  with pytest.raises(SystemExit) as stop:   # argparse's error, through train.main's one line
    train.main(["--env-kwargs", deep, "--out", str(tmp_path / "x")])
  _one_line_error(stop.value.code, capsys.readouterr().err.strip().splitlines(),
                  "--env-kwargs must be a JSON object")
  run = _copy(saved_run, tmp_path / "log")
  with open(run / "log.jsonl", "a") as f:
    f.write(deep + "\n")
  _one_line_error(*_cli(capsys, "--resume", run, "--steps", "4096")[::2], "nested too deeply")
  run = _copy(saved_run, tmp_path / "config")
  with np.load(run / "checkpoint.npz") as z:
    data = {k: z[k] for k in z.files}
  data["config"] = np.array(deep)
  np.savez(run / "checkpoint.npz", **data)
  _one_line_error(*_cli(capsys, "--eval", run)[::2], "bad entries ['config']")


@pytest.mark.parametrize("case", ["proc", "log directory", "title"])
def test_plot_cases_are_one_line(saved_run, tmp_path, capsys, case):
  import plot
  run, argv = saved_run, ["--out", str(tmp_path / "p.png")]
  if case == "proc":
    argv = ["--out", "/proc/p.png"]
  elif case == "log directory":
    run = _copy(saved_run, tmp_path / "run")
    (run / "log.jsonl").unlink()
    (run / "log.jsonl").mkdir()
  else:
    argv += ["--title", "$x^$"]   # mathtext that matplotlib cannot parse
  capsys.readouterr()
  code = plot.main([str(run)] + argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and err[0].startswith("plot.py: error: "), err


def test_the_api_and_the_messages_name_what_was_given(saved_run, tmp_path, capsys):
  with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 2\*\*32\), got -1"):
    train.evaluate(str(saved_run), seed=-1)
  _one_line_error(*_cli(capsys, "--eval", saved_run, "--env-kwargs", "{}")[::2],
                  "not --env-kwargs")
  (tmp_path / "v.mp4").mkdir()
  _one_line_error(*_cli(capsys, "--eval", saved_run, "--video", tmp_path / "v.mp4")[::2],
                  "not a directory", str(tmp_path / "v.mp4"))
  _one_line_error(*_cli(capsys, "--batch", "2050", "--num-envs", "8", "--out",
                        tmp_path / "b")[::2], "batch must be a multiple of num_envs (8)")


def test_a_kl_is_never_logged_below_zero():
  info = {"kl": -1e-9, "actual_improve": 0.0, "backtracks": 0, "accepted": True,
          "entropy": 1.0}
  state = {"iteration": 1, "steps": 10, "seconds": 1.0}
  record = train.iteration_record(state, {"info": info, "episodes": [], "steps": 10,
                                          "vf_loss": None}, 1.0)
  assert record["kl"] == 0.0
  nan = train.iteration_record(state, {"info": dict(info, kl=float("nan")), "episodes": [],
                                       "steps": 10, "vf_loss": None}, 1.0)
  assert math.isnan(nan["kl"])
