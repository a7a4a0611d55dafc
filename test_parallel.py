"""Data-parallel training (parallel.py): two local processes joined by jax.distributed (CPU,
gloo collectives) gather their batches and compute the update of one process given the
concatenated batch (the policy step and the value fit), and train."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import parallel
import policies
import train
import trpo
import value

ROOT = os.path.dirname(os.path.abspath(__file__))
POLICY = policies.gaussian_policy(policies.mlp((16,), 2), 2)
V_NET = value.value_net((3,), (16,))


def _share(process):
  """Process `process`'s share of the batch: 96 samples of a Gaussian-policy problem."""
  rng = np.random.default_rng(process)
  obs = rng.normal(size=(96, 3)).astype(np.float32)
  return {"obs": obs, "actions": rng.normal(size=(96, 2)).astype(np.float32),
          "adv": (obs[:, 0] + rng.normal(size=96)).astype(np.float32)}


def _mixed(process):
  """Leaves of the kinds a rollout holds (uint8 frames, bools, integers, floats), 5 rows."""
  rng = np.random.default_rng(10 + process)
  return {"frames": rng.integers(0, 256, (5, 2, 3, 3), np.uint8), "ended": rng.random(5) < 0.5,
          "actions": rng.integers(-9, 9, (5, 2)), "adv": rng.normal(size=5).astype(np.float32)}


def _update(batch, obs, targets):
  """The policy step (on `batch`) and the value fit (on obs, targets) from fixed initial
  parameters and keys."""
  params = POLICY["init"](jax.random.PRNGKey(0), (3,))
  vparams = V_NET[0](jax.random.PRNGKey(1), (-1, 3))[1]
  new, info = trpo.step(params, batch, POLICY, jax.random.PRNGKey(2), subsample=0.5)
  fitted, loss = value.refit(vparams, None, obs, targets,
                             jax.random.PRNGKey(3), apply=V_NET[1], epochs=3, lr=1e-2)
  return {"policy": np.asarray(ravel_pytree(new)[0]).tolist(), "kl": float(info["kl"]),
          "value": np.asarray(ravel_pytree(fitted)[0]).tolist(), "loss": loss}


def worker(process, port, out):
  """One of two processes: joins the run, gathers the batch and updates on it; each writes
  (to OUT.p) its update, what gather_list gathered (process p has p + 1 items) and what
  from_process_0 gave it."""
  parallel.initialize(f"127.0.0.1:{port}", 2, process)
  every = parallel.gather(_share(process))
  result = _update(every, every["obs"], every["adv"] * 2)
  mixed, shares = parallel.gather(_mixed(process)), [_mixed(p) for p in range(2)]
  result["mixed"] = all(np.array_equal(mixed[k], np.concatenate([s[k] for s in shares]))
                        and mixed[k].dtype == shares[0][k].dtype for k in mixed)
  items = parallel.gather_list([(process, i) for i in range(process + 1)], 3)
  result["list"] = [[float(x) for x in item] for item in items]
  result["from_0"] = float(parallel.from_process_0(np.float32(process + 7)))
  with open(f"{out}.{process}", "w") as f:
    json.dump(result, f)


def test_two_processes_update_as_one_process_on_the_concatenated_batch(tmp_path):
  out, port = tmp_path / "result.json", 12000 + os.getpid() % 20000
  code = f"import test_parallel as t; t.worker({{}}, {port}, {str(out)!r})"
  procs = [subprocess.Popen([sys.executable, "-c", code.format(i)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  for p in procs:
    assert p.wait(timeout=300) == 0, p.stderr.read()
  got, other = (json.loads(open(f"{out}.{i}").read()) for i in range(2))
  assert other == got   # process 1 holds what process 0 holds
  shares = [_share(i) for i in range(2)]
  whole = {k: np.concatenate([s[k] for s in shares]) for k in shares[0]}
  expected = _update(whole, whole["obs"], whole["adv"] * 2)
  # The same computation on the same numbers: equal, not merely close.
  for k in ("policy", "value", "kl", "loss"):
    assert got[k] == expected[k], k
  assert got["kl"] > 0
  assert got["list"] == [[0, 0], [1, 0], [1, 1]]
  assert got["from_0"] == 7.0
  assert got["mixed"]   # leaves of every dtype and shape come back as they were, in order


def test_training_with_two_processes_improves_cartpole(tmp_path, capsys):
  run = tmp_path / "run"
  assert train.main(["--processes", "2", "--steps", "12288", "--batch", "2048", "--out",
                     run]) == 0
  returns = [json.loads(line)["mean_return"] for line in (run / "log.jsonl").read_text()
             .splitlines()]
  assert len(returns) == 6 and returns[-1] > 2 * returns[0], returns


def test_local_processes_get_their_own_cores(monkeypatch):
  # 8 cores: 3 processes share them out round-robin, disjoint and together all of them; more
  # processes than cores get one core each, in turn.
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
  assert [parallel.local_cores(i, 3) for i in range(3)] == [{0, 3, 6}, {1, 4, 7}, {2, 5}]
  assert parallel.local_cores(0, 1) == set(range(8))
  assert [parallel.local_cores(i, 10) for i in range(10)] == [{c} for c in range(8)] + [{0}, {1}]


def _launch(run):
  """`python train.py --processes 2` as a subprocess, and a wait for its first log line."""
  proc = subprocess.Popen([sys.executable, "train.py", "--processes", "2", "--steps", "10000000",
                           "--batch", "512", "--out", str(run)], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300    # against a hang, not a timing assertion
  while not ((run / "log.jsonl").exists() and (run / "log.jsonl").read_text().strip()):
    assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
    time.sleep(0.2)
  return proc, int((run / "lock").read_text())   # process 0's pid: it holds the run directory


def _alive(pid):
  try:
    os.kill(pid, 0)
    return True
  except ProcessLookupError:
    return False


@pytest.mark.parametrize("target,sig", [("launcher", signal.SIGTERM), ("child", signal.SIGTERM),
                                        ("child", signal.SIGKILL)])
def test_a_signal_to_the_launcher_or_a_dead_child_stops_them_all(tmp_path, target, sig):
  # kill PID of the launcher, or of one training process, stops every training process at the
  # same iteration boundary (one that stopped alone would leave the other waiting for it in a
  # collective), with one line; a training process that dies makes the launcher stop the other
  # and fail, naming it.
  proc, child = _launch(tmp_path / "run")
  try:
    os.kill(proc.pid if target == "launcher" else child, sig)
    _, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  lines = err.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 1, lines
  assert ("process 0 was killed by signal 9" if sig == signal.SIGKILL else
          "interrupted; the checkpoint holds iteration") in lines[0]
  deadline = time.monotonic() + 60
  while _alive(child) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert not _alive(child)


@pytest.mark.parametrize("process_id,host", [(0, "127.0.0.1"), (1, "127.0.0.1"),
                                             (1, "no-such-host.invalid")])
def test_a_peer_that_never_comes_ends_in_one_line_at_the_timeout(tmp_path, process_id, host):
  # The coordinator (process 0) waiting for its peer, a peer waiting for its coordinator, and a
  # host that does not resolve: one line and exit status 2, not JAX's abort with a stack trace.
  with socket.socket() as s:   # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  proc = subprocess.run([sys.executable, "train.py", "--coordinator", f"{host}:{port}",
                         "--num-processes", "2", "--process-id", str(process_id),
                         "--coordinator-timeout", "3", "--out", str(tmp_path / "run")],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 1, lines
  assert ("does not resolve" if host != "127.0.0.1" else
          f"not all 2 processes joined at {host}:{port} within 3 s") in lines[0]
  assert not (tmp_path / "run").exists()


def test_a_run_one_process_refuses_stops_every_process_with_one_line(tmp_path):
  # --out DIR holding a run: process 0 refuses it, and process 1, which has nothing to refuse,
  # learns it in the collective where it waits and stops too, in one line of its own.
  train.train("CartPole-v1", steps=512, batch=512, out=str(tmp_path / "run"), log=lambda s: None)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen([sys.executable, "train.py", "--coordinator", f"127.0.0.1:{port}",
                             "--num-processes", "2", "--process-id", str(i), "--batch", "512",
                             "--out", str(tmp_path / "run")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    errs = [p.communicate(timeout=300)[1].strip().splitlines() for p in procs]  # against a hang
  finally:
    for p in procs:
      p.kill()
  assert [p.returncode for p in procs] == [2, 2] and [len(e) for e in errs] == [1, 1], errs
  assert "holds a run" in errs[0][0] and "another process refused the run" in errs[1][0]
