"""Figure 4 of the paper at this machine's scale: every Section 8 method on four tasks.

  python bench/figure4.py [--tasks cartpole swimmer hopper walker] [--jobs 2] [--plot-only | --redraw]
  python bench/figure4.py --tasks swimmer_table2 --evaluate 10   # the deterministic policies

Each run is `python train.py --env ENV --method M --seed S --steps N --out
runs/figure4/TASK/M-seedS FLAGS` (the task's FLAGS are the same for every method, so methods
differ only in their update). A run whose log already reaches its budget is not run again, so an
interrupted figure continues where it stopped. Natural gradient first sweeps its fixed step size
in factors of three on seed 0 (as the paper did) and keeps the best by final return; the other
seeds then run with that step. Writes results/figure4.csv (task, method, seed, steps,
mean_return: every iteration of every run), results/figure4.txt (budgets, the chosen step
sizes, the final return per method: mean ± std over seeds of the mean return of the iterations
that end at or after 90% of the budget, iterations and wall time) and results/figure4.png (the
mean over seeds and a band of ± one standard deviation per method per task; needs matplotlib,
`pip install -e ".[plots]"`).

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
from defaults import provenance  # noqa: E402
from learning import ROOT, copy_run, read_log as _read_log, run_commands  # noqa: E402

sys.path.insert(0, ROOT)
import plot  # noqa: E402  (the paper's method names)
import train  # noqa: E402  (train.evaluate)

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
    # Swimmer at Table 2's own sizes: γ 0.99, 30 hidden units, 200 iterations of 50K steps
    # (Table 2's 50 paths of 1,000; here 8 environments of 6,250 steps each), single path with
    # the paper's discounted returns (Section 5.1); vine with 16 trunk rollouts of 1,000 steps and 500 Q-values (125 states x 4 actions) from
    # 50-step branches. Every method gets 10M steps, single path's 200 iterations. Longer than a
    # session: each run's checkpoint and log are kept in results/figure4-table2/ (committed).
    "swimmer_table2": {"env": "Swimmer-v5", "steps": 10_000_000, "seeds": 5,
                       "flags": ["--hidden", "30", "--batch", "50000", "--estimator", "mc"],
                       "method_flags": {"vine": ["--batch", "16000", "--vine-states", "125",
                                                 "--vine-actions", "4", "--vine-horizon", "50"]},
                       "methods": tuple(m for m in METHODS if m != "max_kl"),
                       "ng_first": (4, 7), "results": "figure4-table2"},
    # The same single path with γ = 0.999 in place of Table 2's 0.99: whether γ is what keeps
    # the gradient methods far below CEM and CMA-ES on Swimmer's slow forward reward.
    "swimmer_table2_gamma": {"env": "Swimmer-v5", "steps": 10_000_000, "seeds": 1,
                             "flags": ["--hidden", "30", "--batch", "50000", "--estimator", "mc",
                                       "--gamma", "0.999"],
                             "methods": ("single_path",), "results": "figure4-table2"},
    # Hopper and Walker2d with Table 2's vine branches (2,500 Q-values: 625 states x 4
    # actions, rollouts of 100 steps; 16 trunk rollouts of 1,000), at most 266K steps an
    # iteration, and single path with Table 2's 1M-step iterations: 20M steps each, 20
    # single-path iterations of the paper's 200 and about 110 vine ones (a branch ends early
    # when the robot falls; the summary counts them). Seed 0 only; vine first, as Table 2 has.
    **{name: {"env": env, "steps": 20_000_000, "seeds": 1,
              "flags": ["--hidden", "50,50", "--batch", "1000000", "--estimator", "mc"],
              "method_flags": {"vine": ["--batch", "16000", "--vine-states", "625",
                                        "--vine-actions", "4", "--vine-horizon", "100",
                                        "--vine-workers", "2"]},
              "methods": ("vine", "single_path"), "results": "figure4-table2"}
       for name, env in (("hopper_table2", "Hopper-v5"), ("walker_table2", "Walker2d-v5"))},
}
# Hopper at Table 2's settings also runs the fixed-step natural gradient (Figure 4's argument for
# the trust region): four steps from below to above the best of the 300k-step Hopper sweep
# (0.81), 0.27 to 7.29, so that the best is bracketed; no further: each run is 20M steps.
TASKS["hopper_table2"].update(methods=("vine", "single_path", "natural_gradient"),
                              ng_first=(5, 9), ng_extend=False)
for _t in TASKS.values():
  _t.setdefault("results", "figure4")   # the stem of the task's results/ files
  _t.setdefault("method_flags", {})
# What train.py's MuJoCo family defaults would change, pinned to the values these runs had:
# δ = 0.01 (the paper's), γ = 0.99 unless the task sets it, raw observations.
PINNED = (("--delta", "0.01"), ("--gamma", "0.99"), ("--no-normalize-obs",))
NG_STEPS = tuple(round(0.01 * 3**k, 6) for k in range(-2, 8))   # 0.0011 ... 21.87: factors of 3
NG_FIRST = (3, 7)   # the sweep starts with NG_STEPS[3:7] = 0.03 ... 0.81 (see _ng_sweep);
# swimmer_table2 starts at 0.09 ... 0.81, around the best step of the smaller Swimmer runs
TAIL = 0.1   # "final return": the iterations ending in the last 10% of the budget, its start included


def _flags(t):
  """PINNED without the options the task sets itself, then the task's flags."""
  return [x for opt in PINNED if opt[0] not in t["flags"] for x in opt] + t["flags"]


def _run_dir(task, method, seed, tag=""):
  return os.path.join(ROOT, "runs", "figure4", task, f"{method}{tag}-seed{seed}")


def _kept(run_dir):
  """results/STEM/TASK/RUN: the committed copy of the checkpoint and log of a run at Table 2's
  sizes (None for the machine-scale tasks of results/figure4.*, which fit in a session)."""
  task = os.path.basename(os.path.dirname(run_dir))
  if TASKS[task]["results"] == "figure4":
    return None
  return os.path.join(ROOT, "results", TASKS[task]["results"], task, os.path.basename(run_dir))


def _log(run_dir):
  """The run's log: from runs/, else from its committed copy."""
  kept = _kept(run_dir)
  return _read_log(run_dir) or (_read_log(kept) if kept else [])


def _keep(run_dir):
  """Refreshes the committed copy of a run (called as each run ends, and by the summary)."""
  if _kept(run_dir) and os.path.exists(os.path.join(run_dir, "log.jsonl")):
    copy_run(run_dir, _kept(run_dir))


def _done(run_dir, steps):
  log = _log(run_dir)
  return bool(log) and log[-1]["steps"] >= steps


def _command(task, method, seed, run_dir, extra=()):
  """(label, argv, run_dir) of a run: a new one, or `train.py --resume` where a checkpoint is
  (in runs/, or copied there from the run's committed copy when runs/ is gone)."""
  t = TASKS[task]
  kept, label = _kept(run_dir), f"{task} {method} seed {seed} {' '.join(extra)}".strip()
  if kept and not os.path.exists(run_dir) and os.path.exists(kept):
    copy_run(kept, run_dir)
  if os.path.exists(os.path.join(run_dir, "checkpoint.npz")):
    return (label, [sys.executable, os.path.join(ROOT, "train.py"), "--resume", run_dir,
                    "--steps", str(t["steps"])], run_dir)
  return (label,
          [sys.executable, os.path.join(ROOT, "train.py"), "--env", t["env"], "--method",
           method, "--seed", str(seed), "--steps", str(t["steps"]), "--out", run_dir,
           "--overwrite"] + _flags(t) + t["method_flags"].get(method, []) + list(extra),
          run_dir)


def _final(run_dir, steps):
  """Mean of the iterations' mean returns over the iterations that end at or after (1 − TAIL)
  of the step budget."""
  log = [r for r in _log(run_dir) if r["mean_return"] is not None]
  tail = [r["mean_return"] for r in log if r["steps"] >= (1 - TAIL) * steps]
  return float(np.mean(tail)) if tail else float("nan")


def _running(run_dirs, steps):
  """One line per run still going: its steps so far and `_final` over them (the mean return
  over the last 10% of the steps it has)."""
  out = []
  for d in run_dirs:
    log = _log(d)
    if log and log[-1]["steps"] < steps:
      now = log[-1]["steps"]
      out.append(f"      in progress: {os.path.basename(d)} at {now:,} of {steps:,} steps "
                 f"({now / steps:.0%}), {_final(d, now):.1f} over its last {TAIL:.0%}")
  return out


def _equal_steps(task):
  """Vine (Section 5.2) against single path (Section 5.1) at equal simulator steps, which the
  two spend differently per update, seed by seed where both have run: the steps the shorter run
  has reached, and each run's updates and mean return over the last TAIL of them. For a task
  whose natural-gradient steps are fixed (ng_extend False), each finished natural-gradient run
  (seed 0) is set beside them too."""
  out = []
  for seed in range(TASKS[task]["seeds"]):
    dirs = {m: _run_dir(task, m, seed) for m in ("single_path", "vine")}
    if not TASKS[task].get("ng_extend", True) and seed == 0:
      dirs.update({f"natural gradient {s}": _run_dir(task, "natural_gradient", 0, f"-step{s}")
                   for s in NG_STEPS if _done(_run_dir(task, "natural_gradient", 0, f"-step{s}"),
                                              TASKS[task]["steps"])})
    logs = {m: [r for r in _log(d) if r["mean_return"] is not None] for m, d in dirs.items()}
    if not all(logs.values()):
      continue
    steps = min(log[-1]["steps"] for log in logs.values())
    uptos = {m: [r for r in log if r["steps"] <= steps] for m, log in logs.items()}
    if not all(uptos.values()):   # the longer run's first update came after the shorter's last
      continue
    at = {}
    for m, upto in uptos.items():
      at[m] = "{:.1f} ({} updates)".format(np.mean(
          [r["mean_return"] for r in upto if r["steps"] >= (1 - TAIL) * steps]
          or [upto[-1]["mean_return"]]), upto[-1]["iteration"])
    out.append(f"  at equal steps, seed {seed}: {steps:,} steps, "
               + ", ".join(f"{m.replace('_', ' ')} {a}" for m, a in at.items())
               + f" (mean return over the last {TAIL:.0%} of them)")
  return out


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
  lo, hi = TASKS[task].get("ng_first", NG_FIRST)
  while True:
    cmds = [_command(task, "natural_gradient", 0,
                     _run_dir(task, "natural_gradient", 0, f"-step{s}"), ["--step-size", str(s)])
            for s in NG_STEPS[lo:hi]]
    run_commands([c for c in cmds if not _done(c[2], TASKS[task]["steps"])], jobs, _keep)
    best, finals = _best_ng_step(task)
    if not TASKS[task].get("ng_extend", True):
      return best
    i = NG_STEPS.index(best)
    nlo, nhi = max(0, i - 1), min(len(NG_STEPS), i + 2)
    if all(s in finals for s in NG_STEPS[nlo:nhi]):
      return best
    lo, hi = min(lo, nlo), max(hi, nhi)


def run_task(task, jobs):
  """Seed 0 of every method but natural gradient, then its step sweep on seed 0, then the other
  seeds, seed by seed: a panel cut short still compares the methods."""
  t = TASKS[task]

  def todo(seeds, best=None):
    out = []
    for seed in seeds:
      for method in t["methods"]:
        if method == "natural_gradient" and best is None:
          continue
        extra = ["--step-size", str(best)] if method == "natural_gradient" else []
        run_dir = _run_dir(task, method, seed, f"-step{best}" if extra else "")
        if not _done(run_dir, t["steps"]):
          out.append(_command(task, method, seed, run_dir, extra))
    return out

  run_commands(todo([0]), jobs, _keep)
  best = _ng_sweep(task, jobs) if "natural_gradient" in t["methods"] else None
  run_commands(todo(range(t["seeds"]), best), jobs, _keep)


def _method_dirs(task, method, finished=True):
  t = TASKS[task]
  tag = ""
  if method == "natural_gradient":
    best, _ = _best_ng_step(task)
    if best is None:
      return []
    tag = f"-step{best}"
  # Finished runs (or every run with a log); an interrupted run is carried on from its
  # checkpoint by the next invocation.
  return [d for d in (_run_dir(task, method, s, tag) for s in range(t["seeds"]))
          if (_done(d, t["steps"]) if finished else _log(d))]


def _labelled_dirs(task, method):
  """(label, run directory) of each run of the method that has a log: the method's own name,
  or for a task whose natural-gradient steps are fixed (ng_extend False) natural_gradient-stepS
  for each step's run, all drawn and listed."""
  if method == "natural_gradient" and not TASKS[task].get("ng_extend", True):
    return [(f"natural_gradient-step{s}", d) for s in NG_STEPS
            for d in [_run_dir(task, method, 0, f"-step{s}")] if _log(d)]
  return [(method, d) for d in _method_dirs(task, method, finished=False)]


def _name(label):
  """The paper's name of a method, with a fixed natural-gradient step where the label has one."""
  method, _, step = label.partition("-step")
  return plot.NAMES[method] + (f", step {step}" if step else "")


def summarize(tasks, wall):
  """Writes the results files of each stem (figure4, figure4-table2) the tasks belong to."""
  for stem in dict.fromkeys(TASKS[t]["results"] for t in tasks):
    _summarize(stem, [t for t in tasks if TASKS[t]["results"] == stem], wall)


def _previous(path, split):
  """The previous results file at path, as split(text) ([] if there is none)."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return split(f)


def _summarize(stem, tasks, wall):
  """results/STEM.csv and .txt and .png. A task this invocation did not summarise, or whose runs
  are all gone (runs/ is not committed), keeps its rows and its block from the previous files."""
  os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
  csv_path, txt_path = (os.path.join(ROOT, "results", f"{stem}.{e}") for e in ("csv", "txt"))
  old_rows = _previous(csv_path, lambda f: list(csv.DictReader(f)))
  old_blocks = {b.split(":")[0]: b for b in _previous(txt_path, lambda f: f.read().split("\n\n"))}
  stem_tasks = [t for t in TASKS if TASKS[t]["results"] == stem]
  for task in tasks:   # refresh the committed copies, unfinished runs included
    runs = os.path.join(ROOT, "runs", "figure4", task)
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
      _keep(os.path.join(runs, name))
  with open(csv_path + ".tmp", "w", newline="") as f:
    w = csv.writer(f)
    fields = ["task", "method", "seed", "steps", "mean_return"]
    w.writerow(fields)
    for task in stem_tasks:
      rows = [[task, label, d.rsplit("seed", 1)[1], r["steps"], r["mean_return"]]
              for method in TASKS[task]["methods"]
              for label, d in _labelled_dirs(task, method) for r in _log(d)]
      w.writerows(rows or [[r[k] for k in fields] for r in old_rows if r["task"] == task])
  os.replace(csv_path + ".tmp", csv_path)
  lines = ["$ python bench/figure4.py --tasks " + " ".join(stem_tasks),
           f"# summarised at {provenance()}; each run's own code is its commit's when it ran",
           "final return = mean of a run's iterations' mean returns over the iterations that end "
           f"at or after {1 - TAIL:.0%} of its budget; mean ± std over seeds (runs complete / "
           "planned)"]
  for task in stem_tasks:
    t = TASKS[task]
    if task not in tasks or not any(_method_dirs(task, m, False) for m in t["methods"]):
      if task in old_blocks:
        lines.append("\n" + old_blocks[task].strip("\n"))
      continue
    best, finals = _best_ng_step(task)
    lines.append(f"\n{task}: {t['env']}, {t['steps']:,} steps per run, {t['seeds']} seeds, "
                 f"flags: {' '.join(_flags(t))}"
                 + "".join(f"; {m}: {' '.join(f)}" for m, f in t["method_flags"].items()))
    if "natural_gradient" in t["methods"]:
      lines.append("  natural gradient sweep (seed 0), final return by step size: "
                   + ", ".join(f"{s}: {v:.1f}" for s, v in finals.items()) + f"; best {best}")
      lines += _running([_run_dir(task, "natural_gradient", 0, f"-step{s}") for s in NG_STEPS],
                        t["steps"])
    for method in t["methods"]:
      done = _method_dirs(task, method)
      fin = [_final(d, t["steps"]) for d in done]
      last = [_log(d)[-1] for d in done]
      secs, iters = [r["seconds"] for r in last], [r["iteration"] for r in last]
      text = (f"{np.mean(fin):9.1f} ± {np.std(fin):7.1f}" if fin else "        -          ")
      per_run = (f"; {np.mean(iters):.0f} iterations, learner time {np.mean(secs):.0f} s per run"
                 if done else "")     # nothing to average before a run has finished
      lines.append(f"  {method:17s} {text}   ({len(done)}/{t['seeds']} runs{per_run})")
      lines += _running(_method_dirs(task, method, finished=False), t["steps"])
    if {"single_path", "vine"} <= set(t["methods"]):
      lines += _equal_steps(task)
  if wall is not None:
    lines.append(f"\nwall time of this invocation: {wall / 60:.1f} min on 2 cores")
  text = "\n".join(lines)
  with open(txt_path + ".tmp", "w") as f:
    f.write(text + "\n")
  os.replace(txt_path + ".tmp", txt_path)
  print(text)
  _plot(stem)


def _plot(stem):
  """results/STEM.png from results/STEM.csv: per task with rows there, the mean over seeds of
  each method's curve with a band of ± one standard deviation, in the paper's names."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print(f"matplotlib is not installed (pip install -e '.[plots]'): results/{stem}.png skipped")
    return
  with open(os.path.join(ROOT, "results", f"{stem}.csv")) as f:
    rows = list(csv.DictReader(f))
  tasks = [t for t in TASKS if any(r["task"] == t for r in rows)]
  labels = {t: list(dict.fromkeys(r["method"] for r in rows if r["task"] == t)) for t in tasks}
  # The legend below the panels: three names per panel's width, as many rows as that takes.
  n_methods = len({m for t in tasks for m in labels[t]})
  ncol = min(n_methods, 3 * len(tasks))
  lines = -(-n_methods // ncol)
  fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.3 + 0.3 * lines),
                           squeeze=False)
  colors = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(METHODS)}   # one per method
  handles = {}
  for ax, task in zip(axes[0], tasks):
    t = TASKS[task]
    grid, seeds = np.linspace(0, t["steps"], 101)[1:], 0
    for method in labels[task]:
      runs = {}
      for r in rows:
        if r["task"] == task and r["method"] == method and r["mean_return"] not in ("", "nan"):
          runs.setdefault(r["seed"], []).append((int(r["steps"]), float(r["mean_return"])))
      if not runs:
        continue
      curves = np.array([np.interp(grid, *zip(*sorted(v)), left=np.nan, right=np.nan)
                         for v in runs.values()])   # a run still going ends where it is
      seeds = max(seeds, len(runs))
      with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # grid points before any return
        mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0)
      color, style = colors[method.split("-step")[0]], "-"
      if "-step" in method:   # fixed natural-gradient steps: one colour, a line style each
        style = ("-", "--", ":", "-.")[[m for m in labels[task] if "-step" in m].index(method) % 4]
      handles[method], = ax.plot(grid, mean, color=color, ls=style, lw=1.8)
      ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.12)
    ax.set_title(f"{t['env']} ({task}), {seeds} of {t['seeds']} seeds", fontsize=11)
    ax.set_xlim(0, t["steps"])   # the whole budget: a run still going shows how far it is
    ax.set_xlabel("simulator steps")
    ax.set_ylabel("mean episode return")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
  fig.legend(list(handles.values()), [_name(m) for m in handles], loc="lower center",
             ncol=ncol, fontsize=11, frameon=False)
  fig.tight_layout(rect=(0, 0.3 * lines / (4.3 + 0.3 * lines), 1, 1))
  fig.savefig(os.path.join(ROOT, "results", f"{stem}.png"), dpi=110)
  print(f"wrote results/{stem}.png")


def evaluate(task, episodes):
  """results/STEM-eval.txt: every finished run of the task (each method's runs, natural gradient
  at its chosen step) evaluated as `python train.py --eval DIR --episodes K` does, the
  deterministic policy (the mode of π) for `episodes` episodes; per method the mean ± std over
  seeds of each run's mean return, and each run's mean. Like for like for every method: the
  training returns of the summary are stochastic for the gradient methods and deterministic for
  the parameter searches. Reads each run's committed copy when runs/ is gone."""
  t = TASKS[task]
  lines = [f"$ python bench/figure4.py --tasks {task} --evaluate {episodes}",
           f"{task}: {t['env']}; deterministic policy, {episodes} episodes per run "
           "(train.evaluate, seed 12345); mean ± std over seeds of each run's mean return"]
  for method in t["methods"]:
    means = []
    for d in _method_dirs(task, method):
      run = d if os.path.exists(os.path.join(d, "checkpoint.npz")) else _kept(d)
      means.append(float(np.mean(train.evaluate(run, episodes=episodes))))
      print(f"{os.path.basename(d)}: {means[-1]:.1f}", flush=True)
    if means:
      lines.append(f"  {method:17s} {np.mean(means):9.1f} ± {np.std(means):7.1f}   (per seed: "
                   + ", ".join(f"{m:.1f}" for m in means) + ")")
  path = os.path.join(ROOT, "results", f"{t['results']}-eval.txt")
  previous = _previous(path, lambda f: f.read().split("\n\n"))
  blocks = {b.split(":")[0].split()[-1]: b for b in previous if b.strip()}
  blocks[task] = "\n".join(lines)
  with open(path + ".tmp", "w") as f:
    f.write("\n\n".join(blocks[k].strip("\n") for k in sorted(blocks)) + "\n")
  os.replace(path + ".tmp", path)
  print("\n".join(lines))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tasks", nargs="+", choices=list(TASKS),
                  default=[t for t in TASKS if TASKS[t]["results"] == "figure4"],
                  help="default: the four tasks at this machine's scale")
  ap.add_argument("--jobs", type=int, default=2)
  ap.add_argument("--plot-only", action="store_true", help="summarise the existing runs")
  ap.add_argument("--redraw", action="store_true",
                  help="only redraw results/figure4.png from results/figure4.csv")
  ap.add_argument("--evaluate", type=int, metavar="EPISODES",
                  help="only evaluate the finished runs' deterministic policies")
  args = ap.parse_args()
  if args.evaluate:
    for task in args.tasks:
      evaluate(task, args.evaluate)
    return
  if args.redraw:
    for stem in dict.fromkeys(TASKS[t]["results"] for t in args.tasks):
      _plot(stem)
    return
  t0 = time.time()
  if not args.plot_only:
    for task in args.tasks:
      run_task(task, args.jobs)
  summarize(args.tasks, None if args.plot_only else time.time() - t0)


if __name__ == "__main__":
  main()
