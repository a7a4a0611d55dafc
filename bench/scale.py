"""Data-parallel speed-up: the same training with 1 and with N local processes, in one run.

  python bench/scale.py [--env Hopper-v5] [--steps 200000] [--processes 2] [-- train.py flags]

Runs `python train.py --env ENV --steps STEPS --processes P --out DIR FLAGS` for P = 1 and
P = N (default flags: --batch 4096 --normalize-obs). Prints the final returns, the wall-clock
ratio from start to exit (the processes' start and JAX's compilation included: a few seconds
that a short run does not amortise), and `speedup: X` last: the ratio of the training time
after the first iteration (as bench/train_speed.py measures it; from the log's `seconds`),
i.e. of the throughput a long run gets. Before it, the ceiling this machine allows: the same
vector environment stepped with random actions by 1 process and by N processes (each pinned to
its cores as `parallel.launch` pins them, each taking 1/N of the steps), `simulator alone: Y`.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import envs  # noqa: E402
import parallel  # noqa: E402
import train  # noqa: E402


def step_randomly(env_id, num_envs, n_vec, i, processes, ready, times, backend):
  """Worker i of `processes`: on its own cores, steps `num_envs` copies n_vec times with random
  actions once all workers are ready, and puts the seconds it took on `times`."""
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, parallel.local_cores(i, processes))
  # The backend the training runs use, with the threads each of its processes gets.
  venv, _ = envs.make(env_id, num_envs, seed=i, backend=backend,
                      threads=max(1, (os.cpu_count() or 1) // processes))
  space = venv.single_action_space
  ready.wait()
  start = time.perf_counter()
  for _ in range(n_vec):
    venv.step(envs.env_action(space, venv.action_space.sample()))
  times.put(time.perf_counter() - start)
  venv.close()


def simulator_seconds(env_id, num_envs, steps, processes, backend):
  """Wall seconds for `processes` processes to step `steps` environment steps in all."""
  ctx = multiprocessing.get_context("spawn")
  ready, times = ctx.Barrier(processes), ctx.Queue()
  n_vec = steps // num_envs // processes
  workers = [ctx.Process(target=step_randomly, args=(env_id, num_envs, n_vec, i, processes,
                                                     ready, times, backend))
             for i in range(processes)]
  for w in workers:
    w.start()
  seconds = max(times.get() for _ in workers)
  for w in workers:
    w.join()
  return seconds


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="Hopper-v5")
  ap.add_argument("--steps", type=int, default=200_000)
  ap.add_argument("--processes", type=int, default=2)
  ap.add_argument("flags", nargs="*", default=["--batch", "4096", "--normalize-obs"])
  args = ap.parse_args()
  given = dict(zip(args.flags, args.flags[1:]))
  cfg = train.make_config({"env": args.env}, None, False, lambda *_: None)
  num_envs = int(given.get("--num-envs", cfg["num_envs"]))
  backend = given.get("--backend", cfg["backend"])
  alone = {p: simulator_seconds(args.env, num_envs, args.steps, p, backend)
           for p in (1, args.processes)}
  seconds, wall, last = {}, {}, {}
  with tempfile.TemporaryDirectory() as tmp:
    for p in (1, args.processes):
      out = os.path.join(tmp, f"p{p}")
      t0 = time.perf_counter()
      subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--env", args.env,
                      "--steps", str(args.steps), "--processes", str(p), "--out", out]
                     + args.flags, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
      wall[p] = time.perf_counter() - t0
      with open(os.path.join(out, "log.jsonl")) as f:
        records = [json.loads(line) for line in f]
      seconds[p] = records[-1]["seconds"] - records[0]["seconds"]
      returns = [r["mean_return"] for r in records[-5:] if r["mean_return"] is not None]
      last[p] = sum(returns) / max(1, len(returns))
  print(f"# {args.env}, {args.steps} steps, flags {' '.join(args.flags)}; mean return of the "
        f"last 5 iterations: " + ", ".join(f"{p} process(es) {last[p]:.1f}" for p in last))
  print("wall clock, start to exit: " + ", ".join(f"{p} process(es) {s:.1f} s"
                                                    for p, s in wall.items()) +
        f"; ratio {wall[1] / wall[args.processes]:.2f}")
  print(f"simulator alone ({backend}, {num_envs} copies per process, random actions): " +
        ", ".join(f"{p} process(es) {s:.1f} s" for p, s in alone.items()) +
        f"; speedup {alone[1] / alone[args.processes]:.2f}")
  print("training after the first iteration: " + ", ".join(f"{p} process(es) {s:.1f} s"
                                                           for p, s in seconds.items()))
  print(f"speedup: {seconds[1] / seconds[args.processes]:.2f} (of the simulator's own: "
        f"{seconds[1] / seconds[args.processes] / (alone[1] / alone[args.processes]):.2f})")


if __name__ == "__main__":
  main()
