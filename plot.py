"""Learning curves from run directories: return against environment steps.

    python plot.py RUN_DIR [RUN_DIR ...] --out FILE.png [--title TEXT]

Runs whose configs differ only in the seed (and the step budget) are one setting, drawn as the
mean over its seeds with a band of ± one standard deviation (a single run as its curve). Each
run's mean training return per iteration (log.jsonl) is interpolated onto common step counts,
up to the shortest run of the setting. The legend names the task, the method and whatever else
differs between the settings. Needs matplotlib (`pip install -e ".[plots]"`).
"""

import argparse
import os
import sys

import numpy as np

import rundir

# The paper's names for the methods of Figure 4 (train.py's --method values).
NAMES = {"single_path": "Single Path", "vine": "Vine", "natural_gradient": "Natural Gradient",
         "empirical_fim": "Empirical FIM", "max_kl": "Max KL", "cem": "CEM", "cma": "CMA-ES",
         "rwr": "RWR", "reps": "REPS"}


def settings(run_dirs):
  """{label: [(steps [n], returns [n]) of each seed]} for the runs, grouped by setting."""
  groups = {}
  for run in run_dirs:
    cfg = rundir.load_checkpoint(run)[0]
    records = rundir.read_log(run)
    bad = next((r["iteration"] for r in records if type(r.get("steps")) is not int or not (
        r.get("mean_return") is None or type(r["mean_return"]) in (int, float))), None)
    if bad is not None:
      raise ValueError(f"{run}/log.jsonl: iteration {bad} lacks integer 'steps' or a numeric "
                       "'mean_return'")
    records = [r for r in records if r["mean_return"] is not None]
    if not records:
      raise ValueError(f"{run} has no finished episode in its log yet: nothing to plot")
    key = tuple(sorted((k, str(v)) for k, v in cfg.items() if k not in ("seed", "steps")))
    groups.setdefault(key, []).append((np.array([r["steps"] for r in records]),
                                       np.array([r["mean_return"] for r in records])))
  differ = {k for key in groups for k, v in key if any(dict(o).get(k) != v for o in groups)}
  labels = {}
  for key, curves in groups.items():
    cfg = dict(key)
    extra = ", ".join(f"{k} {cfg[k]}" for k in sorted(differ - {"env", "method"}))
    labels[f"{cfg['env']} {NAMES.get(cfg['method'], cfg['method'])}"
           + (f" ({extra})" if extra else "") + f", {len(curves)} seed(s)"] = curves
  return labels


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
  ap.add_argument("--out", required=True, help="the PNG to write")
  ap.add_argument("--title", default="")
  args = ap.parse_args(argv)
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase
  except ImportError:
    print("plot.py: error: needs matplotlib: pip install -e '.[plots]'", file=sys.stderr)
    return 2
  kinds = FigureCanvasBase.get_supported_filetypes()   # a class method: no figure is made
  try:
    if os.path.splitext(args.out)[1][1:].lower() not in kinds:
      raise ValueError(f"--out must end in one of .{', .'.join(sorted(kinds))}, got {args.out!r}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
      raise ValueError(f"--out {args.out!r} is in a directory that does not exist")
    groups = settings(args.runs)
  except ValueError as e:
    print(f"plot.py: error: {e}", file=sys.stderr)
    return 2
  fig, ax = plt.subplots(figsize=(8, 5))
  for label, curves in groups.items():
    grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), 200)
    ys = np.array([np.interp(grid, s, r) for s, r in curves])
    ax.plot(grid, ys.mean(0), lw=2, label=label)
    ax.fill_between(grid, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.2)
  ax.set(xlabel="environment steps", ylabel="mean training return per iteration", title=args.title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=11)
  try:
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
  except (OSError, ValueError) as e:   # a place that cannot be written; a title mathtext refuses
    message = str(e).strip().splitlines()
    print(f"plot.py: error: cannot write {args.out}: {type(e).__name__}: "
          f"{message[0] if message else ''}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
