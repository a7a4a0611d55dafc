"""EnvPool's Atari against this project's Atari environments, in one run (speed only).

  python bench/atari_envpool.py [--game Pong] [--num-envs 8] [--steps 20000]

Steps `--steps` environment steps with random actions: (1) `envs.make("ALE/GAME-v5", N)`, what
train.py uses (Gymnasium's AtariPreprocessing and frame stack, 42×42 frames, one worker process
per copy); (2) EnvPool's own Atari task with the nearest options (42×42 gray frames by area
resize, a stack of 4, frame skip 4, up to 30 no-ops, no reward clipping, no life-loss episodes,
no FIRE reset, the 108,000-frame cap, no sticky actions) on two threads. Prints steps/s of each
and their ratio. The preprocessing is not shown equal here: this measures whether adopting
EnvPool for Atari would be worth proving it.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402


def rate(env, steps, num_envs, n_actions):
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for _ in range(steps // num_envs):
    env.step(rng.integers(0, n_actions, num_envs))
  return steps // num_envs * num_envs / (time.perf_counter() - start)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--game", default="Pong")
  ap.add_argument("--num-envs", type=int, default=8)
  ap.add_argument("--steps", type=int, default=20_000)
  args = ap.parse_args()
  import envpool
  ours, _ = envs.make(f"ALE/{args.game}-v5", args.num_envs, seed=0)
  n = int(ours.single_action_space.n)
  ours_rate = rate(ours, args.steps, args.num_envs, n)
  envs.close(ours)
  pool = envpool.make_gymnasium(
      f"{args.game}-v5", num_envs=args.num_envs, num_threads=2, seed=0, img_height=42,
      img_width=42, stack_num=4, gray_scale=True, frame_skip=4, noop_max=30, reward_clip=False,
      episodic_life=False, use_fire_reset=False, repeat_action_probability=0.0,
      max_episode_steps=27_000, use_inter_area_resize=True)
  pool.reset()
  pool_rate = rate(pool, args.steps, args.num_envs, n)
  pool.close()
  print(f"# ALE/{args.game}-v5, {args.num_envs} copies, {args.steps} random steps; "
        f"observations {ours.single_observation_space.shape} and {pool.observation_space.shape}")
  print(f"this project (Gymnasium, one process per copy): {ours_rate:.0f} steps/s; EnvPool (two "
        f"threads): {pool_rate:.0f} steps/s; EnvPool/this: {pool_rate / ours_rate:.2f}")


if __name__ == "__main__":
  main()
