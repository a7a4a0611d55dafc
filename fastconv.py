"""A convolution whose derivatives XLA's CPU backend computes fast: a JAX primitive.

TRPO differentiates the policy network more than it evaluates it: the gradient g, and in every
Fisher-vector product of Appendix C.1 a forward-mode product J v and its transpose Jᵀu. For the
strided convolutions of the Atari CNN (Figure 3), XLA's CPU backend computes the forward pass
and J v fast but its own transposes slowly. `conv_valid` is the same VALID convolution as
`lax.conv_general_dilated`, registered as a primitive of its own (JAX's "How primitives work")
whose forward and forward-mode product are `lax.conv` and whose transposes are written as
matrix products (in the weights) and as a stride-1 convolution after space-to-depth (in the
input). The numbers are those of `lax.conv` up to the order of the sums (`test_trpo.py`).

A speed device, not part of the paper's method: `policies.conv` is the stax layer that uses it.
"""

import functools

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir


def _conv_as_matmul(x, w, strides):
  """The VALID convolution of x [B, H, W, C] (NHWC) with w [kh, kw, C, O] (HWIO) as patches ×
  matrix: the kh·kw strided slices of x side by side, [B·H'·W', kh·kw·C], times w reshaped to
  [kh·kw·C, O] (rows in w's (i, j, c) order). Linear in x and in w."""
  kh, kw, c, o = w.shape
  (sh, sw), (n, h, wd, _) = strides, x.shape
  oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
  cols = [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(cols, axis=-1).reshape(n * oh * ow, kh * kw * c)
  return (patches @ w.reshape(kh * kw * c, o)).reshape(n, oh, ow, o)


def _space_to_depth(x, w, strides):
  """x [B, H, W, C] and w [kh, kw, C, O] (kernel a multiple of the stride s) rewritten for a
  stride-1 convolution with the same result: x's s×s blocks become channels, [B, H/s, W/s,
  s·s·C], and w becomes [kh/s, kw/s, s·s·C, O]."""
  kh, kw, c, o = w.shape
  (sh, sw), (n, h, wd, _) = strides, x.shape
  hh, ww = (h - kh) // sh + kh // sh, (wd - kw) // sw + kw // sw   # the s×s blocks used
  x = x[:, :sh * hh, :sw * ww].reshape(n, hh, sh, ww, sw, c).transpose(0, 1, 3, 2, 4, 5)
  w = w.reshape(kh // sh, sh, kw // sw, sw, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(
      kh // sh, kw // sw, -1, o)
  return x.reshape(n, hh, ww, -1), w


def _conv_s2d(x, w, strides):
  """x ⊛ w (VALID, strides s) as a stride-1 `lax.conv` after `_space_to_depth`. Linear in x and
  in w. A kernel that is not a multiple of the stride: `_conv_as_matmul`."""
  kh, kw = w.shape[:2]
  if kh % strides[0] or kw % strides[1]:
    return _conv_as_matmul(x, w, strides)
  x, w = _space_to_depth(x, w, strides)
  return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_s2d_matmuls(x, w, strides):
  """x ⊛ w (VALID, strides s) as (kh/s)·(kw/s) matrix products after `_space_to_depth`, one per
  offset (a, b) of the stride-1 kernel: Σ_ab x'[:, a:a+H', b:b+W'] · w'[a, b]. Linear in x and
  in w, and its transpose in w is matrix products too (4 for a 4×4 kernel of stride 2, where
  `_conv_as_matmul` concatenates 16 strided slices). A kernel that is not a multiple of the
  stride: `_conv_as_matmul`."""
  kh, kw = w.shape[:2]
  if kh % strides[0] or kw % strides[1]:
    return _conv_as_matmul(x, w, strides)
  x, w = _space_to_depth(x, w, strides)
  oh, ow = x.shape[1] - w.shape[0] + 1, x.shape[2] - w.shape[1] + 1   # stride 1 from here
  return sum(jnp.einsum("nhwc,co->nhwo", x[:, a:a + oh, b:b + ow], w[a, b])
             for a in range(w.shape[0]) for b in range(w.shape[1]))


CONV_CHUNK = 64   # frames per chunk in `conv_valid`'s weight tangent


def _conv_dw(x, dw, strides):
  """x ⊛ dw (linear in the weight tangent dw) over chunks of CONV_CHUNK frames of x, each
  chunk as `_conv_s2d_matmuls` rebuilt from x where the product is transposed
  (`jax.checkpoint`; without it the transpose is two scans, the first storing every chunk's
  rearranged frames, and about twice as slow).

  The weight gradient (in ∇L and in every Fisher-vector product of Appendix C.1) is then a few
  matrix products of x's rearranged blocks with the cotangent. Built for a whole batch, the
  rearranged input (hundreds of MB for a batch of Atari frames, in the first layer as patches)
  is written out and read back through memory; a chunk's stays in cache. Space-to-depth's 4
  products per chunk, rather than `_conv_as_matmul`'s 16 strided slices side by side, move
  less data. The result changes only by the order of the sums. The batch is split into
  ⌈n / CONV_CHUNK⌉ equal chunks, the last padded with zero frames.
  """
  n = x.shape[0]
  size = -(-n // -(-n // CONV_CHUNK))   # frames per chunk: 205 → 4 × 52, not 4 × 64
  chunks = jnp.pad(x, ((0, -n % size),) + ((0, 0),) * 3)
  body = jax.checkpoint(lambda xc, w: _conv_s2d_matmuls(xc, w, strides))
  y = jax.lax.map(lambda xc: body(xc, dw), chunks.reshape((-1, size) + x.shape[1:]))
  return y.reshape((-1,) + y.shape[2:])[:n]


# `conv_valid` is a primitive of its own (JAX's "How primitives work"), registered like XLA's
# convolution with `ad.defbilinear`: its forward-mode product is the convolution itself and its
# transposes are the functions below. A `jax.custom_jvp` gives one rule for both, so a tangent
# written for a fast transpose would make the forward-mode product slow.

def _lax_conv(x, w, strides):
  return jax.lax.conv_general_dilated(x, w, strides, "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _transpose(linear, operand, ct):
  # The transpose of `linear` (a function of the undefined operand) applied to ct.
  aval = jax.ShapeDtypeStruct(operand.aval.shape, operand.aval.dtype)
  return jax.linear_transpose(linear, aval)(ct)[0]


def _transpose_in_x(ct, x, w, strides):   # x ⊛ w in x, as `_conv_s2d`
  return _transpose(lambda dx: _conv_s2d(dx, w, strides), x, ct)


def _transpose_in_w(ct, x, w, strides):   # x ⊛ w in w, as `_conv_dw`
  return _transpose(lambda dw: _conv_dw(x, dw, strides), w, ct)


def _batch(args, dims, strides):
  # vmap: frames batched alone fold into the batch axis; otherwise XLA's own convolution.
  (x, w), (bx, bw) = args, dims
  if bw is not None:
    return jax.vmap(functools.partial(_lax_conv, strides=strides), (bx, bw))(x, w), 0
  x = jnp.moveaxis(x, bx, 0)
  y = conv_valid(x.reshape((-1,) + x.shape[2:]), w, strides)
  return y.reshape(x.shape[:2] + y.shape[1:]), 0


conv_valid_p = Primitive("conv_valid")
conv_valid_p.def_impl(_lax_conv)
conv_valid_p.def_abstract_eval(lambda x, w, strides: jax.core.ShapedArray(
    jax.eval_shape(functools.partial(_lax_conv, strides=strides), x, w).shape, x.dtype))
mlir.register_lowering(conv_valid_p, mlir.lower_fun(_lax_conv, multiple_results=False))
ad.defbilinear(conv_valid_p, _transpose_in_x, _transpose_in_w)
batching.primitive_batchers[conv_valid_p] = _batch


def conv_valid(x, w, strides):
  """The VALID convolution NHWC ⊛ HWIO → NHWC of `lax.conv_general_dilated`, as a primitive
  whose transposes XLA's CPU backend computes fast.

  x ⊛ w is bilinear, so its derivative is the same convolution applied to the tangents,
  dx ⊛ w + x ⊛ dw, and the forward pass and forward-mode products (J v in every Fisher-vector
  product of Appendix C.1) keep `lax.conv`. On the CPU XLA's transposes of a strided
  convolution (in w and in x; the gradient, and Jᵀ in every Fisher-vector product) cost many
  times the forward, so they are written differently here: in w, matrix products
  (`_conv_dw`); in x, a stride-1 convolution after space-to-depth (`_conv_s2d`; patches ×
  matrix when the kernel is not a multiple of the stride). What it gains is measured by
  `python bench/atari_step.py` (results/atari_step.txt, docs/performance.md).
  """
  return conv_valid_p.bind(x, w, strides=tuple(strides))
