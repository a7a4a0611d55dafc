"""How the size of the Fisher subsample shapes an Atari update, measured in one run.

Appendix C.1 computes the Fisher-vector products on 10% of the batch. The paper's Atari batches
are 100K steps, so 10% is 10K states; ours are 2,048 steps, so 10% is 205 states, and a
categorical policy's Fisher on 205 states has rank at most 205·(actions − 1), far below the
CNN's 31K parameters. Outside that span only the damping holds the CG step back, the quadratic
model underestimates the KL, and the line search must shrink the step.

Loads a trained run's checkpoint (default: Pong single path after 5M steps, the committed copy
in results/table1/resume/), samples --batches batches of --batch steps with its policy and
computes advantages with its estimator and value function, as training does. On each batch it takes
`trpo.step` with each subsample fraction and prints, per fraction, the mean over the batches of
the line search's backtracks, the accepted step's surrogate improvement L(θ_new) − L(θ_old) and
its mean KL, and the median time of the step as a ratio to the 10% step's, measured in this run;
then the 10% step's time with the line search's forward passes in one call each instead of in
chunks (`trpo.apply_in_chunks` replaced for this measurement), as the same ratio.
Last, the mean backtracks of every committed Table 1 log (results/table1/resume/).

  python bench/fisher_subsample.py [--run results/table1/resume/Pong-single_path] [--batches 4]
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rundir  # noqa: E402
import sampling  # noqa: E402
import train  # noqa: E402
import trpo  # noqa: E402
import value  # noqa: E402
from learning import ROOT, read_log  # noqa: E402
from step_cost import timeit  # noqa: E402

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--run", default=os.path.join(ROOT, "results", "table1", "resume",
                                                "Pong-single_path"))
  ap.add_argument("--batches", type=int, default=4)
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()
  cfg, data = rundir.load_checkpoint(args.run)
  cfg = dict(train.DEFAULTS, **cfg)
  built = train.build(cfg)
  state = rundir.restore_state(train.init_state(cfg, built), data, cfg)
  policy, obs, params, stats = built["policy"], built["obs"], state["params"], state["stats"]
  predict = value.predictor(state["vparams"], stats, built["value"][1])
  results = {f: [] for f in FRACTIONS}
  for i in range(args.batches):
    roll, obs, _ = sampling.single_path(built["env"], obs, policy, params, stats,
                                        jax.random.PRNGKey(100 + i),
                                        cfg["batch"] // cfg["num_envs"])
    adv, _ = sampling.advantages(roll, obs, predict, cfg["estimator"], cfg["gamma"], cfg["lam"])
    batch = sampling.policy_batch(sampling.flatten(roll["obs"]),
                                   sampling.flatten(roll["actions"]), sampling.flatten(adv), stats)
    for f in FRACTIONS:
      _, info = trpo.step(params, batch, policy, jax.random.PRNGKey(i), delta=cfg["delta"],
                          subsample=f)
      results[f].append([float(info[k]) for k in ("backtracks", "actual_improve", "kl")])
  seconds = {f: timeit(lambda: trpo.step(params, batch, policy, jax.random.PRNGKey(0),
                                         delta=cfg["delta"], subsample=f), args.repeats)
             for f in FRACTIONS}
  chunked = trpo.apply_in_chunks
  trpo.apply_in_chunks = lambda apply, p, o, size=None: apply(p, o)
  jax.clear_caches()   # trpo.step was compiled with the chunks
  one_call = timeit(lambda: trpo.step(params, batch, policy, jax.random.PRNGKey(0),
                                      delta=cfg["delta"], subsample=FRACTIONS[0]), args.repeats)
  trpo.apply_in_chunks = chunked
  built["env"].close()
  n = cfg["batch"]
  print(f"# {cfg['env']}, the policy of {os.path.relpath(args.run, ROOT)} after "
        f"{int(data['steps']):,} steps; {args.batches} batches of {n} steps; δ = {cfg['delta']}")
  print("subsample (states) | backtracks | surrogate improvement | KL | step time / 10% step's")
  for f in FRACTIONS:
    b, imp, kl = np.mean(results[f], axis=0)
    print(f"{f:.2f} ({int(round(f * n))}) | {b:.2f} | {imp:.4f} | {kl:.4f} | "
          f"{seconds[f] / seconds[FRACTIONS[0]]:.2f}")
  print(f"0.10, the line search's passes in one call each (as before the chunks): "
        f"{one_call / seconds[FRACTIONS[0]]:.2f} (the timed batch: "
        f"{results[FRACTIONS[0]][-1][0]:.0f} backtracks)")
  print("the Table 1 runs (10%), mean backtracks per accepted step over each committed log:")
  kept = os.path.join(ROOT, "results", "table1", "resume")
  for name in sorted(os.listdir(kept)):
    log = read_log(os.path.join(kept, name))
    steps = [r["backtracks"] for r in log if r["accepted"]]
    if steps:
      print(f"  {name}: {np.mean(steps):.2f} over {len(steps)} of {len(log)} iterations")


if __name__ == "__main__":
  main()
