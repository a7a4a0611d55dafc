"""The action probabilities of a saved discrete-action policy along one episode of its task.

  python bench/policy_probe.py runs/table1/Breakout-single_path [--steps 3000] [--seed 7]

Loads DIR/checkpoint.npz, plays the stochastic policy π_θ(·|s) (actions sampled, as in training)
in one environment for --steps steps and prints, per window of 100 steps, the mean probability
of each action and the smallest probability of each action in the window, then the episodes
that ended and their returns. How the Breakout single-path run of Table 1 was found to wait
forever for a serve: NOOP ≈ 1 and FIRE ≈ 2·10⁻⁵ in the waiting frame (README, Table 1).
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sampling  # noqa: E402
import rundir  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("run_dir")
  ap.add_argument("--steps", type=int, default=3000)
  ap.add_argument("--seed", type=int, default=7)
  args = ap.parse_args()
  saved = rundir.load_policy(args.run_dir, args.seed)
  cfg, venv, obs, policy = saved["config"], saved["env"], saved["obs"], saved["policy"]
  params, stats = saved["params"], saved["stats"]
  if policy["dist"]["name"] != "categorical":
    venv.close()
    sys.exit(f"policy_probe: needs a categorical policy, the run's is {policy['dist']['name']}")
  try:   # ALE games name their actions; other tasks get numbers
    names = list(venv.unwrapped.call("get_action_meanings")[0])
  except AttributeError:
    names = [str(a) for a in range(venv.single_action_space.n)]
  rng, probs, ended, ret = np.random.default_rng(args.seed), [], [], 0.0
  try:
    for t in range(args.steps):
      x = sampling.normalize(stats, jnp.asarray(sampling.as_input(obs)))
      p = np.asarray(jax.nn.softmax(policy["apply"](params, x)["logits"], -1), np.float64)[0]
      probs.append(p)
      obs, r, term, trunc, _ = venv.step(np.array([rng.choice(len(p), p=p / p.sum())]))
      ret += float(r[0])
      if term[0] or trunc[0]:
        ended.append((t + 1, ret))
        ret = 0.0
  finally:
    venv.close()
  probs = np.array(probs)
  print(f"{args.run_dir}: {cfg['env']}, {args.steps} steps of the stochastic policy, seed "
        f"{args.seed}; actions {names}")
  for lo in range(0, args.steps, 100):
    w = probs[lo:lo + 100]
    print(f"steps {lo:5d}-{lo + len(w) - 1:5d}  mean p " + " ".join(f"{x:.6f}" for x in w.mean(0))
          + "  min p " + " ".join(f"{x:.1e}" for x in w.min(0)))
  print(f"episodes ended (step, return): {ended}; return of the unfinished one so far: {ret}")


if __name__ == "__main__":
  main()
