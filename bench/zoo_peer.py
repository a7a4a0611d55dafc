"""The peer's own run here: sb3-contrib's TRPO with the RL Zoo's settings, evaluated as the Zoo does.

  pip install -e ".[peers]"
  python bench/zoo_peer.py --env Ant-v5 [--seed 0] [--steps 1000000] [--episodes 10] [--json]

The RL Zoo's published TRPO figures (bench/defaults.py) are one run each on the v3 MuJoCo
tasks. Where train.py's defaults stay below a figure, this trains the peer itself on the same
v5 task, on this machine: sb3-contrib's TRPO with the Zoo's hyperparameters for MuJoCo
(hyperparams/trpo.yml of github.com/DLR-RM/rl-baselines3-zoo: observations and rewards
normalised by VecNormalize, 2 environments × 1,024 steps, γ = 0.99, λ = 0.95, CG 25 iterations
with damping 0.1, 20 critic epochs of minibatches of 128 at lr 1e-3; target KL 0.04 on
HalfCheetah, γ = 0.9999 on Swimmer), then evaluates the deterministic policy for --episodes
episodes (observation statistics frozen, rewards raw), seed 12345. Appends one line to
results/zoo-peer.txt; with --json, prints its numbers as one JSON object last (for
bench/side_by_side.py). sb3-contrib is the `peers` extra: only this script needs it.
"""

import argparse
import json
import os
import statistics
import sys
import time

import gymnasium as gym

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults import provenance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = {"n_steps": 1024, "batch_size": 128, "gamma": 0.99, "gae_lambda": 0.95,
       "sub_sampling_factor": 1, "cg_max_steps": 25, "cg_damping": 0.1, "n_critic_updates": 20,
       "learning_rate": 1e-3}
TASK = {"HalfCheetah-v5": {"target_kl": 0.04}, "Swimmer-v5": {"gamma": 0.9999}}


def main():
  import torch
  from sb3_contrib import TRPO
  from stable_baselines3.common.env_util import make_vec_env
  from stable_baselines3.common.vec_env import VecNormalize
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", required=True)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--steps", type=int, default=1_000_000)
  ap.add_argument("--episodes", type=int, default=10)
  ap.add_argument("--json", action="store_true", help="print the numbers as JSON, last")
  args = ap.parse_args()
  torch.set_num_threads(1)   # one core, as each run of train.py here
  settings = dict(ZOO, **TASK.get(args.env, {}))
  venv = VecNormalize(make_vec_env(args.env, n_envs=2, seed=args.seed), gamma=settings["gamma"])
  model = TRPO("MlpPolicy", venv, seed=args.seed, device="cpu", verbose=0, **settings)
  start = time.time()
  model.learn(total_timesteps=args.steps)
  seconds = time.time() - start
  venv.training, venv.norm_reward = False, False     # as the Zoo evaluates
  env = gym.make(args.env)
  returns = []
  obs, _ = env.reset(seed=12345)
  total = 0.0
  while len(returns) < args.episodes:
    action, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    obs, reward, terminated, truncated, _ = env.step(action)
    total += reward
    if terminated or truncated:
      returns.append(total)
      total = 0.0
      obs, _ = env.reset()
  line = (f"{args.env} seed {args.seed}: sb3-contrib TRPO with the RL Zoo's settings {settings}, "
          f"{args.steps} steps ({seconds / 60:.1f} min): deterministic evaluation over "
          f"{args.episodes} episodes {statistics.mean(returns):.1f} ± "
          f"{statistics.pstdev(returns):.1f}")
  with open(os.path.join(ROOT, "results", "zoo-peer.txt"), "a") as f:
    f.write(f"$ python bench/zoo_peer.py --env {args.env} --seed {args.seed} --steps "
            f"{args.steps} --episodes {args.episodes}\n# {provenance()}\n{line}\n")
  print(line)
  if args.json:
    print(json.dumps({"seconds": seconds, "returns": returns}))


if __name__ == "__main__":
  main()
