"""The paper's theory as exact computations on finite MDPs, and property checks of it.

Sections 2–4, Algorithm 1 and Appendices A–B of Schulman et al. (2015). Everything here is exact
linear algebra in float64 on small MDPs; no sampling. The reward-maximising convention of the
arXiv text is used throughout; the ICML text minimises a cost c = −r, and its statements are
translated where they are checked.

An MDP is a dict {"P": [S, A, S] with P[s, a, s'], "r": [S, A] (a state reward r(s) is the case
of equal columns), "rho0": [S], "gamma": float in (0, 1)}. A policy is an array [S, A] of
probabilities.

Property checks (hypothesis) are the `test_*` functions below, collected by pytest. The disputed
statements are settled in `test_disputed_*` with concrete small MDPs. `python theory.py
[--examples N] [--search R]` runs every check with N examples (and R restarts of an adversarial
gradient search for the statements that hold) and prints, for each bound, holds/fails, how many
cases were tried and the tightest ratio (observed gap over bound).
"""

import argparse
import math
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _check_mdp(mdp):
  P, r, rho0, gamma = (np.asarray(mdp[k], np.float64) for k in ("P", "r", "rho0", "gamma"))
  if P.ndim != 3 or P.shape[0] != P.shape[2]:
    raise ValueError(f"mdp['P'] must have shape [S, A, S], got {P.shape}")
  S, A = P.shape[:2]
  if r.shape != (S, A):
    raise ValueError(f"mdp['r'] must have shape [S, A] = {(S, A)}, got {r.shape}")
  if rho0.shape != (S,):
    raise ValueError(f"mdp['rho0'] must have shape [S] = {(S,)}, got {rho0.shape}")
  if not 0 < gamma < 1:
    raise ValueError(f"mdp['gamma'] must be in (0, 1), got {float(gamma)}")
  for name, x, axis in (("P", P, 2), ("rho0", rho0, 0)):
    if np.any(x < 0) or np.any(np.abs(x.sum(axis) - 1) > 1e-9):
      raise ValueError(f"mdp[{name!r}] must be non-negative and sum to 1 over its last axis")
  if not np.all(np.isfinite(r)):
    raise ValueError("mdp['r'] must be finite")
  return P, r, rho0, float(gamma)


def _check_policy(pi, S, A, name="pi"):
  pi = np.asarray(pi, np.float64)
  if pi.shape != (S, A):
    raise ValueError(f"{name} must have shape [S, A] = {(S, A)}, got {pi.shape}")
  if np.any(pi < 0) or np.any(np.abs(pi.sum(1) - 1) > 1e-9):
    raise ValueError(f"{name} must hold probabilities: non-negative rows summing to 1")
  return pi


# ----------------------------------------------------------------------------------------------
# Exact quantities (Section 2).
# ----------------------------------------------------------------------------------------------


def random_mdp(seed, n_states, n_actions, gamma, *, state_reward=False, concentration=1.0):
  """A random MDP: P(·|s, a) ~ Dirichlet(concentration), r ~ N(0, 1), ρ₀ ~ Dirichlet(1).

  Small `concentration` (e.g. 0.05) gives near-deterministic transitions. `state_reward=True`
  draws r(s) and repeats it over actions (the paper's r : S → ℝ).
  """
  if n_states < 1 or n_actions < 1:
    raise ValueError(f"n_states and n_actions must be >= 1, got {n_states}, {n_actions}")
  if not 0 < gamma < 1:
    raise ValueError(f"gamma must be in (0, 1), got {gamma}")
  if not concentration > 0:
    raise ValueError(f"concentration must be > 0, got {concentration}")
  rng = np.random.default_rng(seed)
  P = rng.dirichlet(np.full(n_states, concentration), size=(n_states, n_actions))
  P = np.maximum(P, 0)                      # Dirichlet draws can underflow to -0.0
  P /= P.sum(-1, keepdims=True)
  r = rng.normal(size=(n_states, 1 if state_reward else n_actions))
  r = np.broadcast_to(r, (n_states, n_actions)).copy()
  return {"P": P, "r": r, "rho0": rng.dirichlet(np.ones(n_states)), "gamma": float(gamma)}


def softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def p_pi(P, pi):
  """P_π[s, s'] = Σₐ π(a|s) P(s'|s, a)."""
  return np.einsum("sa,sat->st", pi, P)


def values(mdp, pi):
  """(V, Q, A) of policy π, each exact: V = (I − γP_π)⁻¹ r_π, Q = r + γPV, A = Q − V (Section 2).

  Shapes [S], [S, A], [S, A].
  """
  P, r, _, gamma = _check_mdp(mdp)
  pi = _check_policy(pi, *r.shape)
  S = r.shape[0]
  V = np.linalg.solve(np.eye(S) - gamma * p_pi(P, pi), (pi * r).sum(1))
  Q = r + gamma * P @ V
  return V, Q, Q - V[:, None]


def eta(mdp, pi):
  """η(π) = E_{s₀~ρ₀}[V_π(s₀)], the expected discounted return."""
  return float(np.asarray(mdp["rho0"]) @ values(mdp, pi)[0])


def visitation(mdp, pi):
  """ρ_π(s) = Σₜ γᵗ P(sₜ = s), unnormalised (sums to 1/(1−γ)): ρ_π = (I − γP_πᵀ)⁻¹ ρ₀."""
  P, _, rho0, gamma = _check_mdp(mdp)
  pi = _check_policy(pi, *P.shape[:2])
  return np.linalg.solve(np.eye(P.shape[0]) - gamma * p_pi(P, pi).T, rho0)


def expected_advantage(mdp, pi, pi_new):
  """Ā(s) = Σₐ π̃(a|s) A_π(s, a), [S]: the per-state gain of Eq. (2)."""
  return (np.asarray(pi_new) * values(mdp, pi)[2]).sum(1)


def surrogate(mdp, pi, pi_new):
  """L_π(π̃) = η(π) + Σ_s ρ_π(s) Σₐ π̃(a|s) A_π(s, a), Eq. (3)."""
  return eta(mdp, pi) + surrogate_gain(mdp, pi, pi_new)


def surrogate_gain(mdp, pi, pi_new):
  """L_π(π̃) − η(π) = Σ_s ρ_π(s) Ā(s), without forming either large term."""
  return float(visitation(mdp, pi) @ expected_advantage(mdp, pi, pi_new))


def improvement(mdp, pi, pi_new):
  """η(π̃) − η(π) = Σ_s ρ_π̃(s) Ā(s), Eq. (2), without forming either large term."""
  return float(visitation(mdp, pi_new) @ expected_advantage(mdp, pi, pi_new))


def eta_minus_surrogate(mdp, pi, pi_new):
  """η(π̃) − L_π(π̃) = Σ_s (ρ_π̃ − ρ_π)(s) Ā(s), computed without cancellation.

  η and L are both of order max|r|/(1−γ) while their difference is of order α²: subtracting them
  loses every digit when π̃ is close to π (at γ = 0.99 and α = 10⁻⁴ the gap is ~10⁻⁸ of η).
  Instead we solve for ρ_π̃ − ρ_π directly: from ρ = ρ₀ + γP_πᵀρ for both policies,
  (I − γP_π̃ᵀ)(ρ_π̃ − ρ_π) = γ Δᵀρ_π with Δ = P_π̃ − P_π = Σₐ (π̃ − π)(a|s) P(·|s, a), and every
  factor on the right is already small, so the result keeps its relative precision.
  """
  P, _, _, gamma = _check_mdp(mdp)
  pi_new = _check_policy(pi_new, *P.shape[:2], name="pi_new")
  delta = p_pi(P, pi_new - np.asarray(pi))
  drho = np.linalg.solve(np.eye(P.shape[0]) - gamma * p_pi(P, pi_new).T,
                         gamma * delta.T @ visitation(mdp, pi))
  return float(drho @ expected_advantage(mdp, pi, pi_new))


def tv_max(pi, pi_new):
  """D_TV^max(π, π̃) = max_s ½ Σₐ |π(a|s) − π̃(a|s)|, Eq. (7)."""
  return float(np.max(0.5 * np.abs(np.asarray(pi) - np.asarray(pi_new)).sum(-1)))


def kl(pi, pi_new):
  """KL(π(·|s) ‖ π̃(·|s)) for every state, [S] (0·log 0 = 0; +inf where π̃ = 0 < π).

  With p = π(·|s), q = π̃(·|s), x = (q − p)/p on the support of p:
      Σ_{p>0} p log(p/q) = Σ_{p>0} p·(x − log(1 + x)) − Σ_{p>0} (q − p)
                         = Σ_{p>0} p·(x − log(1 + x)) + Σ_{p=0} q,
  the second line because Σ p = Σ q = 1. Every term is ≥ 0 and is formed from the small
  difference q − p or from q where p = 0, so the KL of two close policies keeps its relative
  precision (Σ p(log p − log q) would lose it). For |x| < 10⁻³ the series x²/2 − x³/3 + …
  replaces x − log1p(x), which itself cancels.
  """
  p, q = np.asarray(pi, np.float64), np.asarray(pi_new, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    x = np.where(p > 0, (q - p) / np.where(p > 0, p, 1.0), 0.0)
    series = x * x * (1 / 2 - x * (1 / 3 - x * (1 / 4 - x * (1 / 5 - x / 6))))
    exact = np.where(x > -1, x - np.log1p(np.maximum(x, -1 + 1e-300)), np.inf)
    terms = np.where(np.abs(x) < 1e-3, series, exact)
  return np.where(p > 0, p * terms, q).sum(-1)


def kl_max(pi, pi_new):
  """D_KL^max(π, π̃) = max_s KL(π(·|s) ‖ π̃(·|s)) (Section 3)."""
  return float(np.max(kl(pi, pi_new)))


def max_abs_advantage(mdp, pi):
  """ε = max_{s,a} |A_π(s, a)| of Theorem 1."""
  return float(np.max(np.abs(values(mdp, pi)[2])))


# ----------------------------------------------------------------------------------------------
# The bounds (Section 3, Appendices A and B). Each returns the bound on L_π(π̃) − η(π̃) (or its
# absolute value, where stated), so that "holds" means gap ≤ bound.
# ----------------------------------------------------------------------------------------------


def theorem1_bound(mdp, pi, pi_new, constant=4.0):
  """C·α² with C = constant·εγ/(1−γ)², α = D_TV^max, ε = max|A_π| (Theorem 1, Eq. (8)).

  The arXiv text has constant 4; the ICML text states the same bound with 2.
  """
  g = mdp["gamma"]
  return constant * max_abs_advantage(mdp, pi) * g / (1 - g)**2 * tv_max(pi, pi_new)**2


def eq44_bound(mdp, pi, pi_new):
  """4α²γε / ((1−γ)(1−γ(1−α))): the two-sided bound on |η − L| the proof gives (Eq. (44))."""
  g, a = mdp["gamma"], tv_max(pi, pi_new)
  return 4 * a * a * g * max_abs_advantage(mdp, pi) / ((1 - g) * (1 - g * (1 - a)))


def eq9_bound(mdp, pi, pi_new):
  """C·D_KL^max(π, π̃), C = 4εγ/(1−γ)² (Eq. (9)): Theorem 1 with D_TV² ≤ D_KL."""
  g, eps = mdp["gamma"], max_abs_advantage(mdp, pi)
  return 0.0 if eps == 0 else 4 * eps * g / (1 - g)**2 * kl_max(pi, pi_new)   # 0·∞ is 0 here


def theorem1a_eps(mdp, pi, pi_new, absolute=False):
  """ε of Theorem 1a (ICML Appendix B, Eq. (33)), translated from costs to rewards.

  With cost c = −r, Eq. (33) is ε = max_s Σₐ (π̃ − π)(a|s) Q_c(s, a) / Σₐ |π̃ − π|(a|s)
  = max_s Σₐ (π − π̃)(a|s) Q_r(s, a) / Σₐ |π̃ − π|(a|s). States where π̃ = π (0/0) count as 0,
  the reading most favourable to the theorem. `absolute=True` takes max_s |…| instead.
  """
  Q = values(mdp, pi)[1]
  diff = np.asarray(pi) - np.asarray(pi_new)
  den = np.abs(diff).sum(1)
  ratio = np.where(den > 0, (diff * Q).sum(1) / np.where(den > 0, den, 1.0), 0.0)
  return float(np.max(np.abs(ratio)) if absolute else np.max(ratio))


def theorem1a_bound(mdp, pi, pi_new, constant=2.0, absolute=False):
  """α²·constant·γε/(1−γ)² with the ε of Eq. (33) (Theorem 1a, Eq. (32): constant 2)."""
  g = mdp["gamma"]
  return (constant * g / (1 - g)**2 * tv_max(pi, pi_new)**2
          * theorem1a_eps(mdp, pi, pi_new, absolute))


def mixture_bounds(mdp, pi, pi_prime, alpha):
  """Kakade–Langford for π_new = (1−α)π + απ′ (Eq. (5)): (tight, simplified) bounds on |η − L|.

  tight 2εγα² / ((1−γ)(1−γ(1−α))) (ICML Eq. (6)), simplified 2εγα²/(1−γ)² (Eq. (6)/(8)), with
  ε = max_s |E_{a~π′}[A_π(s, a)]|.
  """
  g = mdp["gamma"]
  eps = float(np.max(np.abs(expected_advantage(mdp, pi, pi_prime))))
  return (2 * eps * g * alpha**2 / ((1 - g) * (1 - g * (1 - alpha))),
          2 * eps * g * alpha**2 / (1 - g)**2)


# ----------------------------------------------------------------------------------------------
# Algorithm 1 and the tabular TRPO step: exact maximisation over tabular policies.
# ----------------------------------------------------------------------------------------------


def _tilt(pi_old, adv, u):
  """The maximisers of Σₐ π(a)A(a) − λ KL(π_old ‖ π), one per state, indexed by u.

  Stationarity of the Lagrangian gives π(a) = λ π_old(a) / (κ − A(a)) with κ > max A fixed by
  Σₐ π(a) = 1, so λ = 1 / Σₐ π_old(a)/(κ − A(a)). We index the family by u with
  κ − max A = (max A − min A)·eᵘ: u → −∞ concentrates π on argmax A (KL → ∞, λ → 0); u → +∞
  gives π → π_old (KL → 0, λ → ∞). The denominator is formed as (max A − A) + (…)eᵘ, both
  terms ≥ 0, so it never cancels. pi_old, adv: [S, A] with π_old > 0 and non-constant rows;
  u: [S]. Returns (π [S, A], λ [S]).
  """
  spread = np.ptp(adv, 1)
  w = pi_old / ((adv.max(1, keepdims=True) - adv) + (spread * np.exp(u))[:, None])
  total = w.sum(1)
  return w / total[:, None], 1.0 / total


def _tilt_where(pi_old, adv, fn, target, iters=56):
  """u [S] with fn(π_u, λ_u) = target per state, fn increasing in u; by bisection on u.

  Returns the upper end of the final bracket, where fn ≥ target (e.g. KL ≤ t when fn = −KL).
  """
  lo, hi = np.full(len(adv), -30.0), np.full(len(adv), 40.0)
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    below = fn(*_tilt(pi_old, adv, mid)) < target
    lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
  return hi


def _bisect_log(f, target, lo, hi, iters=48):
  """x > 0 with f(x) = target for f decreasing in x, by bisection on log x in [lo, hi].

  Returns the upper end of the final bracket, where f ≤ target.
  """
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if f(math.exp(mid)) > target else (lo, mid)
  return math.exp(hi)


def _require_positive(pi, name):
  if np.any(np.asarray(pi) <= 0):
    raise ValueError(f"{name} must be strictly positive: the KL(π_old ‖ π) maximisation "
                     "assumes full support")


def _active(mdp, pi):
  """(A_π, ρ_π, mask of states where moving can change L: visited, non-constant A)."""
  adv, rho = values(mdp, pi)[2], visitation(mdp, pi)
  return adv, rho, (np.ptp(adv, 1) > 0) & (rho > 0)


def algorithm1_step(mdp, pi, C=None):
  """π_{i+1} = argmax_π L_π_i(π) − C·D_KL^max(π_i, π) over tabular policies (Algorithm 1).

  C defaults to 4εγ/(1−γ)² (Eq. (9)). The problem is concave in π. For a common KL level t
  every state takes the member of `_tilt` with KL = t, and its multiplier λ_s(t) is the rate
  dv_s/dt at which that state's gain grows with t; the optimal t balances Σ_s ρ_π(s) λ_s(t)
  against C (the marginal penalty), found by bisection on log t.
  Returns (π_{i+1}, M_i(π_{i+1}) − η(π_i)), the second computed without cancellation.
  """
  _require_positive(pi, "pi")
  pi = np.asarray(pi, np.float64)
  g = mdp["gamma"]
  adv, rho, active = _active(mdp, pi)
  if C is None:
    C = 4 * float(np.max(np.abs(adv))) * g / (1 - g)**2
  if not np.any(active) or C <= 0:
    return pi.copy(), 0.0
  pa, aa, ra = pi[active], adv[active], rho[active]

  def at_kl(t):
    u = _tilt_where(pa, aa, lambda p, lam: -kl(pa, p), -t)
    return _tilt(pa, aa, u)

  t = _bisect_log(lambda t: float(ra @ at_kl(t)[1]), C, lo=-70.0, hi=5.0)
  new = pi.copy()
  new[active] = at_kl(t)[0]
  return new, surrogate_gain(mdp, pi, new) - C * kl_max(pi, new)


def algorithm1(mdp, pi0, iters, C=None):
  """Algorithm 1: π_{i+1} = argmax_π [L_π_i(π) − C·D_KL^max(π_i, π)], i < iters.

  Returns (policies [iters+1, S, A], etas [iters+1]). C defaults to 4εᵢγ/(1−γ)² at each
  iteration (Eq. (9)); pass a number to fix it.
  """
  pis, etas = [np.asarray(pi0, np.float64)], [eta(mdp, pi0)]
  for _ in range(iters):
    pis.append(algorithm1_step(mdp, pis[-1], C)[0])
    etas.append(eta(mdp, pis[-1]))
  return np.stack(pis), np.array(etas)


def algorithm1_iterations(mdp, rel_tol=1e-3, max_iters=1000):
  """How many Algorithm 1 iterations from the uniform policy reach η* − η ≤ rel_tol·|η*|.

  η* from exact policy iteration. Returns (iterations or None if max_iters did not suffice,
  the final relative gap).
  """
  best = optimal_eta(mdp)[0]
  pi = np.full(np.shape(mdp["r"]), 1.0 / np.shape(mdp["r"])[1])
  for i in range(max_iters + 1):
    gap = (best - eta(mdp, pi)) / abs(best)
    if gap <= rel_tol:
      return i, gap
    pi = algorithm1_step(mdp, pi)[0]
  return None, gap


def optimal_eta(mdp, iters=1000):
  """η of an optimal policy, by exact policy iteration (Howard): the reference for Algorithm 1."""
  P, r, _, gamma = _check_mdp(mdp)
  pi = np.full(r.shape, 1.0 / r.shape[1])
  for _ in range(iters):
    Q = values(mdp, pi)[1]
    new = np.eye(r.shape[1])[Q.argmax(1)]
    if np.array_equal(new, pi):
      break
    pi = new
  return eta(mdp, pi), pi


def tabular_trpo_step(mdp, pi, delta):
  """The exact solution of Eq. (13) over tabular policies:

      maximise Σ_s ρ_π(s) Σₐ π̃(a|s) A_π(s, a)  s.t.  Σ_s ρ̄(s) KL(π(·|s) ‖ π̃(·|s)) ≤ δ,

  with ρ̄ = (1−γ)ρ_π the normalised visitation. The Lagrangian makes every visited state take
  the member of `_tilt` with one common multiplier λ; λ is set by bisection so that the mean
  KL equals δ. Unvisited states keep π.
  """
  _require_positive(pi, "pi")
  if not delta > 0:
    raise ValueError(f"delta must be > 0, got {delta}")
  pi = np.asarray(pi, np.float64)
  adv, rho, active = _active(mdp, pi)
  new = pi.copy()
  if not np.any(active):
    return new
  pa, aa, wa = pi[active], adv[active], (1 - mdp["gamma"]) * rho[active]

  def at_lambda(lam):
    return _tilt(pa, aa, _tilt_where(pa, aa, lambda p, l: l, lam))[0]

  lam = _bisect_log(lambda lam: float(wa @ kl(pa, at_lambda(lam))), delta, lo=-60.0, hi=25.0)
  new[active] = at_lambda(lam)
  return new


def loglinear_policy(theta, features):
  """π_θ(a|s) = softmax_a(φ(s, a)·θ), features [S, A, d]: parameters shared across states."""
  return softmax(np.asarray(features) @ np.asarray(theta))


def trpo_step_loglinear(mdp, theta, features, delta, backtrack_ratio=0.8, max_backtracks=30):
  """The practical TRPO step (Appendix C) for a log-linear policy, with exact quantities.

  g = ∇_θ L (exact), A = ∇²_θ D̄_KL = Σ_s ρ̄(s) Cov_{π(·|s)}[φ(s, ·)] (exact Fisher), s = A⁺g,
  β = √(2δ/sᵀAs), then backtracking until L improves and D̄_KL ≤ δ (both exact). One-hot
  features φ(s, a) = e_{(s,a)} make this the tabular softmax policy.
  Returns (θ_new, accepted).
  """
  g_ = mdp["gamma"]
  phi = np.asarray(features, np.float64)
  pi = loglinear_policy(theta, phi)
  adv = values(mdp, pi)[2]
  rho = visitation(mdp, pi)
  centred = phi - np.einsum("sa,sad->sd", pi, phi)[:, None, :]
  grad = np.einsum("s,sa,sad->d", rho, pi * adv, centred)
  fisher = np.einsum("s,sa,sad,sae->de", (1 - g_) * rho, pi, centred, centred)
  s = np.linalg.lstsq(fisher, grad, rcond=None)[0]
  sAs = float(s @ fisher @ s)
  if not sAs > 0:
    return np.asarray(theta, np.float64), False
  full = math.sqrt(2 * delta / sAs) * s
  for k in range(max_backtracks):
    cand = theta + backtrack_ratio**k * full
    new = loglinear_policy(cand, phi)
    mean_kl = float((1 - g_) * rho @ kl(pi, new))
    if surrogate_gain(mdp, pi, new) > 0 and mean_kl <= delta:
      return cand, True
  return np.asarray(theta, np.float64), False


# ----------------------------------------------------------------------------------------------
# Counterexamples to the disputed statements (constructed; see the README).
# ----------------------------------------------------------------------------------------------


def counterexample_constant2(gamma=0.1, alpha=0.25, R=1.0):
  """An MDP and policy pair where Theorem 1 with constant 2 (the ICML text) fails.

  State rewards only. States: 0 start, 1 x, 2 y, 3 X+, 4 X−, 5 Y+, 6 Y−, 7 absorbing z.
  From the start, action 0 goes to x and action 1 to y; from x (and y) action 0 goes to X+ (Y+),
  reward +R, action 1 to X− (Y−), reward −R; then z forever, reward 0.
  π: start → x surely, uniform at x and y.  π̃: start → y with probability α, at x moves α of
  mass to the better action, at y α of mass to the worse one. Then α = D_TV^max, ε = γR,
  L_π(π̃) − η(π̃) = 4α²γε exactly, which exceeds 2εγα²/(1−γ)² whenever (1−γ)² < ½,
  i.e. γ < 1 − 1/√2 ≈ 0.293, and never exceeds 4εγα²/(1−γ)².
  """
  S, A = 8, 2
  P = np.zeros((S, A, S))
  P[0, 0, 1] = P[0, 1, 2] = 1
  P[1, 0, 3] = P[1, 1, 4] = P[2, 0, 5] = P[2, 1, 6] = 1
  P[3:, :, 7] = 1
  r = np.zeros((S, A))
  r[3] = r[5] = R
  r[4] = r[6] = -R
  rho0 = np.eye(S)[0]
  pi = np.full((S, A), 0.5)
  pi[0] = (1, 0)
  pi_new = pi.copy()
  pi_new[0] = (1 - alpha, alpha)
  pi_new[1] = (0.5 + alpha, 0.5 - alpha)
  pi_new[2] = (0.5 - alpha, 0.5 + alpha)
  return {"P": P, "r": r, "rho0": rho0, "gamma": gamma}, pi, pi_new


def counterexample_signed_eps(gamma=0.9, alpha=0.2):
  """An MDP where Theorem 1a with its signed ε (Eq. (33)) fails, at any γ and α > 0.

  Two states, state reward r = (0, 1); from either state action 0 goes to state 1 and action 1
  to state 0. π is uniform; π̃ puts α more mass on action 0 everywhere. Ā(s) is the same at both
  states, so η(π̃) = L_π(π̃) exactly; but π̃ improves at every state, so the ε of Eq. (33) is
  negative and the bound claims η(π̃) ≥ L_π(π̃) + (a positive amount).
  """
  P = np.zeros((2, 2, 2))
  P[:, 0, 1] = 1
  P[:, 1, 0] = 1
  r = np.array([[0.0, 0.0], [1.0, 1.0]])
  pi = np.full((2, 2), 0.5)
  pi_new = np.array([[0.5 + alpha, 0.5 - alpha]] * 2)
  return {"P": P, "r": r, "rho0": np.array([1.0, 0.0]), "gamma": gamma}, pi, pi_new


# ----------------------------------------------------------------------------------------------
# Cases for the property checks.
# ----------------------------------------------------------------------------------------------


@st.composite
def cases(draw):
  """(mdp, π, π̃): several sizes, γ up to 0.99, state and state-action rewards, near-
  deterministic transitions and policies, and policy pairs both close and far apart."""
  seed = draw(st.integers(0, 2**32 - 1))
  n_states = draw(st.integers(1, 6))
  n_actions = draw(st.integers(2, 4))
  gamma = draw(st.sampled_from([0.01, 0.1, 0.3, 0.5, 0.9, 0.99]) | st.floats(0.01, 0.99))
  state_reward = draw(st.booleans())
  concentration = draw(st.sampled_from([0.05, 0.3, 1.0, 5.0]))
  temperature = draw(st.sampled_from([0.05, 0.3, 1.0, 3.0]))
  closeness = draw(st.sampled_from([1e-4, 1e-2, 0.1, 0.5, 1.0]))   # how far π̃ moves from π
  mdp = random_mdp(seed, n_states, n_actions, gamma, state_reward=state_reward,
                   concentration=concentration)
  rng = np.random.default_rng(seed + 1)
  logits = rng.normal(size=(n_states, n_actions)) / temperature
  pi = softmax(logits)
  pi_new = softmax(logits + closeness * rng.normal(size=logits.shape) / temperature)
  return mdp, pi, pi_new


def _ratio(mdp, gap, bound):
  """gap/bound, or 0 when the gap is at the level of float64 rounding of η itself.

  Probabilities that do not sum to exactly 1 in floating point (1.0 + 1e-20 rounds to 1.0)
  leave a residue of order 1e-16·max|r|/(1−γ) in any gap; a "ratio" of two such residues says
  nothing about the bound, so it is not counted.
  """
  floor = 1e-13 * float(np.max(np.abs(mdp["r"]))) / (1 - mdp["gamma"])
  if abs(gap) <= floor and bound <= floor:
    return 0.0
  if bound > 0:
    return gap / bound
  return -math.inf if gap <= bound else math.inf   # a zero bound: only the verdict counts


# Each check maps a case to (gap, bound): it holds when gap ≤ bound (up to rounding).
CHECKS = {
    "Theorem 1 (4εγ/(1−γ)², arXiv)":
        lambda m, p, q: (-eta_minus_surrogate(m, p, q), theorem1_bound(m, p, q)),
    "Eq. (44), two-sided":
        lambda m, p, q: (abs(eta_minus_surrogate(m, p, q)), eq44_bound(m, p, q)),
    "Eq. (9), KL form":
        lambda m, p, q: (-eta_minus_surrogate(m, p, q), eq9_bound(m, p, q)),
    "D_TV² ≤ D_KL (Pollard)":
        lambda m, p, q: (_tv_kl_ratio(p, q), 1.0),
    "Theorem 1a, |ε|, constant 4 (corrected)":
        lambda m, p, q: (abs(eta_minus_surrogate(m, p, q)),
                         theorem1a_bound(m, p, q, constant=4.0, absolute=True)),
}


def _tv_kl_ratio(p, q):
  """max_s D_TV(s)² / D_KL(s) (0 where the policies agree); ≤ 1 is the claim, ≤ ½ Pinsker's."""
  tv2, k = (0.5 * np.abs(p - q).sum(1))**2, kl(p, q)
  return float(np.max(np.where(k > 0, tv2 / np.where(k > 0, k, 1.0), 0.0)))


def holds(gap, bound, tol=1e-9):
  """gap ≤ bound up to float64 rounding (relative 1e-9): the verdict of a check."""
  return gap <= bound + tol * (abs(bound) + 1e-12)


# ----------------------------------------------------------------------------------------------
# The disputed statements, settled.
# ----------------------------------------------------------------------------------------------


def counterexample_loglinear_decrease(seed=936, n_states=4, n_actions=2, gamma=0.9):
  """A shared-parameter policy where one exact TRPO step with δ = 0.01 lowers η.

  π_θ(a|s) = softmax(φ(s, a)·θ) with a single feature (θ ∈ ℝ), found by
  `search_loglinear_decrease` over 1,000 random problems. The step passes TRPO's own tests
  (L improves, mean KL ≤ δ) and η still drops. Returns (mdp, θ, φ, δ).
  """
  return _loglinear_problem(seed, n_states, n_actions, 1, gamma) + (0.01,)


def _loglinear_problem(seed, n_states, n_actions, n_features, gamma):
  """(mdp, θ, φ): a random MDP with near-deterministic transitions, features φ ~ N(0, 1)
  [S, A, d] and θ ~ N(0, 1) [d], for the shared-parameter TRPO-step experiments."""
  mdp = random_mdp(seed, n_states, n_actions, gamma, concentration=0.3)
  rng = np.random.default_rng(seed + 7)
  phi = rng.normal(size=(n_states, n_actions, n_features))
  return mdp, rng.normal(size=n_features), phi


def search_loglinear_decrease(seeds, deltas=(0.01, 0.1, 1.0), n_states=4, n_actions=2,
                              n_features=2, gamma=0.9):
  """Exact TRPO steps on random log-linear problems; returns the worst η change found.

  The problems are drawn as in `counterexample_loglinear_decrease`. Returns
  (worst (η_new − η_old) / (max|r|/(1−γ)), its seed, its δ).
  """
  worst = (math.inf, None, None)
  for seed in seeds:
    mdp, theta, phi = _loglinear_problem(seed, n_states, n_actions, n_features, gamma)
    pi = loglinear_policy(theta, phi)
    scale = np.max(np.abs(mdp["r"])) / (1 - gamma)
    for delta in deltas:
      new_theta, ok = trpo_step_loglinear(mdp, theta, phi, delta)
      if ok:
        change = improvement(mdp, pi, loglinear_policy(new_theta, phi)) / scale
        if change < worst[0]:
          worst = (change, seed, delta)
  return worst


def _search_case(x, shapes, gamma, state_reward):
  """Unpack a flat search vector into (mdp, π, π̃); logits scaled so policies can saturate."""
  parts, i = [], 0
  for shp in shapes:
    n = int(np.prod(shp))
    parts.append(x[i:i + n].reshape(shp))
    i += n
  p_logits, r, rho_logits, pi_logits, new_logits = parts
  if state_reward:
    r = np.repeat(r[:, :1], r.shape[1], axis=1)
  mdp = {"P": softmax(3 * p_logits), "r": r, "rho0": softmax(3 * rho_logits), "gamma": gamma}
  return mdp, softmax(3 * pi_logits), softmax(3 * new_logits)


def adversarial_search(check, restarts=4, steps=400, seed=0, n_states=3, n_actions=2):
  """Maximise gap/bound of a check (a name in CHECKS, or a function) by hill climbing.

  A (1+1) evolution strategy over MDP and policy parameters, from random starts at several γ,
  with state and state-action rewards: the step size grows on success and shrinks on failure.
  Returns (the largest ratio found, the number of cases evaluated, that case as (mdp, π, π̃)).
  A ratio above 1 is a
  counterexample; run on a false statement (Theorem 1 with constant 2) it finds one, which is
  the evidence that the search has teeth.
  """
  check = CHECKS[check] if isinstance(check, str) else check
  rng = np.random.default_rng(seed)
  S, A = n_states, n_actions
  shapes = [(S, A, S), (S, A), (S,), (S, A), (S, A)]
  dim = sum(int(np.prod(s)) for s in shapes)
  best_all, evaluated, best_case = -math.inf, 0, None

  def score(x, gamma, state_reward):
    case = _search_case(x, shapes, gamma, state_reward)
    gap, bound = check(*case)
    return _ratio(case[0], gap, bound)

  for restart in range(restarts):
    gamma = [0.05, 0.2, 0.5, 0.9, 0.99][restart % 5]
    state_reward = bool(restart % 2)
    x = rng.normal(size=dim)
    best, sigma = score(x, gamma, state_reward), 0.5
    for _ in range(steps):
      y = x + sigma * rng.normal(size=dim)
      val = score(y, gamma, state_reward)
      evaluated += 1
      if val > best:
        x, best, sigma = y, val, min(sigma * 1.5, 3.0)
      else:
        sigma = max(sigma * 0.95, 1e-3)
    if best > best_all:
      best_all, best_case = best, _search_case(x, shapes, gamma, state_reward)
  return best_all, evaluated, best_case


# ----------------------------------------------------------------------------------------------
# Report.
# ----------------------------------------------------------------------------------------------


def _constant2(m, p, q):
  return -eta_minus_surrogate(m, p, q), theorem1_bound(m, p, q, constant=2.0)


def _signed_1a(m, p, q):
  return -eta_minus_surrogate(m, p, q), theorem1a_bound(m, p, q, constant=2.0)


def _sweep(check, n_examples):
  """Runs `check` on n_examples hypothesis cases; counts failures and the largest gap/bound."""
  stats = {"n": 0, "fail": 0, "worst": -math.inf}

  @settings(max_examples=n_examples, derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck))
  @given(cases())
  def run(case):
    gap, bound = check(*case)
    stats["n"] += 1
    stats["fail"] += not holds(gap, bound)
    stats["worst"] = max(stats["worst"], _ratio(case[0], gap, bound))
  run()
  return stats


def _report(n_examples, restarts, steps=2000):
  print(f"{'statement':44s} {'verdict':22s} {'cases':>8s}  tightest gap/bound")
  checks = dict(CHECKS)
  checks["Theorem 1 with 2εγ/(1−γ)² (ICML)"] = _constant2
  checks["Theorem 1a as stated (signed ε, 2)"] = _signed_1a
  for name, check in checks.items():
    stats = _sweep(check, n_examples)
    n, worst = stats["n"], stats["worst"]
    if restarts:
      for n_states in (3, 5):
        found, evaluated, _ = adversarial_search(check, restarts, steps, n_states=n_states)
        n, worst = n + evaluated, max(worst, found)
    fails = stats["fail"] or worst > 1 + 1e-9
    verdict = "FAILS" if fails else "holds"
    print(f"{name:44s} {verdict:22s} {n:8d}  {worst:.4g}", flush=True)
  m, p, q = counterexample_constant2()
  gap, bound = _constant2(m, p, q)
  print(f"  constructed (counterexample_constant2, γ = 0.1, α = 0.25): gap/bound = {gap / bound:.4g}")
  m, p, q = counterexample_signed_eps()
  print(f"  constructed (counterexample_signed_eps): η − L = {eta_minus_surrogate(m, p, q):.2g}, "
        f"ε of Eq. (33) = {theorem1a_eps(m, p, q):.4g} < 0, so the bound claims η − L ≥ "
        f"{-theorem1a_bound(m, p, q):.4g}")
  for gamma in (0.5, 0.9):
    its = [algorithm1_iterations(random_mdp(seed, 3, 2, gamma), 1e-3, 1000) for seed in range(3)]
    print(f"Algorithm 1 (C = 4εγ/(1−γ)², 3 states, 2 actions, γ = {gamma}): iterations to reach "
          f"η* − η ≤ 10⁻³|η*| from uniform: "
          + ", ".join(str(i) if i is not None else f">1000 (gap {g:.1e})" for i, g in its),
          flush=True)
  for delta in (1e-3, 0.01, 0.1):
    worst = min(search_loglinear_decrease(range(1000), deltas=(delta,), n_features=k, gamma=g)[0]
                for k in (1, 2) for g in (0.5, 0.9, 0.99))
    print(f"TRPO step, log-linear policies, δ = {delta:<6}: worst (η_new − η_old)/(max|r|/(1−γ)) "
          f"over 6,000 problems = {worst:.3g}")


def main(argv=None):
  ap = argparse.ArgumentParser(description="Run the theory checks and print a summary.")
  ap.add_argument("--examples", type=int, default=200, help="hypothesis cases per check")
  ap.add_argument("--search", type=int, default=10,
                  help="restarts of the adversarial search per check and MDP size (0: none)")
  args = ap.parse_args(argv)
  if args.examples < 1 or args.search < 0:
    print(f"theory.py: --examples must be >= 1 and --search >= 0, got {args.examples}, "
          f"{args.search}", file=sys.stderr)
    return 2
  _report(args.examples, args.search)
  return 0


if __name__ == "__main__":
  sys.exit(main())
