"""The action probabilities of a saved discrete-action policy along its episodes.

  python bench/policy_probe.py runs/table1/Breakout-single_path [--steps 3000] [--seed 7 ...]

Loads DIR/checkpoint.npz and, for each --seed, plays the stochastic policy π_θ(·|s) (actions
sampled, as in training) in one environment for --steps steps and prints, per window of 100
steps, the mean probability of each action, the smallest probability of each action and the
mean entropy of π_θ(·|s) in nats (log 4 = 1.386 is uniform over 4 actions), then the episodes
that ended (their lengths and returns) and the one still running. With several seeds a last line counts the distinct (length, return) pairs: a near-deterministic
policy in a deterministic game plays the same few episodes again and again.
How the Breakout single-path run of Table 1 was found to wait forever for a serve: NOOP ≈ 1 and
FIRE ≈ 2·10⁻⁵ in the waiting frame (README, Table 1).
"""

import argparse
import collections
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import obsnorm  # noqa: E402
import sampling  # noqa: E402
import rundir  # noqa: E402
import train  # noqa: E402


def probe(run_dir, steps, seed):
  """Plays the saved policy for `steps` steps: {"env", "names", "probs" [steps, actions],
  "entropy" [steps], "episodes" [(length, return)] of those that ended, "running" (steps,
  return) of the last}."""
  saved = train.load_policy(run_dir, seed, train.checked_config)
  venv, obs, policy = saved["env"], saved["obs"], saved["policy"]
  params, stats = saved["params"], saved["stats"]
  try:
    if policy["dist"]["name"] != "categorical":
      sys.exit(f"policy_probe: needs a categorical policy, the run's is {policy['dist']['name']}")
    try:   # ALE games name their actions; other tasks get numbers
      names = list(venv.unwrapped.call("get_action_meanings")[0])
    except AttributeError:
      names = [str(a) for a in range(venv.single_action_space.n)]
    rng, probs, entropy, episodes, start, ret = np.random.default_rng(seed), [], [], [], 0, 0.0
    for t in range(steps):
      x = obsnorm.normalize(stats, jnp.asarray(sampling.as_input(obs)))
      logp = jax.nn.log_softmax(policy["apply"](params, x)["logits"][0])
      p = np.asarray(jnp.exp(logp), np.float64)
      probs.append(p)
      entropy.append(float(-jnp.sum(jnp.exp(logp) * logp)))   # log_softmax: no 0·log 0
      obs, r, term, trunc, _ = venv.step(np.array([rng.choice(len(p), p=p / p.sum())]))
      ret += float(r[0])
      if term[0] or trunc[0]:
        episodes.append((t + 1 - start, ret))
        start, ret = t + 1, 0.0
  finally:
    venv.close()
  return {"env": saved["config"]["env"], "names": names, "probs": np.array(probs),
          "entropy": np.array(entropy), "episodes": episodes, "running": (steps - start, ret)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("run_dir")
  ap.add_argument("--steps", type=int, default=3000)
  ap.add_argument("--seed", type=int, nargs="+", default=[7])
  args = ap.parse_args()
  print("$ python bench/policy_probe.py " + " ".join(sys.argv[1:]))
  print(f"checkpoint: {int(rundir.load_checkpoint(args.run_dir)[1]['steps']):,} steps")
  seen, entropies = collections.Counter(), []
  for seed in args.seed:
    out = probe(args.run_dir, args.steps, seed)
    print(f"{args.run_dir}: {out['env']}, {args.steps} steps of the stochastic policy, seed "
          f"{seed}; actions {out['names']}")
    for lo in range(0, args.steps, 100):
      w = out["probs"][lo:lo + 100]
      print(f"steps {lo:5d}-{lo + len(w) - 1:5d}  mean p " + " ".join(f"{x:.6f}" for x in w.mean(0))
            + "  min p " + " ".join(f"{x:.1e}" for x in w.min(0))
            + f"  entropy {out['entropy'][lo:lo + 100].mean():.4f}")
    print(f"episodes ended (length, return): {out['episodes']}; the running one: "
          f"{out['running'][0]} steps, return {out['running'][1]}")
    seen.update(out["episodes"])
    entropies.append(out["entropy"].mean())
  if len(args.seed) > 1:
    total = sum(seen.values())
    print(f"seeds {args.seed}: {total} episodes ended, {len(seen)} distinct (length, return): "
          + ", ".join(f"{k} ×{n}" for k, n in seen.most_common())
          + f"; mean entropy {np.mean(entropies):.4f} nats")


if __name__ == "__main__":
  main()
