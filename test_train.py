"""Tests of the environments, sampling, the value function, the training program and the
Section 8 comparison methods, against independent references (brute-force sums, replays of the
simulator, closed forms) and by training small runs."""

import json
import math
import os
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import baselines
import envs
import policies
import rundir
import obsnorm
import sampling
import train
import trpo
import value
import workers
from test_trpo import CAT_MLP, OBS, _mean_kl, _obs, _params

ROOT = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------------------------
# Environments, sampling and the training program (issue: single path and the main job).
# ----------------------------------------------------------------------------------------------



def test_discounted_returns_match_brute_force():
  rng = np.random.default_rng(0)
  T, E, gamma = 12, 3, 0.9
  rewards = rng.normal(size=(T, E)).astype(np.float32)
  dones = rng.random((T, E)) < 0.2
  q = sampling.discounted_returns(rewards, dones, gamma)
  for e in range(E):
    for t in range(T):
      expected, k = 0.0, t
      while k < T:
        expected += gamma**(k - t) * rewards[k, e]
        if dones[k, e]:
          break
        k += 1
      assert abs(q[t, e] - expected) < 1e-5


def test_gae_matches_definition_and_limits():
  rng = np.random.default_rng(1)
  T, E, gamma, lam = 10, 2, 0.95, 0.9
  r = rng.normal(size=(T, E)).astype(np.float32)
  v = rng.normal(size=(T, E))
  nv = rng.normal(size=(T, E))
  term = rng.random((T, E)) < 0.15
  trunc = (rng.random((T, E)) < 0.15) & ~term
  adv, targets = sampling.gae(r, v, nv, term, trunc, gamma, lam)
  delta = r + gamma * nv * (1 - term) - v
  for e in range(E):
    for t in range(T):
      expected, k = 0.0, t
      while k < T:
        expected += (gamma * lam)**(k - t) * delta[k, e]
        if term[k, e] or trunc[k, e]:
          break
        k += 1
      assert abs(adv[t, e] - expected) < 1e-4
  np.testing.assert_allclose(targets, adv + v, atol=1e-5)
  # λ = 0: the one-step TD error; truncation bootstraps with V(final obs), termination does not.
  adv0, _ = sampling.gae(r, v, nv, term, trunc, gamma, 0.0)
  np.testing.assert_allclose(adv0, delta, atol=1e-5)


def test_running_obs_stats_match_numpy():
  rng = np.random.default_rng(2)
  chunks = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (5, 50, 1)]
  stats = obsnorm.obs_stats_init((4,))
  for c in chunks:
    stats = obsnorm.obs_stats_update(stats, c)
  data = np.concatenate(chunks)
  np.testing.assert_allclose(stats["mean"], data.mean(0), rtol=1e-4)
  np.testing.assert_allclose(stats["var"], data.var(0), rtol=1e-3)


def test_value_fit_reduces_the_error():
  init, apply = value.value_net((3,))
  _, vp = init(jax.random.PRNGKey(0), (-1, 3))
  x = jax.random.normal(jax.random.PRNGKey(1), (512, 3))
  y = jnp.sin(x[:, 0]) + x[:, 1] * x[:, 2]
  before = float(jnp.mean((value.value_predict(vp, None, x, apply=apply) - y)**2))
  vp, after = value.value_fit(vp, None, x, y, jax.random.PRNGKey(2), apply=apply, epochs=30)
  assert float(after) < 0.3 * before


@pytest.mark.parametrize("shape, dtype", [((2, 4, 42, 42), np.uint8),
                                          ((2, 3, 44, 45), np.float32)])
def test_value_features_are_frames_pooled_by_blocks(shape, dtype):
  # φ against an explicit loop: each output is the mean of one (H // 21)×(H // 21) block of a
  # frame (uint8 scaled to [0, 1]), in NHWC order; rows and columns past the last block dropped.
  rng = np.random.default_rng(0)
  obs = rng.integers(0, 256, shape).astype(dtype)
  n, c, h, w = shape
  p = max(1, h // 21)
  x = obs.astype(np.float64) / (255.0 if dtype == np.uint8 else 1.0)
  want = np.array([[[[x[b, k, i * p:(i + 1) * p, j * p:(j + 1) * p].mean() for k in range(c)]
                     for j in range(w // p)] for i in range(h // p)] for b in range(n)])
  np.testing.assert_allclose(value.features(jnp.asarray(obs)), want.reshape(n, -1), rtol=1e-6)
  flat = rng.normal(size=(5, 3)).astype(np.float32)
  assert value.features(flat) is flat


def test_unsupported_spaces_and_ids_are_named():
  with pytest.raises(ValueError, match="unsupported action space Tuple"):
    envs.action_kind(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))))
  with pytest.raises(ValueError, match="unknown environment id 'NoSuchEnv-v0'"):
    envs.make("NoSuchEnv-v0")
  pol = envs.policy_for(gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([2, 3]))
  assert pol["dist"] is policies.FACTORED_CATEGORICAL


def test_training_improves_cartpole(tmp_path):
  hist = train.train("CartPole-v1", steps=12_288, seed=0, out=str(tmp_path),
                     log=lambda s: None, batch=2048)["history"]
  returns = [h["mean_return"] for h in hist]
  assert returns[-1] > 2 * returns[0], returns
  assert all(h["kl"] <= 0.01 * (1 + 1e-4) for h in hist)
  lines = (tmp_path / "log.jsonl").read_text().splitlines()
  assert len(lines) == len(hist) and {"iteration", "steps", "mean_return", "kl", "seconds"} <= \
      set(json.loads(lines[-1]))
  assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]   # atomic writes


def test_training_is_reproducible_from_the_seed():
  run = lambda: [(h["mean_return"], h["kl"]) for h in train.train(
      "CartPole-v1", steps=4096, seed=3, log=lambda s: None, batch=2048)["history"]]
  assert run() == run()


def test_mujoco_smoke(tmp_path):
  hist = train.train("Hopper-v5", steps=1024, seed=0, out=str(tmp_path), log=lambda s: None,
                     batch=512, num_envs=2, normalize_obs=True)["history"]
  assert len(hist) == 2 and all(np.isfinite(h["kl"]) for h in hist)
  returns = train.evaluate(str(tmp_path), episodes=1)
  assert len(returns) == 1 and np.isfinite(returns[0])


def test_mujoco_steps_on_envpool_where_it_can_and_a_run_keeps_its_backend(tmp_path):
  pytest.importorskip("envpool")
  make = lambda **given: train.make_config(given, None, False, note=lambda s: None)
  assert make(env="Hopper-v5")["backend"] == "envpool"
  for given in ({"method": "vine"}, {"method": "cem"}, {"env_kwargs": {"healthy_reward": 2.0}}):
    assert make(env="Hopper-v5", **given)["backend"] == "gymnasium"     # what it cannot serve
  assert make(env="Humanoid-v5")["backend"] == make(env="CartPole-v1")["backend"] == "gymnasium"
  with pytest.raises(ValueError, match="^backend must be 'gymnasium' here.*'vine'"):
    make(env="Hopper-v5", method="vine", backend="envpool")
  # A checkpoint that predates the option was stepped by Gymnasium.
  assert train.checked_config({"env": "Hopper-v5"})["backend"] == "gymnasium"
  out = str(tmp_path / "a")
  run = lambda out: [(h["mean_return"], h["kl"]) for h in train.train(
      "Hopper-v5", steps=1024, seed=0, out=out, log=lambda s: None, batch=512,
      num_envs=2)["history"]]
  assert run(out) == run(str(tmp_path / "b"))       # reproducible from the seed, on EnvPool too
  assert rundir.load_checkpoint(out)[0]["backend"] == "envpool"
  with pytest.raises(ValueError, match="backend cannot change on resume"):
    train.train(out=out, resume=True, steps=2048, backend="gymnasium", log=lambda s: None)


def test_atari_smoke():
  venv, obs = envs.make("ALE/Pong-v5", num_envs=1, seed=0)
  try:
    assert obs.shape == (1, 4, 42, 42) and obs.dtype == np.uint8
  finally:
    venv.close()
  hist = train.train("ALE/Pong-v5", steps=128, seed=0, log=lambda s: None, batch=64,
                     num_envs=2, vf_epochs=1)["history"]
  assert len(hist) == 2 and all(np.isfinite(h["kl"]) for h in hist)
  # 32 frames per environment cannot finish a game of Pong (21 points): no episode ended, so
  # no return is reported, rather than a number carried over from another iteration.
  assert all(h["episodes"] == 0 and h["mean_return"] is None for h in hist)


def test_42_pixel_frames_are_84_pixel_frames_averaged_2x2():
  # envs.atari_wrappers resizes to 42×42 by area; the 84×84 frames of Mnih et al. averaged over
  # 2×2 blocks (what `policies.atari_cnn(pool=2)` does to 84×84 frames) must be the same up to
  # rounding.
  made = []
  for size in (42, 84):
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    for wrap in envs.atari_wrappers(size):
      env = wrap(env)
    made.append(env)
  frames = {42: [], 84: []}
  for size, env in zip((42, 84), made):
    obs, _ = env.reset(seed=3)
    env.action_space.seed(3)
    frames[size].append(obs)
    for _ in range(60):
      frames[size].append(env.step(env.action_space.sample())[0])
    env.close()
  small = np.asarray(frames[42], np.float64)
  pooled = np.asarray(frames[84], np.float64).reshape(-1, 4, 42, 2, 42, 2).mean((3, 5))
  assert small.shape == pooled.shape == (61, 4, 42, 42)
  assert np.abs(small - pooled).max() <= 1.0 and np.abs(small - pooled).mean() < 0.6
  assert pooled.std() > 10   # real frames, not blank ones


def test_fire_reset_serves_the_ball_and_is_restored_with_the_emulator():
  # Breakout waits for FIRE: a policy that only plays NOOP never loses a life without the
  # option; with it, the ball is served after reset and after each lost life, so NOOP loses
  # them all. The wrapper's lives count is restored with the emulator (vine snapshots).
  lives = {}
  for fire in (False, True):
    env, _ = envs.make_single("ALE/Breakout-v5", seed=0, fire_reset=fire)
    seen = []
    for _ in range(400):
      _, _, term, _, info = env.step(0)
      seen.append(info["lives"])
      if term:
        break
    lives[fire] = seen
    env.close()
  assert set(lives[False]) == {5}
  assert lives[True][0] == 5 and min(lives[True]) <= 2
  env, _ = envs.make_single("ALE/Breakout-v5", seed=1, fire_reset=True)
  env.action_space.seed(1)
  for _ in range(30):
    env.step(env.action_space.sample())
  snapshot = envs.get_state(env)
  pickle.dumps(snapshot)   # vine sends snapshots to its worker processes
  actions = [0] * 150   # NOOP: lives are lost and the ball re-served inside this stretch

  def replay():
    return [(np.array(o), r, term, info["lives"]) for o, r, term, _, info in
            (env.step(a) for a in actions)]
  first = replay()
  envs.set_state(env, snapshot)
  second = replay()
  env.close()
  assert first[0][3] > first[-1][3]
  assert all(np.array_equal(a[0], b[0]) and a[1:] == b[1:] for a, b in zip(first, second))


def test_defaults_by_family_and_explicit_options_win():
  make = lambda **given: train.make_config(given, None, False, note=lambda s: None)
  hopper = make(env="Hopper-v5")
  assert (hopper["batch"], hopper["delta"], hopper["gamma"], hopper["normalize_obs"]) == \
      (4096, 0.02, 0.995, True)
  mine = make(env="Hopper-v5", delta=0.01, normalize_obs=False)
  assert (mine["batch"], mine["delta"], mine["normalize_obs"]) == (4096, 0.01, False)
  pong = make(env="ALE/Pong-v5")
  assert pong["normalize_obs"] and pong["lam"] == 0.95 and pong["delta"] == 0.01
  assert make(env="CartPole-v1") == dict(train.DEFAULTS, env="CartPole-v1")
  assert make(env="Pendulum-v1")["gamma"] == 0.9 and make(env="Pendulum-v1", gamma=0.99)[
      "gamma"] == 0.99
  for env, own in train.TASK_DEFAULTS.items():     # each task's settings are valid and applied
    assert {k: make(env=env)[k] for k in own} == own
  swimmer = make(env="Swimmer-v5", batch=4096)    # the task's over the family's; a flag wins
  assert (swimmer["gamma"], swimmer["lam"], swimmer["batch"], swimmer["normalize_obs"]) == \
      (0.999, 0.99, 4096, True)
  assert not make(env="Hopper-v5", method="cem")["normalize_obs"]   # searches keep raw obs
  args = train.parser().parse_args(["--env", "Hopper-v5", "--no-normalize-obs"])
  assert args.normalize_obs is False and args.batch is None


def _double_reward(env):
  return gym.wrappers.TransformReward(env, lambda r: 2.0 * r)


def _cartpole(**kwargs):
  return gym.make("CartPole-v1", **kwargs)


def test_train_takes_env_kwargs_wrappers_and_a_factory(tmp_path):
  quiet = lambda s: None
  # gym.make keyword arguments: saved with the run, used again on resume and by evaluate.
  out = str(tmp_path / "kwargs")
  hist = train.train("CartPole-v1", steps=1024, seed=0, out=out, batch=512, log=quiet,
                     env_kwargs={"max_episode_steps": 12})["history"]
  assert all(h["mean_return"] <= 12 for h in hist if h["episodes"])
  assert max(train.evaluate(out, episodes=2)) <= 12
  with pytest.raises(ValueError, match="env_kwargs cannot change on resume"):
    train.train("CartPole-v1", steps=2048, out=out, resume=True, env_kwargs={}, log=quiet)
  # Extra wrappers apply after our preprocessing: CartPole's return is its length; the same
  # policy's first iteration sees the same episodes, with the returns doubled.
  plain = train.train("CartPole-v1", steps=512, seed=0, batch=512, log=quiet)["history"]
  doubled = train.train("CartPole-v1", steps=512, seed=0, batch=512, log=quiet,
                        wrappers=[_double_reward])["history"]
  assert doubled[0]["episodes"] == plain[0]["episodes"] > 5
  assert doubled[0]["mean_return"] == pytest.approx(2 * plain[0]["mean_return"])
  # A factory: the checkpoint names it; resuming or evaluating needs it again.
  out = str(tmp_path / "factory")
  train.train(_cartpole, steps=1024, seed=0, out=out, batch=512, log=quiet,
              env_kwargs={"max_episode_steps": 12})
  with pytest.raises(ValueError, match=r"python:test_train\._cartpole.*pass the same env"):
    train.evaluate(out, episodes=1)
  assert max(train.evaluate(out, episodes=2, env=_cartpole)) <= 12
  resumed = train.train(_cartpole, steps=2048, out=out, resume=True, log=quiet)["history"]
  assert resumed[0]["iteration"] == 3 and train.policy_from_run(out, env=_cartpole)(
      np.zeros(4, np.float32)) in (0, 1)
  with pytest.raises(ValueError, match="env must be a Gymnasium id or a function"):
    train.train(3, steps=10, log=quiet)
  with pytest.raises(ValueError, match="fire_reset must be off except for an Atari id"):
    train.train("CartPole-v1", steps=10, fire_reset=True, log=quiet)


def test_cli_errors_resume_and_eval(tmp_path, capsys):
  assert train.main(["--env", "NoSuchEnv-v0", "--out", str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unknown environment id 'NoSuchEnv-v0'" in err[0]
  assert train.main(["--env", "Blackjack-v1", "--out", str(tmp_path / "z")]) == 2
  assert "unsupported observation space Tuple" in capsys.readouterr().err
  assert train.main(["--delta", "-1", "--out", str(tmp_path / "y")]) == 2
  assert "delta must be a finite number > 0, got -1.0" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    train.main(["--steps", "many"])
  err = capsys.readouterr().err.strip().splitlines()
  assert exit_info.value.code == 2 and len(err) == 1 and "--steps" in err[0]
  run = str(tmp_path / "run")
  assert train.main(["--steps", "2048", "--batch", "1024", "--out", run]) == 0
  assert train.main(["--resume", run, "--steps", "4096"]) == 0
  lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
  assert [json.loads(l)["iteration"] for l in lines] == [1, 2, 3, 4]
  capsys.readouterr()
  assert train.main(["--eval", run, "--episodes", "2"]) == 0
  assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mean_return: ")
  assert train.main(["--eval", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5", "ALE/Pong-v5"])
def test_state_restore_replays_identically(env_id):
  env, obs = envs.make_single(env_id, seed=0)
  env.action_space.seed(0)
  for _ in range(15):
    env.step(env.action_space.sample())
  snapshot = envs.get_state(env)
  actions = [env.action_space.sample() for _ in range(25)]

  def replay():
    out = []
    for a in actions:
      o, r, term, trunc, _ = env.step(a)
      out.append((np.array(o), r, term, trunc))
      if term or trunc:
        break
    return out

  first = replay()
  envs.set_state(env, snapshot)
  second = replay()
  env.close()
  assert len(first) == len(second) and len(first) > 1
  for (o1, r1, t1, u1), (o2, r2, t2, u2) in zip(first, second):
    assert np.array_equal(o1, o2) and r1 == r2 and t1 == t2 and u1 == u2


def test_vine_surrogates_match_brute_force():
  policy = CAT_MLP                     # 4 actions
  params = _params(policy, OBS, 23)
  obs = _obs(23, OBS, 3)
  p = np.asarray(jax.nn.softmax(policy["apply"](params, obs)["logits"], axis=-1), np.float64)
  rng = np.random.default_rng(23)
  # Eq. (15): every action once per state.
  all_actions = jnp.tile(jnp.arange(4), (3, 1))
  q_all = rng.normal(size=(3, 4))
  got = float(trpo.surrogate(policy, params, {"obs": obs, "actions": all_actions,
                                                   "q": jnp.asarray(q_all, jnp.float32)}))
  assert abs(got - np.mean([sum(p[n, a] * q_all[n, a] for a in range(4)) for n in range(3)])) < 1e-5
  # Eq. (16): K = 3 sampled actions, q uniform.
  acts = rng.integers(0, 4, size=(3, 3))
  q_k = rng.normal(size=(3, 3))
  logq = np.full((3, 3), np.log(0.25))
  L = lambda q: float(trpo.surrogate(policy, params, {
      "obs": obs, "actions": jnp.asarray(acts), "q": jnp.asarray(q, jnp.float32),
      "logp_q": jnp.asarray(logq, jnp.float32)}))
  expected = np.mean([sum(p[n, acts[n, k]] / 0.25 * q_k[n, k] for k in range(3))
                      / sum(p[n, acts[n, k]] / 0.25 for k in range(3)) for n in range(3)])
  assert abs(L(q_k) - expected) < 1e-5
  assert abs(L(q_k + 7.0) - (expected + 7.0)) < 1e-4    # self-normalised: no baseline needed


@pytest.mark.parametrize("n_copies", [1, 3])
def test_branch_returns_use_common_random_numbers_and_replay(n_copies):
  # Three branches from one Hopper state, one after another (1 copy) or in lockstep (3 copies).
  env_id, seed, gamma, horizon = "Hopper-v5", 4, 0.99, 20
  copies = [envs.make_single(env_id, seed=seed)[0] for _ in range(n_copies)]
  env = copies[0]
  policy = envs.policy_for(env.observation_space, env.action_space, hidden=(8,))
  params = _params(policy, env.observation_space.shape, 24)
  prefix = [np.full(3, 0.1 * i, np.float32) for i in range(5)]
  for a in prefix:
    obs, *_ = env.step(a)
  snapshot = envs.get_state(env)
  noise = sampling.rollout_noise(policy, params, sampling.as_input(obs)[None],
                                 jax.random.PRNGKey(0), horizon)
  first = np.array([[0.5, -0.5, 0.2], [-0.3, 0.4, 0.0], [0.5, -0.5, 0.2]], np.float32)
  branch_noise = jax.tree_util.tree_map(lambda x: np.repeat(x, 3, axis=1), noise)
  q, steps = sampling.branch_returns(copies, [snapshot] * 3, first, policy, params, None,
                                     branch_noise, horizon, gamma)
  assert 3 <= steps <= 3 * horizon
  for c in copies:
    c.close()
  assert q[0] == q[2] and q[0] != q[1]        # same first action + same noise: same estimate
  # Independently: a fresh environment, the same seed and prefix (no state restore), the first
  # action, then the policy on the same noise (one state per call); the discounted return must
  # match Q̂ (exactly when the branches ran one at a time, to float32 rounding of the policy's
  # batched matrix products otherwise).
  env2, _ = envs.make_single(env_id, seed=seed)
  for a in prefix:
    env2.step(a)
  o, r, term, trunc, _ = env2.step(first[1])
  total = float(r)
  for t in range(horizon - 1):
    if term or trunc:
      break
    a = sampling.act(policy, params, None, sampling.as_input(o)[None],
                     jax.tree_util.tree_map(lambda x: x[t], noise))
    o, r, term, trunc, _ = env2.step(np.clip(np.asarray(a)[0], -1, 1))
    total += gamma**(t + 1) * float(r)
  env2.close()
  assert abs(total - q[1]) < (1e-9 if n_copies == 1 else 1e-4) * max(1.0, abs(total))


def test_lockstep_branches_and_worker_processes_equal_one_branch_at_a_time():
  # The same vine batch three ways: one branch at a time in this process, 4 copies in lockstep,
  # and 2 worker processes holding 4 copies each (their groups equal the lockstep ones; the
  # snapshots, parameters and common random numbers travel by pickle).
  env, obs = envs.make_single("CartPole-v1", 0)
  policy = envs.policy_for(env.observation_space, env.action_space, hidden=(8,))
  params = _params(policy, env.observation_space.shape, 5)
  kw = dict(n_states=6, n_actions=2, horizon=10, gamma=0.9, trunk_steps=40, q="all")
  trunk = {"obs": obs, "ret": 0.0, "len": 0}
  snap = envs.get_state(env)
  vine = lambda **extra: sampling.vine(env, trunk, policy, params, None, jax.random.PRNGKey(3),
                                       **kw, **extra)[0]
  serial = vine()
  copies = [env] + [envs.make_single("CartPole-v1", 0)[0] for _ in range(3)]
  envs.set_state(env, snap)
  lockstep = vine(copies=copies)
  pool = workers.branch_pool("CartPole-v1", 0, 2, copies=4, hidden=(8,))
  try:
    envs.set_state(env, snap)
    pooled = vine(copies=[None] * 4, pool=pool)
  finally:
    pool["shutdown"]()
    for c in copies:
      c.close()
  assert serial.keys() == pooled.keys() == lockstep.keys()
  for k in serial:      # categorical actions from Gumbel noise: no rounding to tell them apart
    np.testing.assert_array_equal(serial[k], lockstep[k])
    np.testing.assert_array_equal(lockstep[k], pooled[k])
  assert np.ptp(serial["q"]) > 0


def test_step_consumes_vine_batches():
  policy = CAT_MLP
  params = _params(policy, OBS, 25)
  obs = _obs(25, OBS, 32)
  rng = np.random.default_rng(25)
  q = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
  batch = {"obs": obs, "actions": jnp.tile(jnp.arange(4), (32, 1)), "q": q}
  new, info = trpo.step(params, batch, policy, delta=0.01)
  old = policy["apply"](params, obs)
  kl = _mean_kl(policy, new, obs, old)
  gain = trpo.surrogate(policy, new, batch) - trpo.surrogate(policy, params, batch)
  assert bool(info["accepted"]) and kl <= 0.01 * (1 + 1e-4) and float(gain) > 0
  with pytest.raises(ValueError, match=r"batch\['actions'\] must be of shape \[N, K\]"):
    trpo.step(params, dict(batch, actions=batch["actions"][:, :3]), policy)
  with pytest.raises(ValueError, match="fisher must be fisher_vp_analytic or fisher_vp_hessian"):
    trpo.step(params, batch, policy, fisher=trpo.fisher_vp_empirical)


def test_vine_training_improves_cartpole_and_runs_on_mujoco_and_atari():
  quiet = lambda s: None
  hist = train.train("CartPole-v1", steps=25_000, seed=0, log=quiet, method="vine", batch=1000,
                     vine_states=60, vine_q="all", vine_horizon=40)["history"]
  assert hist[-1]["mean_return"] > 1.5 * hist[0]["mean_return"], [h["mean_return"] for h in hist]
  assert all(h["kl"] <= 0.01 * (1 + 1e-4) for h in hist)
  hist = train.train("Hopper-v5", steps=300, seed=0, log=quiet, method="vine", batch=100,
                     vine_states=5, vine_actions=3, vine_horizon=10,
                     normalize_obs=True)["history"]
  assert all(np.isfinite(h["kl"]) for h in hist)
  hist = train.train("ALE/Pong-v5", steps=40, seed=0, log=quiet, method="vine", batch=16,
                     vine_states=2, vine_actions=2, vine_horizon=4,
                     vine_q="uniform")["history"]
  assert len(hist) >= 1 and all(np.isfinite(h["kl"]) for h in hist)


# ----------------------------------------------------------------------------------------------
# The Section 8 comparison methods (baselines.py, --method of train.py).
# ----------------------------------------------------------------------------------------------



def test_cem_finds_the_maximum_of_a_quadratic():
  c = np.array([1.0, -2.0, 0.5, 3.0, 0.0])
  search, rng = baselines.cem_init(np.zeros(5), 2.0), np.random.default_rng(0)
  for i in range(60):
    thetas = baselines.cem_ask(search, rng, 50)
    search = baselines.cem_tell(search, thetas, -np.sum((thetas - c)**2, 1), 0.2,
                                extra_std=0.1 * max(0.0, 1 - i / 30))
  np.testing.assert_allclose(search["mean"], c, atol=1e-3)
  with pytest.raises(ValueError, match="finite"):
    baselines.cem_tell(search, thetas, np.full(50, np.nan))


def test_weighted_ml_is_weighted_least_squares():
  # A linear Gaussian policy μ = Wx + b, σ = exp(r): the weighted log-likelihood's maximiser is
  # weighted least squares for (W, b) and the weighted residual variance for σ².
  rng = np.random.default_rng(0)
  x = rng.normal(size=(512, 3)).astype(np.float32)
  a = (x @ [[1.0], [-0.5], [2.0]] + 0.3 + 0.5 * rng.normal(size=(512, 1))).astype(np.float32)
  w = rng.uniform(0.1, 2.0, 512).astype(np.float32)
  policy = policies.gaussian_policy(policies.linear(1), 1)
  params = policy["init"](jax.random.PRNGKey(0), (3,))
  fit = baselines.weighted_ml(policy, params, jnp.asarray(x), jnp.asarray(a), jnp.asarray(w),
                              jax.random.PRNGKey(1), epochs=1500, n_minibatches=1, lr=2e-2)
  X = np.hstack([x, np.ones((512, 1))])
  coef = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w[:, None] * a))
  var = np.sum(w[:, None] * (a - X @ coef)**2) / np.sum(w)
  mu = policy["apply"](fit, jnp.asarray(x))
  np.testing.assert_allclose(mu["mean"], X @ coef, atol=2e-3)
  np.testing.assert_allclose(np.exp(2 * fit["log_std"][0]), var, rtol=2e-3)


def test_reps_weights_meet_the_kl_bound_and_match_features():
  # At the dual's minimiser (η*, v*): KL(p ‖ uniform) = ε for p ∝ exp(δ/η) (the constraint is
  # active), and ∂g/∂v = 0 is the discounted stationarity of the features under p:
  # E_p[φ(s)] = (1−γ) φ̄₀ + γ E_p[(1−d) φ(s')].
  rng = np.random.default_rng(1)
  n, eps, gamma = 400, 0.3, 0.9
  feats = baselines.reps_features(rng.normal(size=(n, 2)))
  nxt = baselines.reps_features(rng.normal(size=(n, 2)))
  init = jnp.mean(baselines.reps_features(rng.normal(size=(50, 2))), 0)
  rewards = jnp.asarray(rng.normal(size=n) + np.asarray(feats[:, 0]), jnp.float32)
  not_done = jnp.asarray(rng.uniform(size=n) > 0.1, jnp.float32)
  w, eta, v = baselines.reps_weights(feats, nxt, rewards, not_done, init, gamma, eps)
  p = np.asarray(w, np.float64) / np.sum(w)
  assert float(eta) > 0
  np.testing.assert_allclose(np.sum(p * np.log(n * p)), eps, rtol=1e-3)
  lhs = p @ np.asarray(feats)
  rhs = (1 - gamma) * np.asarray(init) + gamma * p @ (np.asarray(not_done)[:, None] * nxt)
  np.testing.assert_allclose(lhs, rhs, atol=1e-4)


@pytest.mark.parametrize("method, options", [
    ("natural_gradient", {"step_size": 3.0}), ("empirical_fim", {}), ("max_kl", {"delta": 0.05}),
    ("rwr", {}), ("reps", {"ml_epochs": 3}), ("cem", {"population": 10}), ("cma", {"population": 10})])
def test_comparison_methods_improve_cartpole(method, options, tmp_path):
  hist = train.train("CartPole-v1", steps=12_288, seed=0, out=str(tmp_path),
                     log=lambda s: None, method=method, batch=2048, **options)["history"]
  returns = [h["mean_return"] for h in hist]
  assert np.mean(returns[-2:]) > 2 * returns[0], returns
  if method == "max_kl":   # the max-KL constraint bounds the mean KL too
    assert all(h["kl"] <= 0.05 * (1 + 1e-4) for h in hist)
  # The log is strict JSON: a quantity the method lacks (CEM/CMA have no KL, and score
  # deterministic candidates: no entropy) is null, not NaN.
  def no_constants(c):
    raise ValueError(c)
  logged = [json.loads(l, parse_constant=no_constants)
            for l in (tmp_path / "log.jsonl").read_text().splitlines()]
  assert len(logged) == len(hist) and all(
      (r["kl"] is None) == (r["entropy"] is None) == (method in ("cem", "cma")) for r in logged)
  # CartPole's two actions: the logged entropy is a categorical's, in (0, log 2].
  assert all(0 < r["entropy"] <= math.log(2) + 1e-6 for r in logged if r["entropy"] is not None)
  # The checkpoint carries the search state: resuming continues, and --eval runs.
  train.train("CartPole-v1", steps=hist[-1]["steps"] + 1, out=str(tmp_path), resume=True,
              log=lambda s: None)
  assert np.isfinite(train.evaluate(str(tmp_path), episodes=1)[0])


def test_cma_state_is_rebuilt_from_its_costs():
  # The checkpoint keeps CMA-ES as the costs told so far; replaying them from the same seed must
  # give the state the search had (mean, step size, covariance) and the same next candidates.
  theta0, rng = np.linspace(-1, 1, 7), np.random.default_rng(0)
  search = baselines.cma_init(theta0, 0.5, 6, seed=3)
  for _ in range(4):
    thetas = np.asarray(search["es"].ask())
    costs = np.sum((thetas - 0.3)**2, axis=1) + rng.normal(size=6)
    search["es"].tell(list(thetas), list(costs))
    search = {"es": search["es"], "costs": np.concatenate([search["costs"], costs[None]])}
  es = search["es"]
  mean, sigma, C, following = np.array(es.mean), es.sigma, np.array(es.C), np.asarray(es.ask())
  rebuilt = baselines.cma_init(theta0, 0.5, 6, seed=3, costs=search["costs"])["es"]
  np.testing.assert_array_equal(rebuilt.mean, mean)
  np.testing.assert_array_equal(rebuilt.C, C)
  assert rebuilt.sigma == sigma
  np.testing.assert_array_equal(np.asarray(rebuilt.ask()), following)


def test_a_callback_sees_each_record_and_stops_the_run(tmp_path):
  seen = []
  run = train.train("CartPole-v1", steps=8192, seed=0, out=str(tmp_path), batch=1024,
                    log=lambda line: None,
                    callback=lambda record: seen.append(record) or record["iteration"] == 3)
  assert [r["iteration"] for r in seen] == [r["iteration"] for r in run["history"]] == [1, 2, 3]
  assert all(isinstance(r["mean_return"], float) and isinstance(r["kl"], float) for r in seen)
  lines = (tmp_path / "log.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == json.loads(json.dumps(seen))


def test_a_saved_run_as_a_function_acts_as_evaluate_does(tmp_path):
  train.train("CartPole-v1", steps=2048, seed=0, out=str(tmp_path), batch=1024,
              log=lambda line: None)
  act = train.policy_from_run(str(tmp_path))
  venv, obs = envs.make("CartPole-v1", 1, seed=7)
  total, done = 0.0, False
  while not done:
    obs, r, term, trunc, _ = venv.step(np.array([act(obs[0])]))
    total, done = total + float(r[0]), bool(term[0] or trunc[0])
  venv.close()
  assert total == train.evaluate(str(tmp_path), episodes=1, seed=7)[0] > 0


def test_async_environments_started_without_a_main_guard_say_how_to_fix_it(tmp_path):
  # The workers re-run the unguarded script and print their own tracebacks to the same stderr,
  # in no fixed order: the script's own process writes its error to a file named by its pid.
  script = tmp_path / "script.py"
  script.write_text(f"import os, sys; sys.path.insert(0, {ROOT!r})\nimport train\ntry:\n"
                    "  train.train('ALE/Pong-v5', steps=64, batch=32, num_envs=2, vf_epochs=1)\n"
                    "except Exception as e:\n"
                    f"  open(os.path.join({str(tmp_path)!r}, f'error-{{os.getpid()}}'), 'w')"
                    ".write(f'{type(e).__name__}: {e}')\n  raise\n")
  proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    status = proc.wait(timeout=300)
  finally:
    proc.kill()       # a hung script does not outlive the test
  assert status != 0
  error = (tmp_path / f"error-{proc.pid}").read_text()
  assert error.startswith("ValueError: ") and "if __name__ == '__main__':" in error, error


def test_plot_groups_seeds_of_a_setting_and_writes_a_png(tmp_path):
  import plot
  runs = []
  for method, seed in (("single_path", 0), ("single_path", 1), ("natural_gradient", 0)):
    runs.append(str(tmp_path / f"{method}-{seed}"))
    train.train("CartPole-v1", steps=2048, seed=seed, out=runs[-1], batch=1024, method=method,
                step_size=0.5, log=lambda line: None)
  groups = plot.settings(runs)
  assert sorted(groups) == ["CartPole-v1 Natural Gradient, 1 seed(s)",
                            "CartPole-v1 Single Path, 2 seed(s)"]
  steps, returns = groups["CartPole-v1 Single Path, 2 seed(s)"][1]
  assert list(steps) == [1024, 2048] and len(returns) == 2
  assert plot.main(runs + ["--out", str(tmp_path / "curves.png")]) == 0
  assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_gives_one_line_for_bad_inputs(tmp_path, capsys):
  import plot
  run = tmp_path / "run"
  train.train("CartPole-v1", steps=1024, out=str(run), batch=1024, log=lambda line: None)
  good = (run / "log.jsonl").read_text()
  cases = [("", "curves", "--out must end in one of"), ("", "curves.xyz", "--out must end in"),
           ("", "missing/curves.png", "in a directory that does not exist"),
           ('{"iteration": 1, "steps": 1024, "mean_return": null}\n', "c.png",
            "has no finished episode in its log yet"),
           ("\n", "c.png", "has no finished episode"),
           ('{"iteration": 1, "steps": 1024, "mean_return": "12"}\n', "c.png",
            "iteration 1 lacks integer 'steps' or a numeric 'mean_return'"),
           ('{"iteration": 1, "mean_return": 12.0}\n', "c.png", "iteration 1 lacks integer")]
  for log, out, message in cases:
    (run / "log.jsonl").write_text(log or good)
    assert plot.main([str(run), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plot.py: error: ") and message in err[0], err
  assert sorted(os.listdir(tmp_path)) == ["run"]   # nothing written


def test_evaluation_records_a_video_and_the_same_episodes(tmp_path, capsys):
  run = str(tmp_path / "run")
  train.train("CartPole-v1", steps=1024, seed=0, out=run, batch=1024, log=lambda line: None)
  video = tmp_path / "eval.mp4"
  (tmp_path / "eval-step-0.mp4").write_text("someone else's file")   # the recorder's own name
  assert train.evaluate(run, 2, seed=3, video=str(video)) == train.evaluate(run, 2, seed=3)
  assert video.stat().st_size > 1000 and video.read_bytes()[4:8] == b"ftyp"   # an MP4
  # Nothing but the named file is written, and nothing else is touched.
  assert sorted(os.listdir(tmp_path)) == ["eval-step-0.mp4", "eval.mp4", "run"]
  assert (tmp_path / "eval-step-0.mp4").read_text() == "someone else's file"
  assert train.main(["--eval", run, "--video", str(tmp_path / "eval.avi")]) == 2
  assert "--video must name an .mp4 file" in capsys.readouterr().err
  # A recording that succeeds says nothing on stderr (SDL's XDG_RUNTIME_DIR line included).
  env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER")}
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--eval", run,
                         "--episodes", "1", "--video", str(video)], capture_output=True,
                        text=True, env=env, timeout=300)
  assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def _blow_up_once(env):
  """An extra wrapper that makes the simulation unstable once (velocities of 1e30 before the
  20th step), so that MuJoCo warns."""
  calls = [0]

  def action(a):
    calls[0] += 1
    if calls[0] == 20:
      env.unwrapped.data.qvel[:] = 1e30
    return a
  return gym.wrappers.TransformAction(env, action, env.action_space)


def test_a_mujoco_run_writes_nothing_outside_its_directory(tmp_path, monkeypatch):
  # MuJoCo's own warning handler appends to MUJOCO_LOG.TXT in the working directory; envs.py
  # turns its warnings into Python warnings instead.
  monkeypatch.chdir(tmp_path)
  with pytest.warns(RuntimeWarning, match="MuJoCo: Nan, Inf or huge value"):
    train.train("InvertedPendulum-v5", steps=256, batch=256, out="run", wrappers=[_blow_up_once],
                log=lambda line: None)
  assert sorted(os.listdir(tmp_path)) == ["run"]


def test_mujoco_notes_about_gymnasiums_model_files_are_not_printed():
  # HalfCheetah's model uses an attribute the installed MuJoCo calls deprecated: a note the
  # user cannot act on, which would come with every run.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    venv = envs.make("HalfCheetah-v5")[0]
    venv.close()
  assert not [w for w in caught if "MuJoCo" in str(w.message)], caught


def test_the_first_iterations_of_a_committed_run_replay():
  # Bit-identical on the machine that made it; on another processor XLA's CPU kernels may round
  # differently, so floats are compared to a relative 1e-4, which a rounding difference in the
  # first iterations of CartPole stays far below and a change in the code does not.
  committed = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "defaults",
                           "CartPole-v1-seed0")
  cfg = rundir.load_checkpoint(committed)[0]
  with open(os.path.join(committed, "log.jsonl")) as f:
    logged = [json.loads(line) for line in f][:3]
  run = train.train("CartPole-v1", steps=3 * cfg["batch"], seed=0, log=lambda s: None)
  assert {k: v for k, v in run["config"].items() if k not in ("steps", "backend")} == \
      {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()
       if k not in ("steps", "backend")}
  for old, new in zip(logged, run["history"], strict=True):
    for k in ("iteration", "steps", "episodes", "backtracks", "accepted"):
      assert new[k] == old[k], (k, old[k], new[k])
    for k in ("mean_return", "kl", "surrogate_improve", "entropy", "vf_loss"):
      assert new[k] == pytest.approx(old[k], rel=1e-4), (k, old[k], new[k])
