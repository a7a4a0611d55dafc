"""The settings tried for train.TASK_DEFAULTS, each evaluated as bench/defaults.py evaluates.

  python bench/tune_defaults.py [--env ID] [--episodes 10]

For each trial of TRIALS (a task, the flags over its family's defaults, the seeds tried), the
run `python train.py --env ID --seed S --steps 1000000 FLAGS --out runs/tune/NAME-seedS` is
trained when missing and its deterministic policy evaluated for --episodes episodes
(`train.evaluate`, seed 12345). Writes results/defaults-tuning.txt: its first block, one line
per trial, each ending with the commit and processor that produced it (a task not asked for
keeps its lines); the file's other blocks are kept as they are. The runs are not committed: a
trial is rerun from scratch.
"""

import argparse
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults import provenance  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import rundir  # noqa: E402
import train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results", "defaults-tuning.txt")
STEPS = 1_000_000
# The first block's second line: where the commit of a line written before they were recorded is.
EARLIER = ("# a line without its commit and processor predates them: it came from the code of the "
           "commit before the one that added it (git blame); the processor was not recorded")
# (task, flags over the family's defaults, seeds): every setting tried, in the order tried.
TRIALS = [
    ("Swimmer-v5", "", [0]),
    ("Swimmer-v5", "--gamma 0.9999", [0]),
    ("Swimmer-v5", "--gamma 0.9999 --lam 0.99", [0]),
    ("Swimmer-v5", "--gamma 0.999 --lam 0.99", [0, 1, 2]),
    ("Swimmer-v5", "--gamma 0.999 --lam 0.99 --delta 0.01", [1]),
    ("Swimmer-v5", "--gamma 0.9995 --lam 0.99", [1]),
    ("Swimmer-v5", "--gamma 0.999 --lam 0.99 --batch 2048", [0, 1, 2]),
    ("HalfCheetah-v5", "--delta 0.04", [0]),
    ("HalfCheetah-v5", "--delta 0.04 --batch 2048", [0]),
    ("Walker2d-v5", "", [0]),
    ("Walker2d-v5", "--batch 2048", [0]),
    ("Walker2d-v5", "--delta 0.04 --batch 2048", [0]),
    ("Walker2d-v5", "--log-std-init -0.5", [0]),
    ("Walker2d-v5", "--gamma 0.99 --lam 0.95", [0]),
    ("Ant-v5", "", [0]),
    ("Ant-v5", "--gamma 0.99 --lam 0.95 --batch 2048 --delta 0.01", [0]),
    ("Ant-v5", "--log-std-init -1", [0]),
    ("Ant-v5", "--log-std-init -1 --delta 0.04", [0]),
    ("Ant-v5", "--log-std-init -1 --gamma 0.99 --lam 0.95", [0]),
]


def name(env, flags):
  """runs/tune's name of a trial: the task and its flags, without dashes or spaces."""
  return env + "".join("_" + (f[2:] if f.startswith("--") else f) for f in shlex.split(flags))


def evaluate(env, flags, seed, episodes):
  """The evaluation mean of the trial's run of `seed`, trained first when missing."""
  run = os.path.join(ROOT, "runs", "tune", f"{name(env, flags)}-seed{seed}")
  if not os.path.exists(os.path.join(run, "checkpoint.npz")) or \
      rundir.load_checkpoint(run)[1]["steps"] < STEPS:
    print(f"training {run}", flush=True)
    # Over the family's defaults: the task's own (chosen by these trials) are given back.
    family = dict(train.DEFAULTS, **train.FAMILY_DEFAULTS[envs.family(env)])
    back = [f"--{k.replace('_', '-')}={family[k]}" for k in train.TASK_DEFAULTS.get(env, {})
            if f"--{k.replace('_', '-')}" not in flags]
    code = train.main(["--env", env, "--seed", str(seed), "--steps", str(STEPS), "--out", run,
                       "--overwrite"] + shlex.split(flags) + back)
    if code:
      raise SystemExit(code)
  return statistics.mean(train.evaluate(run, episodes=episodes))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", choices=sorted({t[0] for t in TRIALS}))
  ap.add_argument("--episodes", type=int, default=10)
  args = ap.parse_args()
  lines, others = {}, []
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      blocks = f.read().strip("\n").split("\n\n")
    lines = {line.split(": seeds")[0]: line for line in blocks[0].splitlines()
             if not line.startswith(("$", "#"))}
    others = blocks[1:]   # another script's (bench/defaults.py on the tuning seeds)
  made_by = provenance()
  for env, flags, seeds in TRIALS:
    if args.env in (None, env):
      means = [evaluate(env, flags, seed, args.episodes) for seed in seeds]
      head = f"{env} {flags or '(the family defaults)'}"
      lines[head] = (f"{head}: seeds {seeds}: deterministic evaluation over {args.episodes} "
                     f"episodes {', '.join(f'{m:.1f}' for m in means)} (mean "
                     f"{statistics.mean(means):.1f}); {made_by}")
      print(lines[head], flush=True)
  heads = [f"{env} {flags or '(the family defaults)'}" for env, flags, _ in TRIALS]
  own = "\n".join([f"$ python bench/tune_defaults.py --episodes {args.episodes}", EARLIER]
                  + [lines[h] for h in heads if h in lines])
  with open(RESULTS + ".tmp", "w") as f:
    f.write("\n\n".join([own] + others) + "\n")
  os.replace(RESULTS + ".tmp", RESULTS)


if __name__ == "__main__":
  main()
