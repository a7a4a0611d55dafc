"""What one TRPO update costs, as ratios measured in one run (Appendix C.1's claim).

Appendix C.1: with the Fisher-vector product computed on 10% of the data, "the computation of a
natural gradient step A⁻¹g does not incur a significant extra computational cost beyond
computing the gradient g". This script builds a Hopper-sized Gaussian MLP policy (observation
11, action 3, two hidden layers of 64) and a batch of 50,000 samples and times, each as the
median of several jitted calls after a warm-up call:

  grad          one jitted gradient of the surrogate L (Eq. (14)) on the whole batch
  step_sub      trpo.step, JᵀMJ Fisher product on a 10% subsample
  step_full     trpo.step, JᵀMJ on the whole batch
  step_hessian  trpo.step, Fisher product by double differentiation of the mean KL, whole batch
  step_10k/50k/250k   trpo.step (10% subsample) at three batch sizes

and prints ratios, one per line, the last being `step/grad: X`. Absolute seconds on a shared
machine are not stable; ratios measured in the same run are.

  python bench/step_cost.py [--repeats R]
"""

import argparse
import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import policies  # noqa: E402
import trpo  # noqa: E402

OBS_DIM, ACT_DIM = 11, 3
POLICY = policies.gaussian_policy(policies.mlp((64, 64), ACT_DIM), ACT_DIM)


def make_batch(params, n, seed=0):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  obs = jax.random.normal(k1, (n, OBS_DIM))
  mu = POLICY["apply"](params, obs)
  actions = POLICY["dist"]["sample"](k2, mu)
  adv = jax.random.normal(k3, (n,)) + actions[:, 0]
  return {"obs": obs, "actions": actions, "adv": adv,
          "logp_q": POLICY["dist"]["log_prob"](mu, actions), "old_dist": mu}


@jax.jit
def surrogate_grad(params, batch):
  return jax.grad(lambda p: trpo.surrogate(POLICY, p, batch))(params)


def timeit(fn, repeats):
  jax.block_until_ready(fn())          # compile and warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=15)
  args = ap.parse_args()
  params = POLICY["init"](jax.random.PRNGKey(0), (OBS_DIM,))
  key = jax.random.PRNGKey(1)
  batches = {n: make_batch(params, n) for n in (10_000, 50_000, 250_000)}
  b = batches[50_000]
  # Interleave the measurements so that a burst of load on the shared machine hits all alike.
  fns = {
      "grad": lambda: surrogate_grad(params, b),
      "step_sub": lambda: trpo.step(params, b, POLICY, key, subsample=0.1),
      "step_full": lambda: trpo.step(params, b, POLICY, key, subsample=1.0),
      "step_hessian": lambda: trpo.step(params, b, POLICY, key, subsample=1.0, fisher=trpo.fisher_vp_hessian),
      "step_10k": lambda: trpo.step(params, batches[10_000], POLICY, key, subsample=0.1),
      "step_250k": lambda: trpo.step(params, batches[250_000], POLICY, key, subsample=0.1),
  }
  t = {name: [] for name in fns}
  for name, fn in fns.items():
    jax.block_until_ready(fn())
  for _ in range(3):
    for name, fn in fns.items():
      t[name].append(timeit(fn, max(1, args.repeats // 3)))
  t = {name: statistics.median(v) for name, v in t.items()}
  t["step_50k"] = t["step_sub"]
  _, info = fns["step_sub"]()
  print(f"# jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{policies.n_params(params)} policy parameters, batch 50,000; median seconds: "
        + ", ".join(f"{k} {v:.4f}" for k, v in t.items()))
  print(f"# step_sub accepted={bool(info['accepted'])} kl={float(info['kl']):.5f} "
        f"backtracks={int(info['backtracks'])}")
  print(f"step_full/step_sub: {t['step_full'] / t['step_sub']:.2f}")
  print(f"hessian/jtmj (whole-batch Fisher): {t['step_hessian'] / t['step_full']:.2f}")
  print(f"step_50k/step_10k: {t['step_50k'] / t['step_10k']:.2f}   (linear: 5)")
  print(f"step_250k/step_50k: {t['step_250k'] / t['step_50k']:.2f}   (linear: 5)")
  print(f"step/grad: {t['step_sub'] / t['grad']:.2f}")


if __name__ == "__main__":
  main()
