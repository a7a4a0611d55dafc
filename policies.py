"""Policies: networks that map observations to distribution parameters µ, and the distributions.

Appendix D of the paper: "This neural network maps (deterministically) from the state vector s
to a vector µ, which specifies a distribution over action space. Then we can compute the
likelihood p(a|µ) and sample a ~ p(a|µ)."

Networks are `(init, apply)` pairs of pure functions built with `jax.example_libraries.stax`
(`init(key, input_shape) -> (output_shape, params)`, `apply(params, x)`): an MLP, a linear map
(the paper's cart-pole policy) and the Atari CNN of Figure 3.

A distribution is a module-level dict of pure functions over its parameters µ (a pytree whose
leaves have a leading batch axis):
  sample(key, µ) -> a        log_prob(µ, a) -> [B]       entropy(µ) -> [B]
  noise(key, µ) -> ξ         standard noise shaped for µ (Gaussian ε, or Gumbel for logits)
  transform(µ, ξ) -> a       the sample that noise ξ gives: sample = transform(µ, noise(key, µ))
  kl(µ_old, µ_new) -> [B]    always KL(old ‖ new), in closed form
  fisher_vp(µ, v) -> M v     M = kl''(µ, µ_old) at µ = µ_old, the Fisher metric in µ-space
                             (Appendix C.1, Eq. (57)); v has the structure of µ
  mode(µ) -> a               the most likely action (deterministic evaluation)
Three are provided (Appendix D): GAUSSIAN (diagonal, state-independent log standard deviation),
CATEGORICAL and FACTORED_CATEGORICAL (a tuple of independent categoricals, Gymnasium
`MultiDiscrete`).

A policy is a dict {"init": init(key, obs_shape) -> params, "apply": apply(params, obs[B, ...])
-> µ, "dist": one of the distributions}. `trpo.step` needs only "apply" and "dist".

Parameterisation note: the paper writes µ = [mean, stdev] for the Gaussian and µ = probabilities
for a categorical; we use µ = (mean, log_std) and µ = logits, which are numerically safer
(no 1/p for tiny p). The Fisher matrix in θ-space, JᵀMJ, does not depend on this choice: M
transforms with the Jacobian of the reparameterisation, and J with its inverse.
"""

import math

import jax
import jax.numpy as jnp
from jax.example_libraries import stax

import fastconv

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


# ----------------------------------------------------------------------------------------------
# Distributions (Appendix D).
# ----------------------------------------------------------------------------------------------

def _distribution(name, noise, transform, log_prob, entropy, kl, fisher_vp, mode):
  """A distribution dict from its functions, with sample(key, µ) = transform(µ, noise(key, µ))."""
  return {"name": name, "noise": noise, "transform": transform, "log_prob": log_prob,
          "entropy": entropy, "kl": kl, "fisher_vp": fisher_vp, "mode": mode,
          "sample": lambda key, mu: transform(mu, noise(key, mu))}


# Each sample is a deterministic transform of standard noise drawn apart from µ. Drawing the noise
# first lets a sampler draw it for a whole rollout at once, and reuse it: the same noise in every
# branch of a vine is the common random numbers of Section 5.2.

def _gaussian_noise(key, mu):
  """ε ~ N(0, I) shaped like the mean."""
  return jax.random.normal(key, mu["mean"].shape, mu["mean"].dtype)


def _gaussian_transform(mu, eps):
  """a = mean + σ ⊙ ε;  µ = {"mean": [B, d], "log_std": [B, d]}."""
  return mu["mean"] + jnp.exp(mu["log_std"]) * eps


def _gaussian_log_prob(mu, a):
  """log N(a; mean, diag σ²) = −½ Σᵢ [((aᵢ − meanᵢ)/σᵢ)² + 2 log σᵢ + log 2π];  a: [B, d] → [B]."""
  z = (a - mu["mean"]) * jnp.exp(-mu["log_std"])
  return -0.5 * jnp.sum(z**2 + 2.0 * mu["log_std"] + math.log(2.0 * math.pi), axis=-1)


def _gaussian_entropy(mu):
  """H = Σᵢ (log σᵢ + ½ log 2πe);  → [B]."""
  return jnp.sum(mu["log_std"] + 0.5 * _LOG_2PI_E, axis=-1)


def _expm1_minus_x(x):
  """eˣ − 1 − x ≥ 0 without cancellation: its Taylor series for |x| < 0.1 (truncation error
  below 10⁻⁸ relative), the direct difference beyond (where it is ≥ 0.005)."""
  series = x * x * (0.5 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x / 720))))
  return jnp.where(jnp.abs(x) < 0.1, series, jnp.expm1(x) - x)


def _gaussian_kl(old, new):
  """KL(old ‖ new) = Σᵢ [log σᵢⁿᵉʷ/σᵢᵒˡᵈ + (σᵢᵒˡᵈ² + (mᵢᵒˡᵈ − mᵢⁿᵉʷ)²) / (2σᵢⁿᵉʷ²) − ½];  → [B].

  Written as ½ Σᵢ [h(2dᵢ) + ((mᵢᵒˡᵈ − mᵢⁿᵉʷ)/σᵢⁿᵉʷ)²] with dᵢ = log σᵢᵒˡᵈ − log σᵢⁿᵉʷ and
  h(x) = eˣ − 1 − x (`_expm1_minus_x`): a sum of terms ≥ 0, each formed without cancellation,
  so a small KL keeps its relative precision in float32 and is never negative.
  """
  mean_term = ((old["mean"] - new["mean"]) * jnp.exp(-new["log_std"]))**2
  return 0.5 * jnp.sum(_expm1_minus_x(2.0 * (old["log_std"] - new["log_std"])) + mean_term,
                       axis=-1)


def _gaussian_fisher_vp(mu, v):
  """M v with M = kl''(µ, µ_old) at µ = µ_old for µ = (mean, log σ): M = diag(1/σ², 2).

  The mean block is 1/σ² (curvature of (m_old − m)²/(2σ²)); the log σ block is 2 (second
  derivative of log σ + σ_old²/(2σ²) at σ = σ_old); the cross terms vanish at µ = µ_old.
  """
  return {"mean": v["mean"] * jnp.exp(-2.0 * mu["log_std"]), "log_std": 2.0 * v["log_std"]}


def _gaussian_mode(mu):
  return mu["mean"]


GAUSSIAN = _distribution("gaussian", _gaussian_noise, _gaussian_transform, _gaussian_log_prob,
                         _gaussian_entropy, _gaussian_kl, _gaussian_fisher_vp, _gaussian_mode)


def _categorical_noise(key, mu):
  """Standard Gumbel noise shaped like the logits."""
  return {"logits": jax.random.gumbel(key, mu["logits"].shape, mu["logits"].dtype)}


def _categorical_transform(mu, g):
  """a = argmaxₖ (logitsₖ + gₖ), g ~ Gumbel: a ~ softmax(logits) (the Gumbel-max trick)."""
  return jnp.argmax(mu["logits"] + g["logits"], axis=-1)


def _categorical_log_prob(mu, a):
  """log p(a) = log softmax(logits)[a];  a: [B] → [B]."""
  logp = jax.nn.log_softmax(mu["logits"], axis=-1)
  return jnp.take_along_axis(logp, a[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _categorical_entropy(mu):
  """H = −Σₖ pₖ log pₖ;  → [B]."""
  logp = jax.nn.log_softmax(mu["logits"], axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def _categorical_kl(old, new):
  """KL(old ‖ new) = Σₖ pₖᵒˡᵈ (log pₖᵒˡᵈ − log pₖⁿᵉʷ);  → [B]."""
  logp_old = jax.nn.log_softmax(old["logits"], axis=-1)
  logp_new = jax.nn.log_softmax(new["logits"], axis=-1)
  return jnp.sum(jnp.exp(logp_old) * (logp_old - logp_new), axis=-1)


def _categorical_fisher_vp(mu, v):
  """M v with M = kl''(logits, logits_old) = diag(p) − p pᵀ (the softmax Jacobian)."""
  p = jax.nn.softmax(mu["logits"], axis=-1)
  pv = p * v["logits"]
  return {"logits": pv - p * jnp.sum(pv, axis=-1, keepdims=True)}


def _categorical_mode(mu):
  return jnp.argmax(mu["logits"], axis=-1)


CATEGORICAL = _distribution("categorical", _categorical_noise, _categorical_transform,
                            _categorical_log_prob, _categorical_entropy, _categorical_kl,
                            _categorical_fisher_vp, _categorical_mode)


# A factored categorical is a tuple of independent categoricals (Appendix D): µ = {"logits":
# (logits₁ [B, N₁], …, logits_K [B, N_K])}, a: [B, K]. Log-probability, entropy, KL and M are
# sums (M block-diagonal) over the factors.

def _factors(mu):
  return [{"logits": l} for l in mu["logits"]]


def _factored_noise(key, mu):
  keys = jax.random.split(key, len(mu["logits"]))
  return {"logits": tuple(_categorical_noise(k, f)["logits"] for k, f in zip(keys, _factors(mu)))}


def _factored_transform(mu, g):
  return jnp.stack([_categorical_transform(f, n) for f, n in zip(_factors(mu), _factors(g))],
                   axis=-1)


def _factored_log_prob(mu, a):
  return sum(_categorical_log_prob(f, a[..., k]) for k, f in enumerate(_factors(mu)))


def _factored_entropy(mu):
  return sum(_categorical_entropy(f) for f in _factors(mu))


def _factored_kl(old, new):
  return sum(_categorical_kl(o, n) for o, n in zip(_factors(old), _factors(new)))


def _factored_fisher_vp(mu, v):
  return {"logits": tuple(_categorical_fisher_vp(f, w)["logits"]
                          for f, w in zip(_factors(mu), _factors(v)))}


def _factored_mode(mu):
  return jnp.stack([_categorical_mode(f) for f in _factors(mu)], axis=-1)


FACTORED_CATEGORICAL = _distribution("factored_categorical", _factored_noise,
                                     _factored_transform, _factored_log_prob, _factored_entropy,
                                     _factored_kl, _factored_fisher_vp, _factored_mode)


# ----------------------------------------------------------------------------------------------
# Networks: stax (init, apply) pairs.
# ----------------------------------------------------------------------------------------------

def _head(out_dim, scale):
  # A small last layer makes the initial policy close to N(0, σ²) / uniform, whatever the input
  # scale, so the first iterations are not spent undoing a random bias.
  return stax.Dense(out_dim, W_init=jax.nn.initializers.normal(scale),
                    b_init=jax.nn.initializers.zeros)


def mlp(hidden=(64, 64), out_dim=1, activation=stax.Tanh, out_scale=0.01):
  """A fully connected network [B, n_in] → [B, out_dim] (Figure 3, top); stax (init, apply).

  Hidden layers are Dense(h) followed by `activation` (tanh by default); the output layer is
  linear with weights drawn from N(0, out_scale²) and zero bias.
  """
  layers = []
  for h in hidden:
    layers += [stax.Dense(h), activation]
  return stax.serial(*layers, _head(out_dim, out_scale))


def linear(out_dim=1):
  """A linear map [B, n_in] → [B, out_dim] with bias, initialised at zero.

  The paper's cart-pole policy ("a linear policy with six parameters", Section 8.1): with the
  4-dimensional cart-pole state and a 1-D force, 4 weights + 1 bias + 1 log σ = 6.
  """
  return stax.Dense(out_dim, W_init=jax.nn.initializers.zeros, b_init=jax.nn.initializers.zeros)


def scale_frames(x):
  """Frames as float32: uint8 frames scaled to [0, 1]; float frames (already normalised per
  pixel by the caller, e.g. `obsnorm.normalize` with --normalize-obs) passed through unscaled."""
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def frames_to_nhwc():
  """Frames [B, C, H, W] (Gymnasium's frame stack puts the stack first) → float NHWC, scaled by
  `scale_frames`."""
  def init(key, input_shape):
    b, c, h, w = input_shape
    return (b, h, w, c), ()

  def apply(params, x, **kwargs):
    return scale_frames(jnp.transpose(x, (0, 2, 3, 1)))
  return init, apply


def conv(out_chan, filter_shape, strides):
  """A VALID convolution layer [B, H, W, C] → [B, H', W', out_chan] (NHWC): `stax.Conv`'s
  parameters and initialisation, computed by `fastconv.conv_valid` (faster derivatives on the
  CPU)."""
  init, _ = stax.Conv(out_chan, filter_shape, strides)

  def apply(params, x, **kwargs):
    w, b = params
    return fastconv.conv_valid(x, w, strides) + b
  return init, apply


def atari_cnn(out_dim, channels=16, kernel=4, hidden=20, pool=1, out_scale=0.01):
  """The Atari policy network of Figure 3: [B, 4, 42, 42] frames → [B, out_dim] logits.

  Section 8.2: "two convolutional layers with 16 channels and stride 2, followed by one
  fully-connected layer with 20 units, yielding 33,500 parameters". The paper does not give
  the input size or the kernel size, and no choice consistent with its text reproduces 33,500
  from the 84×84×4 input of Mnih et al. (2013): with 4×4 kernels (the reading of rllab's
  ICML-TRPO Atari configuration) the full 84×84 input gives 115,000+ parameters. We therefore
  take the frames at 42×42 (`envs.atari_wrappers` resizes to 42×42 by area, which is the 84×84
  frame averaged 2×2 up to rounding; `pool=2` does that pooling here for 84×84 frames), then
  conv 16@4×4/2 → ReLU → conv 16@4×4/2 → ReLU → dense 20 → ReLU → dense out_dim:
  42 → 20 → 9 spatially, so 1,040 + 4,112 + 25,940 + 21·out_dim parameters =
  31,218 for Pong's 6 actions, 31,470 for the full 18 (within 7% of the paper's figure; see
  `test_atari_cnn_parameter_count`). The convolutions are `conv` (fast derivatives on the CPU).
  """
  layers = [frames_to_nhwc()]
  if pool > 1:
    layers.append(stax.AvgPool((pool, pool), (pool, pool)))
  layers += [conv(channels, (kernel, kernel), (2, 2)), stax.Relu,
             conv(channels, (kernel, kernel), (2, 2)), stax.Relu,
             stax.Flatten, stax.Dense(hidden), stax.Relu, _head(out_dim, out_scale)]
  return stax.serial(*layers)


# ----------------------------------------------------------------------------------------------
# Policies: a network plus a distribution.
# ----------------------------------------------------------------------------------------------

def gaussian_policy(net, action_dim, log_std_init=0.0):
  """π(a|s) = N(net(s), diag exp(2r)) with a state-independent log σ vector r (Appendix D).

  µ = {"mean": [B, action_dim], "log_std": [B, action_dim]} (r broadcast over the batch).
  params = {"net": stax params, "log_std": [action_dim]}.
  """
  net_init, net_apply = net

  def init(key, obs_shape):
    _, net_params = net_init(key, (-1,) + tuple(obs_shape))
    return {"net": net_params, "log_std": jnp.full((action_dim,), log_std_init, jnp.float32)}

  def apply(params, obs):
    mean = net_apply(params["net"], obs)
    return {"mean": mean, "log_std": jnp.broadcast_to(params["log_std"], mean.shape)}

  return {"init": init, "apply": apply, "dist": GAUSSIAN}


def categorical_policy(net):
  """π(a|s) = softmax(net(s)); µ = {"logits": [B, n]}, params = {"net": stax params}."""
  net_init, net_apply = net

  def init(key, obs_shape):
    return {"net": net_init(key, (-1,) + tuple(obs_shape))[1]}

  def apply(params, obs):
    return {"logits": net_apply(params["net"], obs)}

  return {"init": init, "apply": apply, "dist": CATEGORICAL}


def factored_categorical_policy(net, sizes):
  """π(a|s) = Πₖ softmax(net(s)[slice k]) for a = (a₁, …, a_K), aₖ ∈ {0, …, Nₖ−1} (Appendix D).

  `net` must output Σₖ Nₖ numbers; they are split into K slices of logits.
  µ = {"logits": ([B, N₁], …, [B, N_K])}, a: [B, K].
  """
  sizes = tuple(int(n) for n in sizes)
  if not sizes or min(sizes) < 1:
    raise ValueError(f"factored_categorical_policy: sizes must be positive integers, got {sizes}")
  bounds = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
  net_init, net_apply = net

  def init(key, obs_shape):
    return {"net": net_init(key, (-1,) + tuple(obs_shape))[1]}

  def apply(params, obs):
    out = net_apply(params["net"], obs)
    return {"logits": tuple(out[..., lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:]))}

  return {"init": init, "apply": apply, "dist": FACTORED_CATEGORICAL}


def n_params(params):
  """The number of scalar parameters in a pytree."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
