"""Mean return per seed over the same window of simulator steps, for runs of different iteration
sizes (whose "last 10 iterations" cover different stretches of a run).

  python bench/window.py NAME [NAME ...] --lo 90000 --hi 100000 [--out results/FILE.txt]

Reads results/NAME.csv (written by bench/learning.py: seed, iteration, steps, mean_return, ...)
and prints, for each name and seed, the mean of the iterations' mean returns over the iterations
that ended at steps in [lo, hi], with their count; appends the lines to --out if given.
"""

import argparse
import csv
import os
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def window_means(path, lo, hi):
  """{seed: (mean return, iterations)} over the iterations ending at steps in [lo, hi]."""
  by_seed = {}
  with open(path) as f:
    for r in csv.DictReader(f):
      if lo <= int(r["steps"]) <= hi and r["mean_return"] not in ("", "None"):
        by_seed.setdefault(int(r["seed"]), []).append(float(r["mean_return"]))
  return {s: (statistics.mean(v), len(v)) for s, v in sorted(by_seed.items())}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("names", nargs="+")
  ap.add_argument("--lo", type=int, required=True)
  ap.add_argument("--hi", type=int, required=True)
  ap.add_argument("--out")
  args = ap.parse_args()
  lines = [f"$ python bench/window.py {' '.join(args.names)} --lo {args.lo} --hi {args.hi}"]
  for name in args.names:
    means = window_means(os.path.join(ROOT, "results", f"{name}.csv"), args.lo, args.hi)
    lines.append(f"{name}: " + ", ".join(f"seed {s} {m:.1f} ({n} it.)"
                                         for s, (m, n) in means.items()))
  text = "\n".join(lines)
  if args.out:
    with open(os.path.join(ROOT, args.out), "a") as f:
      f.write(text + "\n\n")
  print(text)


if __name__ == "__main__":
  main()
