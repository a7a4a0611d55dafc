"""Figure 4 of the paper at this machine's scale: every Section 8 method on four tasks.

  python bench/figure4.py [--tasks cartpole swimmer hopper walker] [--jobs 2] [--plot-only | --redraw]

Each run is `python train.py --env ENV --method M --seed S --steps N --out
runs/figure4/TASK/M-seedS FLAGS` (the task's FLAGS are the same for every method, so methods
differ only in their update). A run whose log already reaches its budget is not run again, so an
interrupted figure continues where it stopped. Natural gradient first sweeps its fixed step size
in factors of three on seed 0 (as the paper did) and keeps the best by final return; the other
seeds then run with that step. Writes results/figure4.csv (task, method, seed, steps,
mean_return: every iteration of every run), results/figure4.txt (budgets, the chosen step
sizes, the final return per method: mean ± std over seeds of the mean over the last 10% of the
steps, and wall time) and results/figure4.png (mean and min–max band per method per task;
needs matplotlib, `pip install -e ".[plots]"`).

Cart-pole: the paper's "linear policy with six parameters" fits a continuous force and a
Gaussian policy (4 weights + 1 bias + 1 log σ); Gymnasium's cart-pole with a continuous force is
the MuJoCo InvertedPendulum-v5 (a cart on a rail with a hinged pole, 4-D state, 1-D force,
+1 per step while the pole is up, 1000 steps at most). We use it with `--linear-policy`.
"""

import argparse
import csv
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learning import ROOT, read_log as _log, run_commands  # noqa: E402

sys.path.insert(0, ROOT)
import plot  # noqa: E402  (the paper's method names)

METHODS = ("single_path", "vine", "natural_gradient", "empirical_fim", "max_kl", "cem", "cma",
           "rwr", "reps")
# Per task: environment, simulator steps per run, seeds, and the flags every method shares.
# δ = 0.01 as in the paper; hidden sizes from Table 2; batch sizes scaled down from Table 2's
# 50K-1M steps per iteration so that each run gets 50-150 iterations.
TASKS = {
    "cartpole": {"env": "InvertedPendulum-v5", "steps": 50_000, "seeds": 5,
                 "flags": ["--linear-policy", "--batch", "1000", "--num-envs", "4",
                           "--vine-states", "25"],
                 "methods": METHODS},
    "swimmer": {"env": "Swimmer-v5", "steps": 300_000, "seeds": 5,
                "flags": ["--hidden", "30", "--batch", "4096", "--gamma", "0.999", "--lam",
                          "0.99"],
                "methods": tuple(m for m in METHODS if m != "max_kl")},
    "hopper": {"env": "Hopper-v5", "steps": 300_000, "seeds": 3,
               "flags": ["--hidden", "50,50", "--batch", "4096", "--gamma", "0.995"],
               "methods": tuple(m for m in METHODS if m != "max_kl")},
    "walker": {"env": "Walker2d-v5", "steps": 300_000, "seeds": 3,
               "flags": ["--hidden", "50,50", "--batch", "4096", "--gamma", "0.995"],
               "methods": tuple(m for m in METHODS if m != "max_kl")},
}
# What train.py's MuJoCo family defaults would change, pinned to the values these runs had:
# δ = 0.01 (the paper's), γ = 0.99 unless the task sets it, raw observations.
PINNED = ["--delta", "0.01", "--gamma", "0.99", "--no-normalize-obs"]
NG_STEPS = tuple(round(0.01 * 3**k, 6) for k in range(-2, 8))   # 0.0011 ... 21.87: factors of 3
NG_FIRST = (3, 7)   # the sweep starts with NG_STEPS[3:7] = 0.03 ... 0.81 (see _ng_sweep)
TAIL = 0.1                                        # "final return": the last 10% of the steps


def _run_dir(task, method, seed, tag=""):
  return os.path.join(ROOT, "runs", "figure4", task, f"{method}{tag}-seed{seed}")



def _done(run_dir, steps):
  log = _log(run_dir)
  return bool(log) and log[-1]["steps"] >= steps


def _command(task, method, seed, run_dir, extra=()):
  t = TASKS[task]
  return (f"{task} {method} seed {seed}",
          [sys.executable, os.path.join(ROOT, "train.py"), "--env", t["env"], "--method",
           method, "--seed", str(seed), "--steps", str(t["steps"]), "--out", run_dir]
          + PINNED + t["flags"] + list(extra), run_dir)


def _final(run_dir, steps):
  """Mean of the iterations' mean returns over the last TAIL of the step budget."""
  log = [r for r in _log(run_dir) if r["mean_return"] is not None]
  tail = [r["mean_return"] for r in log if r["steps"] >= (1 - TAIL) * steps]
  return float(np.mean(tail)) if tail else float("nan")


def _best_ng_step(task):
  """(best step size, {step size: final return}) over the sweep runs that exist."""
  finals = {s: _final(_run_dir(task, "natural_gradient", 0, f"-step{s}"), TASKS[task]["steps"])
            for s in NG_STEPS}
  ok = {s: f for s, f in finals.items() if np.isfinite(f)}
  return (max(ok, key=ok.get) if ok else None), ok


def _ng_sweep(task, jobs):
  """The natural-gradient step sweep on seed 0: NG_STEPS[NG_FIRST], then the neighbours (a
  factor of 3 either side) of the best so far until both have been run, so that the best is a
  local maximum over the factors of three (or at the end of NG_STEPS)."""
  lo, hi = NG_FIRST
  while True:
    cmds = [_command(task, "natural_gradient", 0,
                     _run_dir(task, "natural_gradient", 0, f"-step{s}"), ["--step-size", str(s)])
            for s in NG_STEPS[lo:hi]]
    run_commands([c for c in cmds if not _done(c[2], TASKS[task]["steps"])], jobs)
    best, finals = _best_ng_step(task)
    i = NG_STEPS.index(best)
    nlo, nhi = max(0, i - 1), min(len(NG_STEPS), i + 2)
    if all(s in finals for s in NG_STEPS[nlo:nhi]):
      return best
    lo, hi = min(lo, nlo), max(hi, nhi)


def run_task(task, jobs):
  t = TASKS[task]
  best = _ng_sweep(task, jobs)
  todo = []
  for method in t["methods"]:
    for seed in range(t["seeds"]):
      if method == "natural_gradient":
        extra = ["--step-size", str(best)]
        run_dir = _run_dir(task, method, seed, f"-step{best}")
      else:
        extra, run_dir = [], _run_dir(task, method, seed)
      if not _done(run_dir, t["steps"]):
        todo.append(_command(task, method, seed, run_dir, extra))
  run_commands(todo, jobs)


def _method_dirs(task, method):
  t = TASKS[task]
  tag = ""
  if method == "natural_gradient":
    best, _ = _best_ng_step(task)
    if best is None:
      return []
    tag = f"-step{best}"
  # Only finished runs: an interrupted run is redone from the start by the next invocation.
  return [d for d in (_run_dir(task, method, s, tag) for s in range(t["seeds"]))
          if _done(d, t["steps"])]


def summarize(tasks, wall):
  os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
  lines = ["$ python bench/figure4.py --tasks " + " ".join(tasks),
           f"final return = mean over the last {TAIL:.0%} of each run's steps of the iterations' "
           "mean returns; mean ± std over seeds (runs complete / planned)"]
  with open(os.path.join(ROOT, "results", "figure4.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["task", "method", "seed", "steps", "mean_return"])
    for task in TASKS:
      for method in TASKS[task]["methods"]:
        for d in _method_dirs(task, method):
          seed = d.rsplit("seed", 1)[1]
          for r in _log(d):
            w.writerow([task, method, seed, r["steps"], r["mean_return"]])
  for task in tasks:
    t = TASKS[task]
    best, finals = _best_ng_step(task)
    lines.append(f"\n{task}: {t['env']}, {t['steps']:,} steps per run, {t['seeds']} seeds, "
                 f"flags: {' '.join(PINNED + t['flags'])}")
    lines.append("  natural gradient sweep (seed 0), final return by step size: "
                 + ", ".join(f"{s}: {v:.1f}" for s, v in finals.items()) + f"; best {best}")
    for method in t["methods"]:
      dirs = _method_dirs(task, method)
      done = [d for d in dirs if _done(d, t["steps"])]
      fin = [_final(d, t["steps"]) for d in done]
      secs = [_log(d)[-1]["seconds"] for d in done]
      text = (f"{np.mean(fin):9.1f} ± {np.std(fin):7.1f}" if fin else "        -          ")
      lines.append(f"  {method:17s} {text}   ({len(done)}/{t['seeds']} runs; learner time "
                   f"{np.mean(secs) if secs else float('nan'):.0f} s per run)")
  if wall is not None:
    lines.append(f"\nwall time of this invocation: {wall / 60:.1f} min on 2 cores")
  text = "\n".join(lines)
  with open(os.path.join(ROOT, "results", "figure4.txt"), "w") as f:
    f.write(text + "\n")
  print(text)
  _plot(tasks)


def _plot(tasks):
  """results/figure4.png from results/figure4.csv: per task, the mean over seeds of each
  method's curve with a band of ± one standard deviation, in the paper's names."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print("matplotlib is not installed (pip install -e '.[plots]'): results/figure4.png skipped")
    return
  with open(os.path.join(ROOT, "results", "figure4.csv")) as f:
    rows = list(csv.DictReader(f))
  fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.6), squeeze=False)
  colors = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(METHODS)}   # one per method
  handles = {}
  for ax, task in zip(axes[0], tasks):
    t = TASKS[task]
    grid = np.linspace(0, t["steps"], 101)[1:]
    for method in t["methods"]:
      runs = {}
      for r in rows:
        if r["task"] == task and r["method"] == method and r["mean_return"] not in ("", "nan"):
          runs.setdefault(r["seed"], []).append((int(r["steps"]), float(r["mean_return"])))
      if not runs:
        continue
      curves = np.array([np.interp(grid, *zip(*sorted(v)), left=np.nan) for v in runs.values()])
      with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # grid points before any return
        mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
      handles[method], = ax.plot(grid, mean, color=colors[method], lw=1.8)
      ax.fill_between(grid, mean - std, mean + std, color=colors[method], alpha=0.12)
    ax.set_title(f"{t['env']} ({task}), {t['seeds']} seeds", fontsize=11)
    ax.set_xlabel("simulator steps")
    ax.set_ylabel("mean episode return")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
  fig.legend(list(handles.values()), [plot.NAMES[m] for m in handles], loc="lower center",
             ncol=len(handles), fontsize=11, frameon=False)
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(os.path.join(ROOT, "results", "figure4.png"), dpi=110)
  print("wrote results/figure4.png")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
  ap.add_argument("--jobs", type=int, default=2)
  ap.add_argument("--plot-only", action="store_true", help="summarise the existing runs")
  ap.add_argument("--redraw", action="store_true",
                  help="only redraw results/figure4.png from results/figure4.csv")
  args = ap.parse_args()
  if args.redraw:
    return _plot(args.tasks)
  t0 = time.time()
  if not args.plot_only:
    for task in args.tasks:
      run_task(task, args.jobs)
  summarize(args.tasks, None if args.plot_only else time.time() - t0)


if __name__ == "__main__":
  main()
