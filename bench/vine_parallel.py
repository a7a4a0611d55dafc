"""Vine branch rollouts in worker processes against in-process, on one vine batch.

  python bench/vine_parallel.py [--env Hopper-v5] [--workers 2] [--states 125]

Builds the same vine batch (Section 5.2: trunk, N states, K = 4 actions, T = 50) twice from the
same key, once with the branches in this process and once in a `sampling.branch_pool` of
--workers processes (after one warm-up batch each, which pays for process start and
compilation), checks that the two batches are identical, and prints
`serial/parallel: X` last (the speed-up of the whole vine batch, trunk included).
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import sampling  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="Hopper-v5")
  ap.add_argument("--workers", type=int, default=2)
  ap.add_argument("--states", type=int, default=125)
  ap.add_argument("--trunk", type=int, default=1000)
  args = ap.parse_args()
  env, obs = envs.make_single(args.env, 0)
  policy = envs.policy_for(env.observation_space, env.action_space, (64, 64), False, 0.0)
  params = policy["init"](jax.random.PRNGKey(0), env.observation_space.shape)
  pool = sampling.branch_pool(args.env, 0, args.workers)
  kw = dict(n_states=args.states, n_actions=4, horizon=50, gamma=0.99, trunk_steps=args.trunk)
  timings, batches = {}, {}
  try:
    for name, p in (("serial", None), ("parallel", pool)) * 2:   # the first pass warms up
      snap = envs.get_state(env)
      t0 = time.perf_counter()
      batch, _, _, steps = sampling.vine(env, {"obs": obs, "ret": 0.0, "len": 0}, policy,
                                         params, None, jax.random.PRNGKey(1), pool=p, **kw)
      timings[name] = time.perf_counter() - t0
      batches[name] = batch
      envs.set_state(env, snap)
  finally:
    pool.shutdown()
  same = all(np.array_equal(batches["serial"][k], batches["parallel"][k])
             for k in batches["serial"])
  print(f"{args.env}: {steps} simulator steps per vine batch ({args.trunk} trunk, "
        f"{args.states}×4 branches of 50); identical batches: {same}")
  print(f"serial {timings['serial']:.2f} s, {args.workers} workers {timings['parallel']:.2f} s")
  print(f"serial/parallel: {timings['serial'] / timings['parallel']:.2f}")
  if not same:
    sys.exit(1)


if __name__ == "__main__":
  main()
