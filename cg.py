"""Conjugate gradient: solve A x = b using only products v ↦ A v (Appendix C).

TRPO never forms the Fisher matrix A; it solves A s = g for the search direction s ≈ A⁻¹g with
k = 10 conjugate-gradient iterations ("We found k = 10 to be quite effective", Appendix C.1).
This is the textbook method for a symmetric positive-definite A: Nocedal & Wright, *Numerical
Optimization* (2nd ed.), Algorithm 5.2; Shewchuk, "An Introduction to the Conjugate Gradient
Method Without the Agonizing Pain" (1994), §B2. It runs as a `lax.while_loop`, so it can be
jit-compiled inside `trpo.step`; it keeps no Python-side state.

`solve_with_product` also returns A x, which CG's residual gives for free: TRPO's step length
needs sᵀAs, "an intermediate result produced by the conjugate gradient algorithm" (Appendix C).

Vectors are 1-D arrays; flatten a pytree with `jax.flatten_util.ravel_pytree` first.
"""

from typing import Callable

import jax
import jax.numpy as jnp


def solve_with_product(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int = 10,
                       tol: float = 1e-10) -> tuple[jax.Array, jax.Array]:
  """Approximately solves A x = b by conjugate gradient, starting from x₀ = 0; returns x and A x.

  Nocedal & Wright, Algorithm 5.2 (Appendix C of the paper):
    r₀ = b, p₀ = r₀;  αᵢ = rᵢᵀrᵢ / pᵢᵀA pᵢ;  xᵢ₊₁ = xᵢ + αᵢ pᵢ;  rᵢ₊₁ = rᵢ − αᵢ A pᵢ;
    βᵢ = rᵢ₊₁ᵀrᵢ₊₁ / rᵢᵀrᵢ;  pᵢ₊₁ = rᵢ₊₁ + βᵢ pᵢ.

  Args:
    matvec: v ↦ A v for a symmetric positive-definite A, v of shape [n].
    b: right-hand side, shape [n].
    iters: the maximum number of iterations k (the paper uses 10); static, must be ≥ 1.
    tol: stop early once rᵀr ≤ tol·bᵀb, i.e. the residual is below √tol of the right-hand
      side (relative, so that the solution scales with b: β·A⁻¹g is invariant to the scale of
      the advantages, and so is the step).

  Returns:
    (x, A x), each of shape [n]. A x is b − r, r the residual that the iteration updates
    (rᵢ₊₁ = rᵢ − αᵢ A pᵢ, so b − rᵢ = A xᵢ up to rounding): no product beyond the iterations'
    own. x is exact (up to rounding) after n iterations for an SPD A. If b = 0 the loop
    exits at once and x = 0. If pᵀAp ≤ 0 (A is not positive definite along p) the iteration
    stops and returns the current x rather than dividing by a non-positive curvature.
  """
  if not isinstance(iters, int) or iters < 1:
    raise ValueError(f"cg.solve_with_product: iters must be an integer >= 1, got {iters!r}")
  b = jnp.asarray(b)
  bb = jnp.vdot(b, b)

  def cond(state):
    i, _, _, _, rdotr, ok = state
    return (i < iters) & (rdotr > tol * bb) & ok

  def body(state):
    i, x, r, p, rdotr, _ = state
    Ap = matvec(p)
    pAp = jnp.vdot(p, Ap)
    # A is only positive semi-definite in practice (a finite-sample Fisher): stop on
    # non-positive or non-finite curvature instead of producing inf/NaN.
    ok = (pAp > 0) & jnp.isfinite(pAp)
    alpha = jnp.where(ok, rdotr / jnp.where(ok, pAp, 1.0), 0.0)
    x = x + alpha * p
    r = jnp.where(ok, r - alpha * Ap, r)     # not r − 0·Ap: a non-finite Ap would make r NaN
    new_rdotr = jnp.vdot(r, r)
    p = r + (new_rdotr / rdotr) * p
    return i + 1, x, r, p, new_rdotr, ok

  state = (0, jnp.zeros_like(b), b, b, bb, jnp.isfinite(bb))
  _, x, r, _, _, _ = jax.lax.while_loop(cond, body, state)
  return x, b - r


def solve(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int = 10,
          tol: float = 1e-10) -> jax.Array:
  """x ≈ A⁻¹b by conjugate gradient: the x of `solve_with_product` (same arguments)."""
  return solve_with_product(matvec, b, iters, tol)[0]
