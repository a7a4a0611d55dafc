"""Learning curves: run `train.py` for several seeds and summarise them into results/.

  python bench/learning.py --env Hopper-v5 --seeds 0 1 2 --steps 1000000 [--jobs 2] \
      [--name NAME] -- [train.py flags, e.g. --batch 2048 --delta 0.02 --normalize-obs]

Each seed runs as `python train.py --env ENV --seed S --steps N --out runs/NAME-seedS FLAGS`
(at most --jobs at a time; 2 cores here). Then it writes results/NAME.csv (seed, iteration,
steps, mean_return, kl, seconds) and appends to results/NAME.txt the command, and per seed the
mean return over the last 10 iterations, the first step count at which an iteration's mean
return reached --threshold (if given) and the wall time. `--summarize-only` skips the runs.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_log(run_dir):
  """The iterations of run_dir/log.jsonl as dicts ([] if there is no log yet)."""
  path = os.path.join(run_dir, "log.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def copy_run(src, dst):
  """Copies checkpoint.npz, then log.jsonl, from run directory src to dst, each file written
  under a temporary name and renamed. In that order the log copy is never behind the
  checkpoint copy, and `train.py --resume` cuts a log that is ahead back to the checkpoint."""
  os.makedirs(dst, exist_ok=True)
  for name in ("checkpoint.npz", "log.jsonl"):
    if os.path.exists(os.path.join(src, name)):
      shutil.copyfile(os.path.join(src, name), os.path.join(dst, name + ".copy"))
      os.replace(os.path.join(dst, name + ".copy"), os.path.join(dst, name))


def run_commands(runs, jobs, after=None):
  """Runs (label, argv, run_dir) commands, at most `jobs` at a time, each with its output
  appended to run_dir/stdout.txt; prints one line when each starts and ends, and calls
  after(run_dir), if given, when each ends."""
  pending, active = list(runs), []
  while pending or active:
    while pending and len(active) < jobs:
      label, cmd, run_dir = pending.pop(0)
      os.makedirs(run_dir, exist_ok=True)
      log = open(os.path.join(run_dir, "stdout.txt"), "a")
      active.append((label, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log,
                     run_dir))
      print(f"started {label}: {' '.join(cmd[1:])}", flush=True)
    # Wait for whichever finishes first.
    while all(a[1].poll() is None for a in active):
      time.sleep(0.5)
    done = next(a for a in active if a[1].poll() is not None)
    active.remove(done)
    done[2].close()
    print(f"{done[0]} finished with exit status {done[1].returncode}", flush=True)
    if after is not None:
      after(done[3])


def main():
  argv = sys.argv[1:]
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  argv = argv[:argv.index("--")] if "--" in argv else argv
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", required=True)
  ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  ap.add_argument("--steps", type=int, required=True)
  ap.add_argument("--jobs", type=int, default=2)
  ap.add_argument("--name", default=None)
  ap.add_argument("--threshold", type=float, default=None)
  ap.add_argument("--summarize-only", action="store_true")
  args = ap.parse_args(argv)
  name = args.name or args.env.replace("/", "_")
  runs = {s: os.path.join(ROOT, "runs", f"{name}-seed{s}") for s in args.seeds}
  if not args.summarize_only:
    run_commands([(f"seed {s}", [sys.executable, os.path.join(ROOT, "train.py"), "--env",
                                 args.env, "--seed", str(s), "--steps", str(args.steps),
                                 "--out", runs[s]] + extra, runs[s]) for s in args.seeds],
                 args.jobs)
  os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
  lines = [f"$ python bench/learning.py --env {args.env} --seeds "
           f"{' '.join(map(str, args.seeds))} --steps {args.steps} --name {name}"
           + (f" --threshold {args.threshold}" if args.threshold is not None else "")
           + (" -- " + " ".join(extra) if extra else "")]
  finals = []
  with open(os.path.join(ROOT, "results", f"{name}.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["seed", "iteration", "steps", "mean_return", "kl", "seconds"])
    for s in args.seeds:
      hist = read_log(runs[s])
      for h in hist:
        w.writerow([s, h["iteration"], h["steps"], h["mean_return"], h["kl"], h["seconds"]])
      rets = [h["mean_return"] for h in hist[-10:] if h["mean_return"] is not None]
      last10 = sum(rets) / len(rets) if rets else float("nan")
      finals.append(last10)
      reached = None
      if args.threshold is not None:
        reached = next((h["steps"] for h in hist if (h["mean_return"] or -1e18) >= args.threshold),
                       None)
      lines.append(f"seed {s}: {hist[-1]['steps']} steps, mean return over the last 10 "
                   f"iterations {last10:.1f}"
                   + (f", first reached {args.threshold:g} at {reached} steps"
                      if args.threshold is not None else "")
                   + f", {hist[-1]['seconds']:.0f} s")
  lines.append(f"mean over seeds of the last-10 mean return: {sum(finals) / len(finals):.1f}")
  with open(os.path.join(ROOT, "results", f"{name}.txt"), "a") as f:
    f.write("\n".join(lines) + "\n\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
