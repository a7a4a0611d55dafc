"""How much the learner costs next to the simulator, as a ratio measured in one run.

Runs TRPO training (`train.train`) for --steps environment steps, then steps the same vector
environment (same id, number of copies, seed and backend) with random actions for the same number of
steps, and prints the wall-time ratio. The training time excludes the first iteration, which
includes JAX's one-off compilation, and the env-only loop is timed over the same number of
steps as the remaining iterations. The last line is `train/env-only: X` (target ≤ 1.3).

  python bench/train_speed.py [--env Hopper-v5] [--steps 100000] [--batch 4096] [--num-envs 16] [--backend B]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import train  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="Hopper-v5")
  ap.add_argument("--steps", type=int, default=100_000)
  ap.add_argument("--batch", type=int, default=4096)
  ap.add_argument("--num-envs", type=int, default=16)
  ap.add_argument("--backend", choices=envs.BACKENDS, help="default: the task's (train.py's)")
  args = ap.parse_args()
  times = []
  t_start = time.perf_counter()
  run = train.train(args.env, args.steps, seed=0, batch=args.batch, num_envs=args.num_envs,
                    normalize_obs=True, log=lambda s: times.append(time.perf_counter()),
                    **({"backend": args.backend} if args.backend else {}))
  hist, backend = run["history"], run["config"]["backend"]
  t_total = time.perf_counter() - t_start
  train_time = times[-1] - times[0]            # iterations 2..n, after compilation
  train_steps = hist[-1]["steps"] - hist[0]["steps"]

  venv, _ = envs.make(args.env, args.num_envs, seed=0, backend=backend)
  space = venv.single_action_space
  n_vec = train_steps // args.num_envs
  t0 = time.perf_counter()
  for _ in range(n_vec):
    venv.step(envs.env_action(space, venv.action_space.sample()))
  env_time = time.perf_counter() - t0
  venv.close()
  print(f"# {args.env} on {backend}, {args.num_envs} envs, batch {args.batch}: training "
        f"{train_steps} steps "
        f"in {train_time:.1f} s after the first iteration ({t_total:.1f} s in all), random "
        f"actions {n_vec * args.num_envs} steps in {env_time:.1f} s")
  print(f"train/env-only: {train_time / env_time:.2f}")


if __name__ == "__main__":
  main()
