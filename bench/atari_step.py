"""What the Atari policy update costs with XLA's convolution and with `policies.conv`, as ratios
measured in one run.

Samples one batch of --batch Pong frames (8 environments, the initial policy, frames normalised
per pixel as in training), then times, each as the median of --repeats calls after a warm-up:
the network's forward pass on the batch (also in chunks, `trpo.apply_in_chunks`, as the line
search computes it), the gradient of the surrogate L (Eq. (14)), and the whole `trpo.step`, for
the CNN of Figure 3 built with `stax.Conv` (`lax.conv_general_dilated`, differentiated by XLA)
and with `policies.conv` (the same function, transposed as matrix products). The two
networks have the same parameters; their steps agree to float rounding. Prints one line per
measurement and `step lax/conv: X` last.

  python bench/atari_step.py [--batch 2048] [--repeats 5]
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import stax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envs  # noqa: E402
import policies  # noqa: E402
import obsnorm  # noqa: E402
import sampling  # noqa: E402
import trpo  # noqa: E402
from step_cost import timeit  # noqa: E402


def lax_cnn(out_dim):
  """policies.atari_cnn with stax.Conv in place of policies.conv (same parameters)."""
  conv = lambda: stax.Conv(16, (4, 4), (2, 2))
  return stax.serial(policies.frames_to_nhwc(), conv(), stax.Relu, conv(), stax.Relu,
                     stax.Flatten, stax.Dense(20), stax.Relu,
                     stax.Dense(out_dim, W_init=jax.nn.initializers.normal(0.01),
                                b_init=jax.nn.initializers.zeros))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch", type=int, default=2048)
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  venv, obs = envs.make("ALE/Pong-v5", 8, seed=0)
  policy = envs.policy_for(venv.single_observation_space, venv.single_action_space)
  shape = venv.single_observation_space.shape
  params = policy["init"](jax.random.PRNGKey(0), shape)
  roll, obs, _ = sampling.single_path(venv, obs, policy, params, None, jax.random.PRNGKey(1),
                                      args.batch // 8)
  venv.close()
  stats = obsnorm.obs_stats_update(obsnorm.obs_stats_init(shape), sampling.flatten(roll["obs"]))
  adv, _ = sampling.advantages(roll, obs, lambda o: np.zeros(len(o), np.float32), "gae", 0.99,
                               0.95)
  batch = sampling.policy_batch(sampling.flatten(roll["obs"]), sampling.flatten(roll["actions"]),
                                 sampling.flatten(adv), stats)
  n_actions = int(venv.single_action_space.n)
  variants = {"lax": policies.categorical_policy(lax_cnn(n_actions)), "conv": policy}
  times, steps = {}, {}
  for name, pol in variants.items():
    fwd = jax.jit(lambda p, o, pol=pol: pol["apply"](p, o))
    grad = jax.jit(lambda p, b, pol=pol: jax.grad(lambda q: trpo.surrogate(
        pol, q, dict(b, logp_q=jax.lax.stop_gradient(
            pol["dist"]["log_prob"](pol["apply"](p, b["obs"]), b["actions"])))))(p))
    chunked = jax.jit(lambda p, o, pol=pol: trpo.apply_in_chunks(pol["apply"], p, o))
    steps[name] = trpo.step(params, batch, pol, jax.random.PRNGKey(2))[0]
    times[name] = {"forward": timeit(lambda: fwd(params, batch["obs"]), args.repeats),
                   "forward in chunks": timeit(lambda: chunked(params, batch["obs"]),
                                               args.repeats),
                   "gradient": timeit(lambda: grad(params, batch), args.repeats),
                   "step": timeit(lambda: trpo.step(params, batch, pol, jax.random.PRNGKey(2)),
                                  args.repeats)}
  diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
      jax.tree_util.tree_leaves(steps["lax"]), jax.tree_util.tree_leaves(steps["conv"])))
  print(f"# {args.batch} Pong frames {shape}; median of {args.repeats} calls; largest difference "
        f"between the two steps' new parameters: {diff:.1e}")
  for what in ("forward", "forward in chunks", "gradient", "step"):
    print(f"{what}: lax {times['lax'][what]:.3f} s, conv {times['conv'][what]:.3f} s")
  print(f"forward/forward in chunks: conv "
        f"{times['conv']['forward'] / times['conv']['forward in chunks']:.2f}")
  for what in ("forward", "gradient"):
    print(f"{what} lax/conv: {times['lax'][what] / times['conv'][what]:.2f}")
  print(f"step lax/conv: {times['lax']['step'] / times['conv']['step']:.2f}")


if __name__ == "__main__":
  main()
