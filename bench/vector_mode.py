"""Synchronous or asynchronous vector environments on this machine: steps per second of each.

Steps each task's vector environment (the same number of copies both ways) with random actions
and prints the ratio async/sync of throughput per task, measured in one run.

  python bench/vector_mode.py [--steps 4000] [--num-envs 8]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402


def rate(env_id, mode, num_envs, steps):
  venv, _ = envs.make(env_id, num_envs, seed=0, vectorization=mode)
  space = venv.single_action_space
  venv.step(envs.env_action(space, venv.action_space.sample()))
  t = time.perf_counter()
  for _ in range(steps // num_envs):
    venv.step(envs.env_action(space, venv.action_space.sample()))
  elapsed = time.perf_counter() - t
  venv.close()
  return steps // num_envs * num_envs / elapsed


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--steps", type=int, default=4000)
  ap.add_argument("--num-envs", type=int, default=8)
  args = ap.parse_args()
  for env_id in ("CartPole-v1", "Hopper-v5", "Walker2d-v5", "ALE/Pong-v5"):
    sync = rate(env_id, "sync", args.num_envs, args.steps)
    asyn = rate(env_id, "async", args.num_envs, args.steps)
    print(f"{env_id:14s} sync {sync:8.0f} steps/s   async {asyn:8.0f} steps/s   "
          f"async/sync: {asyn / sync:.2f}")


if __name__ == "__main__":
  main()
