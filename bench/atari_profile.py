"""Where a training iteration's time goes, phase by phase, measured in one run (Atari by default;
any task with --env).

Trains with `train.train` (the given env's defaults) for --steps, with a timer around each phase
of `train.single_path_iteration` (each waits for its result): sampling (`sampling.single_path`;
of it, the policy's calls and the environments' steps), advantages, the policy batch
(normalisation), `trpo.step`, the value refit and the observation statistics. The first
iteration (compilation) is left out. Then steps the same vector environment (the run's
backend) with random actions for as many steps. Prints seconds per iteration for each phase
and, last, `train/env-only: X` as `bench/train_speed.py` does. The first line names the
commit and the processor.

With `--processes N` the same runs as N data-parallel processes (`parallel.launch`, each on its
own cores) and process 0 reports: its share of the sampling, the collectives (`parallel.gather`,
where a process that has sampled its share waits for the others, `gather_list` and
`from_process_0`), the spread of its sampling time over the iterations, and random actions for
its share of the steps.

  python bench/atari_profile.py [--env ALE/Pong-v5] [--steps 22528] [--batch 2048] [--num-envs 8]
                                [--processes N]
"""

import argparse
import collections
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults import provenance  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import obsnorm  # noqa: E402
import parallel  # noqa: E402
import sampling  # noqa: E402
import train  # noqa: E402
import trpo  # noqa: E402
import value  # noqa: E402

PHASES = [(sampling, "single_path"), (sampling, "advantages"), (sampling, "policy_batch"),
          (trpo, "step"), (value, "refit"), (obsnorm, "obs_stats_update")]


def timed(seconds, name, fn, calls=None):
  """fn, adding the wall time of each call (until its result is ready) to seconds[name] (and
  appending it to calls[name] if calls is given)."""
  def call(*args, **kwargs):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    elapsed = time.perf_counter() - start
    seconds[name] += elapsed
    if calls is not None:
      calls[name].append(elapsed)
    return out
  return call


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="ALE/Pong-v5")
  ap.add_argument("--steps", type=int, default=22528)
  ap.add_argument("--batch", type=int, default=2048)
  ap.add_argument("--num-envs", type=int, default=8)
  ap.add_argument("--processes", type=int, default=1)
  for flag, kind in [("--coordinator", str), ("--num-processes", int), ("--process-id", int)]:
    ap.add_argument(flag, type=kind, help=argparse.SUPPRESS)   # set by parallel.launch
  args = ap.parse_args()
  if args.processes > 1 and args.coordinator is None:
    return parallel.launch(sys.argv[1:], args.processes, script=os.path.abspath(__file__))
  if args.coordinator is not None:
    parallel.initialize(args.coordinator, args.num_processes, args.process_id)
  seconds, calls = collections.defaultdict(float), collections.defaultdict(list)
  phases = PHASES + [(parallel, "gather"), (parallel, "gather_list"),
                     (parallel, "from_process_0")] * (args.processes > 1)
  for module, name in phases:
    setattr(module, name, timed(seconds, name, getattr(module, name), calls))
  actor = sampling.actor
  sampling.actor = lambda policy: timed(seconds, "policy calls", actor(policy))
  make = envs.make

  def make_timed(*make_args, **kwargs):
    venv, obs = make(*make_args, **kwargs)
    venv.step = timed(seconds, "environment steps", venv.step)
    return venv, obs
  envs.make = make_timed
  iterations = []

  def callback(*_):
    iterations.append(time.perf_counter())
    if len(iterations) == 1:            # compiled: count from here
      seconds.clear()
      calls.clear()
  run = train.train(args.env, steps=args.steps, batch=args.batch, num_envs=args.num_envs,
                    out=os.path.join("runs", "atari_profile"), overwrite=True,
                    log=lambda *_: None, callback=callback)
  n, wall = len(iterations) - 1, iterations[-1] - iterations[0]
  venv, _ = make(args.env, args.num_envs, seed=0, backend=run["config"]["backend"])
  start = time.perf_counter()
  for _ in range(n * (args.batch // args.num_envs // args.processes)):
    venv.step(venv.action_space.sample())
  env_only = time.perf_counter() - start
  venv.close()
  print(f"# {provenance()}")
  print(f"# {args.env} on {run['config']['backend']}, {args.num_envs} envs, batch {args.batch}"
        f"{f', {args.processes} processes (process 0)' * (args.processes > 1)}: seconds per "
        f"iteration over {n} iterations after the first")
  for name in ["single_path", "policy calls", "environment steps"] + [p for _, p in phases[1:]]:
    print(f"{name}: {seconds[name] / n:.3f}")
  print(f"single_path, fastest and slowest iteration: {min(calls['single_path']):.3f}, "
        f"{max(calls['single_path']):.3f}")
  within = ("policy calls", "environment steps")      # parts of single_path's time
  phased = sum(v for k, v in seconds.items() if k not in within)
  print(f"the rest: {(wall - phased) / n:.3f}")
  print(f"iteration: {wall / n:.3f}; random actions: {env_only / n:.3f}")
  print(f"train/env-only: {wall / env_only:.2f}")


if __name__ == "__main__":
  sys.exit(main())
