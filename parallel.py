"""Data-parallel training over processes and hosts, with JAX's own distributed runtime.

Each process samples its own environments (seeded apart); every process then takes the update
on the batch of all processes. `gather` brings every process's samples to every process in one
collective (XLA's all-gather; gloo on the CPU), and each process computes the same policy step
(`trpo.step`) and value fit (`value.value_fit`) on that whole batch: what one process would
compute on the concatenated batch. The alternative, the update on a batch sharded over the
processes, needs a collective for the gradient, every Fisher-vector product of conjugate
gradient and every candidate of the line search, and those cost far more than the small networks
of the MuJoCo tasks. `from_process_0` then gives every process process 0's result, so that
hosts whose processors round differently cannot drift apart. The episodes of the log go
through `gather_list`. With one process every function here is the identity, so a
single-process run is exactly what it was.

    python train.py --processes 2 ...                        # N processes on this machine
    python train.py --coordinator HOST:PORT --num-processes N --process-id I ...   # per host
"""

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Seconds processes wait for each other to join (JAX's own default).
TIMEOUT = 300
# The environment variable by which a process started by `launch` knows its launcher.
LAUNCHER = "TRPO_LAUNCHER_PID"


def end_with_launcher():
  """In a process `launch` started: asks Linux to send this process SIGTERM when the launcher
  dies, however it dies (kill -9 included), so that no training process outlives it; SIGTERM
  stops a run at the next iteration boundary, which the processes agree on (train.py). Does
  nothing elsewhere, or in a process started by hand (--coordinator)."""
  launcher = os.environ.get(LAUNCHER)
  if not launcher or not sys.platform.startswith("linux"):
    return
  ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # 1: PR_SET_PDEATHSIG
  if os.getppid() != int(launcher):   # it died before the request: nothing would signal it
    os.kill(os.getpid(), signal.SIGTERM)


def initialize(coordinator, num_processes, process_id, timeout=TIMEOUT):
  """Joins the run of `num_processes` processes coordinated at HOST:PORT (process 0's address),
  before any other JAX call; CPU collectives by gloo. Says on stderr that it waits, every 30 s;
  raises ValueError if the host does not resolve or not all processes join within `timeout`
  seconds (JAX itself would abort the interpreter with a C++ stack trace: the watchdog thread
  ends the process first, with one line)."""
  host = coordinator.rsplit(":", 1)[0]
  try:
    socket.getaddrinfo(host, None)
  except OSError:
    raise ValueError(f"--coordinator host {host!r} does not resolve") from None
  joined = threading.Event()
  def watch():
    start = time.monotonic()
    while not joined.wait(min(30, max(timeout - (time.monotonic() - start), 0))):
      waited = time.monotonic() - start
      if waited >= timeout:
        print(f"train.py: error: process {process_id}: not all {num_processes} processes joined "
              f"at {coordinator} within {timeout:g} s (--coordinator-timeout)", file=sys.stderr,
              flush=True)
        os._exit(2)
      print(f"process {process_id}: waiting for the {num_processes} processes at {coordinator} "
            f"({waited:.0f} of {timeout:g} s)", file=sys.stderr, flush=True)
  threading.Thread(target=watch, daemon=True).start()
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator, num_processes, process_id,
                             initialization_timeout=int(timeout) + 60)
  joined.set()


@functools.lru_cache(maxsize=1)
def _all_gather():
  """(the sharding of an array split over the processes, the identity that returns it
  replicated on every process: XLA's all-gather), made once, after `initialize`, so that each
  shape compiles once."""
  mesh = Mesh(np.array(jax.devices()), ("processes",))
  return (NamedSharding(mesh, PartitionSpec("processes")),
          jax.jit(lambda tree: tree, out_shardings=NamedSharding(mesh, PartitionSpec())))


def gather(tree):
  """Every leaf [n, ...] (n the same on every process) → [N·n, ...] on every process as numpy,
  the processes' rows concatenated in process order. All processes must call it."""
  if jax.process_count() == 1:
    return jax.tree_util.tree_map(np.asarray, tree)
  leaves, treedef = jax.tree_util.tree_flatten(jax.tree_util.tree_map(np.ascontiguousarray, tree))
  n = len(leaves[0])
  # The leaves side by side as one array of bytes, a row per sample: one collective, where a
  # collective per leaf would cost as much again for each.
  rows = np.concatenate([x.reshape(n, -1).view(np.uint8) for x in leaves], axis=1)
  split, replicate = _all_gather()
  whole = np.asarray(replicate(jax.make_array_from_process_local_data(split, rows))
                     .addressable_data(0))
  out, start = [], 0
  for x in leaves:
    width = x.nbytes // n
    out.append(np.ascontiguousarray(whole[:, start:start + width]).view(x.dtype)
               .reshape((-1,) + x.shape[1:]))
    start += width
  return jax.tree_util.tree_unflatten(treedef, out)


def gather_list(items, most):
  """The items (pairs of numbers, e.g. (return, length) of episodes; at most `most` on each
  process, as many as it has) of every process, in process order; this process's list itself
  when there is one. All processes must call it."""
  if jax.process_count() == 1:
    return items
  # Padded to `most` rows, NaN marking a row without an item: one `gather` of equal shapes.
  rows = np.full((most, 2), np.nan)
  rows[:len(items)] = np.reshape(np.asarray(items, np.float64), (len(items), 2))
  return [tuple(row) for row in gather(rows) if not np.isnan(row[0])]


def any_process(flag):
  """Whether `flag` is true on any process (a collective: all must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(multihost_utils.process_allgather(np.int32(bool(flag))).any())


def from_process_0(tree):
  """Process 0's `tree` (of float arrays) on every process (a collective: all must call it).
  Every process computes the same update from the same batch; on one machine the copies are
  equal already, but processors of different hosts may round differently."""
  if jax.process_count() == 1:
    return tree
  # As one vector: one collective, where a collective per leaf would cost as much for each.
  flat, unravel = ravel_pytree(tree)
  return unravel(multihost_utils.broadcast_one_to_all(np.asarray(flat)))


def local_cores(i, processes):
  """The cores that local process i of `processes` runs on: every processes-th of this
  process's cores (one core each when there are as many processes as cores), so that the
  processes' XLA thread pools and environments do not share a core."""
  cores = sorted(os.sched_getaffinity(0))
  return set(cores[i::processes]) or {cores[i % len(cores)]}


def launch(argv, processes, script=None):
  """Runs `python SCRIPT ARGV` (default train.py; a script taking --coordinator, --num-processes
  and --process-id as it does) as `processes` processes on this machine, coordinated on a free
  local port, each on its own cores (`local_cores`, on Linux); process 0 prints, the others are
  quiet. The processes run in a session of their own: SIGTERM or Ctrl-C to this one is passed to
  them as SIGTERM, and they stop together at an iteration boundary; a second one kills them. If
  one fails or dies the others are stopped (they would wait for it in a collective). Returns 0,
  or 2 after one line on stderr naming the first process that failed."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  script = script or os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
  procs = [subprocess.Popen(
      [sys.executable, script] + argv + ["--coordinator", f"127.0.0.1:{port}",
                                         "--num-processes", str(processes),
                                         "--process-id", str(i)],
      stdout=None if i == 0 else subprocess.DEVNULL, stderr=None if i == 0 else subprocess.DEVNULL,
      start_new_session=True, env=dict(os.environ, **{LAUNCHER: str(os.getpid())}))
      for i in range(processes)]
  running = lambda: [p for p in procs if p.poll() is None]
  signals = []
  def stop(*_):
    signals.append(1)
    for p in running():
      p.kill() if len(signals) > 1 else p.terminate()
  previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
  # Pinned right after the start, while the child is still importing (its threads, started
  # later, inherit the cores); Linux only, and a child that already exited is left alone.
  for i, p in enumerate(procs if hasattr(os, "sched_setaffinity") else []):
    with contextlib.suppress(ProcessLookupError):
      os.sched_setaffinity(p.pid, local_cores(i, processes))
  first, code = None, 0
  try:
    while len(running()) == processes:
      time.sleep(0.2)
    first = next((i for i, p in enumerate(procs) if p.poll()), None)
    code = procs[first].returncode if first is not None else 0
    # After a finish, a stop, or an error they agreed on (exit status 2: process 0 says why)
    # the others end at the same point; after a crash they would wait in a collective for the
    # one that failed.
    deadline = time.monotonic() + (60 if signals or code in (0, 2) else 0)
    while running() and time.monotonic() < deadline:
      time.sleep(0.2)
  finally:   # after a crash the others' state is of no use: killed, not waited for
    for p in running():
      p.terminate() if signals or code in (0, 2) else p.kill()
    for p in procs:   # one blocked in a collective with a dead peer may not stop by itself
      try:
        p.wait(timeout=60)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    for s, handler in previous.items():
      signal.signal(s, handler)
  if first is not None and not signals and procs[0].returncode != 2:   # 2: it said why itself
    print(f"train.py: error: process {first} " + (f"was killed by signal {-code}" if code < 0
          else f"failed with exit status {code}") + "; the others were stopped", file=sys.stderr)
  return 2 if any(p.returncode for p in procs) else 0
