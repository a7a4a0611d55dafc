"""TRPO's δ swept where natural gradient's fixed step was (Section 8's robustness argument).

  python bench/delta_sweep.py [--tasks cartpole hopper] [--deltas 0.005 0.01 0.02 0.04] [--jobs 2]

The paper argues that a KL bound chooses step lengths more robustly than a fixed step. At
machine scale bench/figure4.py swept natural gradient's step in factors of three on seed 0
(results/figure4.txt); this sweeps TRPO's δ over the same tasks, with the same flags and budgets
(figure4.TASKS: cart-pole 50k steps, Hopper 300k), on three seeds, so that the two sweeps can
be read side by side. A run is `python train.py --env ENV --seed S --steps N --delta D FLAGS
--out runs/delta_sweep/TASK/deltaD-seedS`; one whose log reaches its budget is not run again.
Keeps each run's checkpoint and log in results/delta_sweep/. Writes results/delta_sweep.txt: per task and δ the final return (as figure4.py scores it: the
mean return of the iterations that end in the last 10% of the budget) of each seed, their mean
and standard deviation, and natural gradient's sweep from results/figure4.txt beside it.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import figure4  # noqa: E402
from defaults import provenance  # noqa: E402
from learning import ROOT, copy_run, read_log, run_commands  # noqa: E402

SEEDS = (0, 1, 2)


def run_dir(task, delta, seed):
  return os.path.join(ROOT, "runs", "delta_sweep", task, f"delta{delta}-seed{seed}")


def final(run, steps):
  tail = [r["mean_return"] for r in read_log(run) if r["mean_return"] is not None and
          r["steps"] >= (1 - figure4.TAIL) * steps]
  return statistics.mean(tail) if tail else float("nan")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tasks", nargs="+", default=["cartpole", "hopper"])
  ap.add_argument("--deltas", nargs="+", type=float, default=[0.005, 0.01, 0.02, 0.04])
  ap.add_argument("--jobs", type=int, default=2)
  args = ap.parse_args()
  made_by = provenance()
  todo = []
  for task in args.tasks:
    t = figure4.TASKS[task]
    flags = [x for opt in figure4.PINNED if opt[0] not in t["flags"] + ["--delta"]
             for x in opt] + t["flags"]
    for delta in args.deltas:
      for seed in SEEDS:
        d = run_dir(task, delta, seed)
        log = read_log(d)
        if not log or log[-1]["steps"] < t["steps"]:
          todo.append((f"{task} delta {delta} seed {seed}",
                       [sys.executable, os.path.join(ROOT, "train.py"), "--env", t["env"],
                        "--seed", str(seed), "--steps", str(t["steps"]), "--delta",
                        str(delta), "--out", d, "--overwrite"] + flags, d))
  # Each finished run's checkpoint and log are kept in results/delta_sweep/TASK/RUN (committed).
  run_commands(todo, args.jobs, lambda d: copy_run(d, d.replace(
      os.path.join(ROOT, "runs"), os.path.join(ROOT, "results"))))
  with open(os.path.join(ROOT, "results", "figure4.txt")) as f:
    ng = {block.split(":")[0]: line.strip() for block in f.read().split("\n\n")
          for line in block.splitlines() if "natural gradient sweep" in line}
  lines = [f"$ python bench/delta_sweep.py --tasks {' '.join(args.tasks)} --deltas "
           f"{' '.join(map(str, args.deltas))}", f"# {made_by}",
           "final return = mean return of the iterations that end in the last 10% of the "
           "budget; per δ: seeds 0, 1, 2, then mean ± std over them"]
  for task in args.tasks:
    t = figure4.TASKS[task]
    lines.append(f"{task}: {t['env']}, {t['steps']:,} steps, the flags of figure4.py's runs "
                 f"({' '.join(t['flags'])}) with --delta D")
    for delta in args.deltas:
      finals = [final(run_dir(task, delta, s), t["steps"]) for s in SEEDS]
      lines.append(f"  delta {delta}: " + ", ".join(f"{x:.1f}" for x in finals) +
                   f" (mean {statistics.mean(finals):.1f} ± {statistics.stdev(finals):.1f})")
    lines.append(f"  beside it, from results/figure4.txt (seed 0): {ng.get(task, 'none')}")
  with open(os.path.join(ROOT, "results", "delta_sweep.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
