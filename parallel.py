"""Data-parallel training over processes and hosts, with JAX's own distributed runtime.

Each process samples its own environments (seeded apart); the update runs on the global batch.
`global_batch` makes the processes' samples one `jax.Array`, sharded along the batch axis over
one device per process, so the jit-compiled update (`trpo.step`, `value.value_fit`) takes its
means — the gradient, the Fisher-vector products, the line search's surrogate and KL, the value
loss — over every process's samples, with XLA's collectives (gloo on the CPU). What is computed
outside jit and must be global (the advantages' standardisation, the observation statistics,
the episodes of the log) goes through `gather`. With one process every function here is the
identity, so a single-process run is exactly what it was.

    python train.py --processes 2 ...                        # N processes on this machine
    python train.py --coordinator HOST:PORT --num-processes N --process-id I ...   # per host
"""

import contextlib
import ctypes
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


def gather(x):
  """x [n, ...] of every process → [Σn, ...], concatenated in process order, on every process.
  All processes must call it (it is a collective)."""
  if jax.process_count() == 1:
    return np.asarray(x)
  x = np.asarray(x)
  sizes = multihost_utils.process_allgather(np.int64(len(x)))
  padded = np.concatenate([x, np.zeros((int(sizes.max()) - len(x),) + x.shape[1:], x.dtype)])
  parts = multihost_utils.process_allgather(padded)
  return np.concatenate([p[:n] for p, n in zip(parts, sizes)])


def gather_list(items):
  """The items (tuples of numbers, e.g. (return, length) of episodes) of every process, in
  process order; this process's list itself when there is one process."""
  if jax.process_count() == 1:
    return items
  return [tuple(x) for x in gather(np.reshape(np.asarray(items, np.float64), (len(items), -1))
                                   if items else np.zeros((0, 2)))]


def any_process(flag):
  """Whether `flag` is true on any process (a collective: all must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(multihost_utils.process_allgather(np.int32(bool(flag))).any())


def global_batch(tree):
  """Every leaf [n, ...] (n equal on all processes) → one array [N·n, ...] sharded over the
  processes, process p's rows at p·n (the concatenation of the processes' batches)."""
  if jax.process_count() == 1:
    return tree
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def local(tree):
  """The replicated result of a computation on global arrays as this process's numpy copy
  (what the sampler and the next update take)."""
  if jax.process_count() == 1:
    return tree
  return jax.tree_util.tree_map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


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
