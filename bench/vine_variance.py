"""Variance of the surrogate-gradient estimate, vine against single path, at equal simulator steps.

Section 5.2 claims the vine estimate of the objective "has much lower variance given the same
number of Q-value samples". At a fixed policy, this script draws R independent batches of each
kind, each costing about the same number of simulator steps, computes g = ∇_θ L(θ) for each
(`trpo.surrogate` on a single-path batch with the paper's discounted returns, and on a vine
batch), and prints, per method, the signal-to-noise ratio |E g|² / tr Cov(g) (|E g|² estimated
without bias as |ḡ|² − tr Cov/R) and the mean
cosine between independent estimates; both are scale-free, so the two estimators (which differ
by constant factors) can be compared. The last line is `vine/single_path SNR: X`.

  python bench/vine_variance.py [--env CartPole-v1] [--budget 10000] [--repeats 16]
      [--train-steps 20000]

The policy is first trained for --train-steps with single-path TRPO (seed 0), so that the
gradient is measured at a policy that is neither random nor solved.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import obsnorm  # noqa: E402
import sampling  # noqa: E402
import train  # noqa: E402
import trpo  # noqa: E402


def stats_of(grads):
  g = np.stack(grads)
  mean = g.mean(0)
  noise = np.sum(g.var(0, ddof=1))
  unit = g / np.linalg.norm(g, axis=1, keepdims=True)
  cos = unit @ unit.T
  n = len(g)
  # |ḡ|² over-estimates |E g|² by tr Cov / n: subtract it (unbiased signal estimate).
  return float((mean @ mean - noise / n) / noise), float((cos.sum() - n) / (n * (n - 1)))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="CartPole-v1")
  ap.add_argument("--budget", type=int, default=10_000, help="simulator steps per estimate")
  ap.add_argument("--repeats", type=int, default=16)
  ap.add_argument("--train-steps", type=int, default=20_000)
  ap.add_argument("--gamma", type=float, default=0.99)
  ap.add_argument("--horizon", type=int, default=50, help="vine branch length T")
  ap.add_argument("--actions", type=int, default=4, help="vine K (discrete: every action)")
  args = ap.parse_args()
  trained = train.train(args.env, args.train_steps, seed=0, log=lambda s: None)
  policy, params, stats = trained["policy"], trained["params"], trained["state"]["stats"]
  apply, dist = policy["apply"], policy["dist"]
  flat0, unravel = ravel_pytree(params)
  probe, _ = envs.make_single(args.env)
  space = probe.action_space
  probe.close()
  discrete = envs.action_kind(space) == "categorical"

  sp_grads, vine_grads, sp_steps, vine_steps = [], [], [], []
  key = jax.random.PRNGKey(1)
  for r in range(args.repeats):
    key, k1, k2 = jax.random.split(key, 3)
    # Single path: `budget` steps in 8 environments, Q̂ = discounted returns (Section 5.1).
    venv, obs = envs.make(args.env, 8, seed=100 + r)
    roll, _, _ = sampling.single_path(venv, obs, policy, params, stats, k1, args.budget // 8)
    venv.close()
    q = sampling.discounted_returns(roll["rewards"], roll["terminated"] | roll["truncated"],
                                    args.gamma).reshape(-1)
    o = obsnorm.normalize(stats, jnp.asarray(roll["obs"].reshape((-1,) + roll["obs"].shape[2:])))
    a = jnp.asarray(roll["actions"].reshape((-1,) + roll["actions"].shape[2:]))
    b = {"obs": o, "actions": a, "adv": jnp.asarray(q),
         "logp_q": dist["log_prob"](apply(params, o), a)}
    sp_grads.append(np.asarray(jax.grad(lambda f: trpo.surrogate(policy, unravel(f), b))(flat0)))
    sp_steps.append(q.size)
    # Vine with the same simulator budget: trunk + N·K branches of length T.
    k = space.n if discrete else args.actions
    trunk_len = args.budget // 5
    n_states = max(1, (args.budget - trunk_len) // (k * args.horizon))
    env, first = envs.make_single(args.env, seed=100 + r)
    vb, _, _, used = sampling.vine(env, {"obs": first, "ret": 0.0, "len": 0}, policy, params,
                                   stats, k2, n_states=n_states, n_actions=k,
                                   horizon=args.horizon, gamma=args.gamma, trunk_steps=trunk_len,
                                   q="all" if discrete else "policy")
    env.close()
    vb = {k: jnp.asarray(v) for k, v in vb.items()}
    vb["obs"] = obsnorm.normalize(stats, vb["obs"])
    vine_grads.append(np.asarray(jax.grad(lambda f: trpo.surrogate(policy, unravel(f), vb))(
        flat0)))
    vine_steps.append(used)
  sp_snr, sp_cos = stats_of(sp_grads)
  v_snr, v_cos = stats_of(vine_grads)
  print(f"# {args.env}, policy after {args.train_steps} single-path steps, {args.repeats} "
        f"estimates each; simulator steps per estimate: single path {np.mean(sp_steps):.0f}, "
        f"vine {np.mean(vine_steps):.0f} (T = {args.horizon})")
  print(f"single_path: SNR |mean g|²/tr Cov g = {sp_snr:.3f}, mean cosine between estimates = "
        f"{sp_cos:.3f}")
  print(f"vine:        SNR |mean g|²/tr Cov g = {v_snr:.3f}, mean cosine between estimates = "
        f"{v_cos:.3f}")
  print(f"vine/single_path SNR: {v_snr / sp_snr:.2f}")


if __name__ == "__main__":
  main()
