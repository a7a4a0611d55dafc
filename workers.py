"""Worker processes for the vine's branch rollouts (Section 5.2): a process pool, not an estimator.

`sampling.vine` computes the branches' Q̂ with `sampling.branch_returns`, in this process or,
given a pool from `branch_pool`, in worker processes that each hold their own environment
copies and policy functions. The batch is the same either way (`test_train.py`); only where the
simulator runs changes. A worker ends by itself once the process that started it has died.
"""

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time

import envs
import sampling

_WORKER = {}   # a branch worker process's own environment and policy (see `branch_pool`)


def _alive(pid):
  """Whether process `pid` runs (a zombie, killed but not yet reaped, counts as dead); True
  where there is no /proc to ask (then workers end with their pool only)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return not os.path.isdir("/proc")


def _exit_with(parent):
  """Ends this worker process once `parent` has died (checked every second): a SIGKILLed
  learner cannot shut its pool down, and its workers must not run on without it."""
  while _alive(parent):
    time.sleep(1.0)
  os._exit(0)


def _branch_worker_init(parent, env_id, seed, copies, hidden, linear_policy, log_std_init,
                        env_options):
  threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
  # Ctrl-C in a terminal reaches the whole process group: the learner handles it and shuts the
  # pool down, and a worker interrupted in its queue would only print a traceback.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _WORKER["copies"] = [envs.make_single(env_id, seed, **env_options)[0] for _ in range(copies)]
  env = _WORKER["copies"][0]
  _WORKER["policy"] = envs.policy_for(env.observation_space, env.action_space, hidden,
                                      linear_policy, log_std_init)


def _branch_worker(task):
  snapshots, first_actions, params, stats, noise, horizon, gamma = task
  return sampling.branch_returns(_WORKER["copies"], snapshots, first_actions, _WORKER["policy"],
                                 params, stats, noise, horizon, gamma)


def branch_pool(env_id, seed, workers, copies=1, hidden=(64, 64), linear_policy=False,
                log_std_init=0.0, env_options=None):
  """A process pool that runs vine branches (`sampling.branch_returns`) on `workers` cores.

  Each worker builds `copies` environments (`envs.make_single(env_id, seed, **env_options)`;
  a factory and wrappers must then be module-level functions, which pickle) and the policy
  functions (`envs.policy_for`, same architecture as the learner's) once; each task then
  carries a group of branches (snapshots, first actions, common random numbers) and the
  parameters, so a group computed in a worker equals the one computed in-process with as many
  copies. Processes start by forkserver, since JAX is multithreaded, and end by themselves if
  this process dies.

  Returns the pool as a dict of functions: {"map": [task] -> [(Q̂, steps)] per task (a task is
  a group of branches, as `sampling.vine` makes them), "shutdown": ()}. Pass it to
  `sampling.vine(..., pool=)`; end it with pool["shutdown"]().
  """
  executor = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("forkserver"),
      initializer=_branch_worker_init,
      initargs=(os.getpid(), env_id, seed, copies, tuple(hidden), linear_policy, log_std_init,
                env_options or {}))
  return {"map": lambda tasks: list(executor.map(_branch_worker, tasks,
                                                 chunksize=max(1, len(tasks) // 16))),
          "shutdown": lambda: executor.shutdown(cancel_futures=True)}   # after an interrupt too
