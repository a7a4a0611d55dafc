"""Vine branch rollouts: one at a time, in lockstep, and in worker processes, on one batch.

  python bench/vine_parallel.py [--env Hopper-v5] [--workers 2] [--states 125] [--copies 16]

Builds the same vine batch (Section 5.2: trunk, N states, K = 4 actions, T = 50) from the same
key three ways: the branches one after another in this process (one policy call per branch
step, as before lockstep), in lockstep groups of --copies environment copies (one policy call
per step per group), and in a `workers.branch_pool` of --workers processes holding --copies
copies each. Each is timed after one warm-up batch (process start, compilation). Prints how
far the Q̂ estimates of lockstep are from one-at-a-time (float32 rounding of the batched policy
call changes Gaussian actions in their last bits), whether the worker batch equals the lockstep
one, and the speed-ups, `one-at-a-time/lockstep: X` last (whole vine batch, trunk included).
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
import workers  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="Hopper-v5")
  ap.add_argument("--workers", type=int, default=2)
  ap.add_argument("--states", type=int, default=125)
  ap.add_argument("--trunk", type=int, default=1000)
  ap.add_argument("--copies", type=int, default=16)
  args = ap.parse_args()
  env, obs = envs.make_single(args.env, 0)
  copies = [env] + [envs.make_single(args.env, 0)[0] for _ in range(args.copies - 1)]
  policy = envs.policy_for(env.observation_space, env.action_space, (64, 64), False, 0.0)
  params = policy["init"](jax.random.PRNGKey(0), env.observation_space.shape)
  pool = workers.branch_pool(args.env, 0, args.workers, args.copies)
  kw = dict(n_states=args.states, n_actions=4, horizon=50, gamma=0.99, trunk_steps=args.trunk)
  modes = {"one-at-a-time": {}, "lockstep": {"copies": copies},
           "workers": {"copies": [None] * args.copies, "pool": pool}}
  timings, batches = {}, {}
  try:
    for name in list(modes) * 2:   # the first pass warms up
      snap = envs.get_state(env)
      t0 = time.perf_counter()
      batch, _, _, steps = sampling.vine(env, {"obs": obs, "ret": 0.0, "len": 0}, policy,
                                         params, None, jax.random.PRNGKey(1), **kw,
                                         **modes[name])
      timings[name] = time.perf_counter() - t0
      batches[name] = batch
      envs.set_state(env, snap)
  finally:
    pool["shutdown"]()
    for c in copies:
      c.close()
  q1, ql = batches["one-at-a-time"]["q"], batches["lockstep"]["q"]
  same = all(np.array_equal(batches["lockstep"][k], batches["workers"][k])
             for k in batches["lockstep"])
  print(f"{args.env}: {steps} simulator steps per vine batch ({args.trunk} trunk, "
        f"{args.states}×4 branches of 50); lockstep vs one-at-a-time: max |ΔQ̂| "
        f"{np.max(np.abs(ql - q1)):.2e} (Q̂ spread {np.ptp(q1):.2f}); workers equal lockstep: "
        f"{same}")
  print(", ".join(f"{k} {v:.2f} s" for k, v in timings.items()) +
        f" ({args.copies} copies, {args.workers} workers)")
  print(f"lockstep/workers: {timings['lockstep'] / timings['workers']:.2f}")
  print(f"one-at-a-time/lockstep: {timings['one-at-a-time'] / timings['lockstep']:.2f}")
  if not same:
    sys.exit(1)


if __name__ == "__main__":
  main()
