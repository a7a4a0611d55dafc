"""Are two training runs the same? Compares the log.jsonl of run directories field by field.

  python bench/compare_runs.py REF_DIR NEW_DIR [REF_DIR NEW_DIR ...] [--out results/FILE.txt]

Timing fields (steps_per_second, seconds) are ignored. For each pair it prints "identical" when
every other field of every iteration is equal, else the largest relative difference of a float
field and the first iteration where a field differs by more than 1e-5 (relative) or a
non-float field differs. Used to show that a refactoring leaves training unchanged for a fixed
seed (e.g. a run of an earlier commit against a run of this one).
"""

import argparse
import json
import os

TIMING = ("steps_per_second", "seconds")


def compare(ref_dir, new_dir):
  """One line: how the logs of two run directories compare."""
  logs = []
  for d in (ref_dir, new_dir):
    with open(os.path.join(d, "log.jsonl")) as f:
      logs.append([json.loads(line) for line in f if line.strip()])
  ref, new = logs
  worst, first = 0.0, None
  for a, b in zip(ref, new):
    for k in sorted(set(a) | set(b)):
      x, y = a.get(k), b.get(k)
      if k in TIMING or x == y:
        continue
      if isinstance(x, float) and isinstance(y, float):
        rel = abs(x - y) / max(abs(x), abs(y))
        worst = max(worst, rel)
        if rel <= 1e-5:
          continue
      first = first or f"iteration {a.get('iteration')}: {k} {x!r} vs {y!r}"
  head = f"{ref_dir} vs {new_dir}: {len(ref)} and {len(new)} iterations"
  if len(ref) == len(new) and worst == 0.0 and first is None:
    return f"{head}, identical"
  detail = f"largest relative float difference {worst:.1e}"
  return f"{head}, {detail}" + (f"; first real difference at {first}" if first else
                                "; no other difference")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("dirs", nargs="+", help="pairs: REF_DIR NEW_DIR ...")
  ap.add_argument("--out", help="also append the lines to this file")
  args = ap.parse_args()
  if len(args.dirs) % 2:
    ap.error(f"needs pairs of run directories, got {len(args.dirs)}")
  lines = [compare(a, b) for a, b in zip(args.dirs[::2], args.dirs[1::2])]
  print("\n".join(lines))
  if args.out:
    with open(args.out, "a") as f:
      f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
