"""The defaults (train.FAMILY_DEFAULTS, train.TASK_DEFAULTS) next to a peer's published figures.

  python bench/defaults.py [--tasks ID ...] [--seeds 100 101 102 103 104] [--episodes 10]

For each task and seed, the run of `python train.py --env ID --seed S --steps BUDGET` with no
other flag, kept in results/defaults/ID-seedS (trained when missing, resumed when short of its
budget; its config is checked to equal the defaults), is evaluated as the RL Zoo evaluates its
agents: the deterministic policy (the mode of π) for --episodes episodes (`train.evaluate`,
seed 12345). The seeds are held out: the settings were chosen on seeds 0-2
(results/defaults-tuning.txt), none of these. Writes results/defaults.txt, one line per task (a
task not in --tasks keeps its line): the per-seed evaluation means, their mean and standard
deviation over seeds and the worst seed, the backend that stepped the runs, the commit and the
processor that produced them (on another processor the same seed may take another path: XLA's
CPU kernels round differently, and a chaotic task amplifies it), and the peer's figure beside
them (the RL Zoo's TRPO benchmark, sb3-contrib, one run, deterministic
evaluation, v3 MuJoCo tasks: github.com/DLR-RM/rl-baselines3-zoo, benchmark.md).
"""

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rundir  # noqa: E402
import train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results", "defaults.txt")
# task: (budget in steps, the RL Zoo's TRPO figure at that budget: "mean ± std (task, steps)").
TASKS = {"CartPole-v1": (100_000, "500.0 ± 0.0 (CartPole-v1, 100k)"),
         "Pendulum-v1": (100_000, "-174.6 ± 127.6 (Pendulum-v1, 100k)"),
         "Hopper-v5": (1_000_000, "3618.4 ± 356.8 (Hopper-v3, 1M)"),
         "Walker2d-v5": (1_000_000, "4933.1 ± 1452.5 (Walker2d-v3, 1M)"),
         "HalfCheetah-v5": (1_000_000, "1785.5 ± 68.7 (HalfCheetah-v3, 1M)"),
         "Ant-v5": (1_000_000, "4982.3 ± 663.8 (Ant-v3, 1M)"),
         "Swimmer-v5": (1_000_000, "365.7 ± 2.1 (Swimmer-v3, 1M)"),
         "InvertedPendulum-v5": (1_000_000, "not in its table; solved is 1000")}


HELD_OUT = [100, 101, 102, 103, 104]


def provenance():
  """"commit C[ (with uncommitted changes)], processor P": what produced a run here."""
  git = lambda *a: subprocess.run(["git", "-C", ROOT, *a], capture_output=True,
                                  text=True).stdout.strip()
  dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--", "*.py") else ""
  cpu = "unknown"
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  return f"commit {git('rev-parse', '--short', 'HEAD')}{dirty}, processor {cpu}"


def seed_run(env, seed, budget):
  """The run directory of the defaults' run of `env` and `seed`, trained to `budget` first."""
  run = os.path.join(ROOT, "results", "defaults", f"{env}-seed{seed}")
  done = os.path.exists(os.path.join(run, "checkpoint.npz"))
  if not done or rundir.load_checkpoint(run)[1]["steps"] < budget:
    print(f"training {env} seed {seed} to {budget} steps in {run}", flush=True)
    train.train(env, steps=budget, seed=seed, out=run, resume=done, log=lambda s: None)
  cfg = rundir.load_checkpoint(run)[0]
  expected = train.make_config({"env": env, "seed": seed, "steps": cfg["steps"]}, None, False,
                               note=lambda s: None)
  # Options a checkpoint predates were their DEFAULTS value then.
  differ = {k: (cfg[k], v) for k, v in expected.items()
            if k in cfg and cfg[k] != (list(v) if isinstance(v, tuple) else v)}
  if differ:
    raise SystemExit(f"{run} was not trained with the defaults: {differ}")
  return run


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
  ap.add_argument("--episodes", type=int, default=10)
  ap.add_argument("--seeds", type=int, nargs="+", default=HELD_OUT)
  args = ap.parse_args()
  new, made_by = {}, provenance()   # the code as it is when the runs start
  for env in args.tasks:
    budget, peer = TASKS[env]
    runs = [seed_run(env, seed, budget) for seed in args.seeds]
    means = [statistics.mean(train.evaluate(run, episodes=args.episodes)) for run in runs]
    backends = sorted({rundir.load_checkpoint(run)[0].get("backend", "gymnasium")
                       for run in runs})
    spread = f" ± {statistics.stdev(means):.1f}" if len(means) > 1 else ""
    new[env] = (f"{env}: `python train.py --env {env} --steps {budget}` (defaults), seeds "
                f"{args.seeds}: deterministic evaluation over {args.episodes} episodes "
                f"{', '.join(f'{m:.1f}' for m in means)} (mean {statistics.mean(means):.1f}"
                f"{spread}, worst {min(means):.1f}); stepped by {', '.join(backends)}; "
                f"{made_by}; RL Zoo TRPO {peer}")
    print(new[env], flush=True)
  lines = {}
  if os.path.exists(RESULTS):   # read now, not at the start: another task may have finished
    with open(RESULTS) as f:
      lines = {line.split(":")[0]: line.rstrip("\n") for line in f if not line.startswith("$")}
  lines.update(new)
  text = "\n".join([f"$ python bench/defaults.py --episodes {args.episodes}"]
                   + [lines[env] for env in TASKS if env in lines])
  with open(RESULTS + ".tmp", "w") as f:
    f.write(text + "\n")
  os.replace(RESULTS + ".tmp", RESULTS)


if __name__ == "__main__":
  main()
