"""The defaults by environment family (train.FAMILY_DEFAULTS) next to a peer's published figures.

  python bench/defaults.py [--episodes 10]

For each task, the runs of `python train.py --env ID --seed S` with no other flag (the run
directories runs/ID-seedS, which `bench/learning.py` leaves for CartPole and Hopper and this
script trains when they are missing; their configs are checked to equal the defaults) are evaluated as the RL Zoo evaluates its agents: the
deterministic policy (the mode of π) for --episodes episodes (`train.evaluate`, seed 12345).
Prints and writes results/defaults.txt: per task the budget, the per-seed evaluation mean, and
the peer's figure (the RL Zoo's TRPO benchmark, sb3-contrib, one run, deterministic evaluation,
on the v3 MuJoCo tasks: github.com/DLR-RM/rl-baselines3-zoo, benchmark.md).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rundir  # noqa: E402
import train  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# task: (budget in steps, the RL Zoo's TRPO figure at that budget: "mean ± std (task, steps)").
TASKS = {"CartPole-v1": (100_000, "500.0 ± 0.0 (CartPole-v1, 100k)"),
         "Pendulum-v1": (100_000, "-174.6 ± 127.6 (Pendulum-v1, 100k)"),
         "Hopper-v5": (1_000_000, "3618.4 ± 356.8 (Hopper-v3, 1M)")}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--episodes", type=int, default=10)
  ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  args = ap.parse_args()
  lines = [f"$ python bench/defaults.py --episodes {args.episodes}"]
  for env, (budget, peer) in TASKS.items():
    means = []
    for seed in args.seeds:
      run = os.path.join(ROOT, "runs", f"{env}-seed{seed}")
      if not os.path.exists(os.path.join(run, "checkpoint.npz")):   # train it: defaults only
        train.train(env, steps=budget, seed=seed, out=run, overwrite=True, log=lambda s: None)
      cfg = rundir.load_checkpoint(run)[0]
      expected = train.make_config({"env": env, "seed": seed, "steps": cfg["steps"]}, None,
                                   False, note=lambda s: None)
      # Options a checkpoint predates were their DEFAULTS value then.
      differ = {k: (cfg[k], v) for k, v in expected.items()
                if k in cfg and cfg[k] != (list(v) if isinstance(v, tuple) else v)}
      if differ:
        raise SystemExit(f"{run} was not trained with the family defaults: {differ}")
      returns = train.evaluate(run, episodes=args.episodes)
      means.append(statistics.mean(returns))
    lines.append(f"{env}: `python train.py --env {env} --steps {budget}` (defaults), seeds "
                 f"{args.seeds}: deterministic evaluation over {args.episodes} episodes "
                 f"{', '.join(f'{m:.1f}' for m in means)} (mean {statistics.mean(means):.1f}); "
                 f"RL Zoo TRPO {peer}")
  text = "\n".join(lines)
  with open(os.path.join(ROOT, "results", "defaults.txt.tmp"), "w") as f:
    f.write(text + "\n")
  os.replace(os.path.join(ROOT, "results", "defaults.txt.tmp"),
             os.path.join(ROOT, "results", "defaults.txt"))
  print(text)


if __name__ == "__main__":
  main()
