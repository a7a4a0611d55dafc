"""Table 1 of the paper at this machine's scale: one Atari game, single path and vine TRPO.

  python bench/table1.py --game Pong [--steps 2000000] [--methods single_path vine] [--jobs 1]
                        [--summarize-only] [--figure]
  python bench/table1.py --game all --steps 5000000 --methods single_path   # every game in turn
  python bench/table1.py --game Breakout --methods single_path_fire_reset  # FIRE after a lost life

The paper's protocol (Section 8.2, Table 3): Mnih et al. (2013) preprocessing (envs.py), the CNN
of Figure 3 (policies.atari_cnn), δ = 0.01, γ = 0.99; vine with q = uniform over the actions.
What is scaled down: the paper takes 500 iterations of 100K (single path) or 400K (vine) steps;
here an iteration is 2,048 steps (single path: 8 environments × 256; vine: a 2,048-step trunk,
N = 64 states × K = 4 uniform actions × T = 50 steps of branches), and single path uses GAE(λ =
0.95) with a small value function (value.value_net) instead of the paper's discounted returns,
because with the paper's estimator 1M steps did not improve Pong at all (results/ALE_Pong-v5.txt);
and frames are normalised per pixel by running statistics (--normalize-obs), because with frames
in [0, 1] the CNN's features hardly vary between states and the policy learned only action
frequencies (results/ALE_Pong-v5-gae-raw-frames.txt).

Seeds other than 0 (--seed S) are named GAME-METHOD-seedS throughout (run directory, curve,
committed copy, results/table1-GAME-seedS.txt), so that no seed overwrites another.

Runs longer than a session: every summary (also `--summarize-only`, which can be run while a
run goes on) copies each run's checkpoint and log to results/table1/resume/GAME-METHOD, to be
committed; when runs/ is missing (a fresh checkout), the run is carried on from that copy.

Each method runs as `python train.py --env ALE/GAME-v5 --method M --steps N --out
runs/table1/GAME-M FLAGS`; a run whose log already reaches N is skipped, one with a checkpoint
is carried on with `train.py --resume` (so a longer --steps extends it). Then each run's curve
(steps, return, seconds per iteration) is copied to results/table1/GAME-M.csv, and
results/table1-GAME.txt gets, for both methods: the command, the score (the mean
training-episode return over the last 10% of its steps, as the paper's learning curves), the
paper's row and the random-play score, steps per second, and how long the paper's full protocol
(500 iterations) would take at that speed. The summary reads the run's log, else its committed
CSV, so a machine without runs/ (or one method run alone) keeps the other results.
"""

import argparse
import csv
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from learning import ROOT, copy_run, read_log as _log, run_commands  # noqa: E402

# Table 1 of the paper (ICML text): random play, single path, vine.
PAPER = {"BeamRider": (354, 1425.2, 859.5), "Breakout": (1.2, 10.8, 34.2),
         "Enduro": (0, 534.6, 430.8), "Pong": (-20.4, 20.9, 20.9),
         "Qbert": (157, 1973.5, 7732.5), "Seaquest": (110, 1908.6, 788.4),
         "SpaceInvaders": (179, 568.4, 450.2)}
# A later TRPO for comparison: OpenAI Baselines' trpo_mpi at 10M steps, its published Atari
# benchmark (github.com/openai/baselines, benchmarks_atari10M.htm).
BASELINES_10M = {"BeamRider": 683, "Breakout": 14.98, "Enduro": 24.8, "Pong": 2.82, "Qbert": 2486,
                 "Seaquest": 710, "SpaceInvaders": 458}
FLAGS = {"single_path": ["--delta", "0.01", "--batch", "2048", "--lam", "0.95", "--normalize-obs"],
         "vine": ["--delta", "0.01", "--batch", "2048", "--normalize-obs", "--vine-q", "uniform",
                  "--vine-states", "64", "--vine-actions", "4", "--vine-horizon", "50",
                  "--vine-workers", "2"]}
# Breakout's remedy for the stuck serve (README), not the paper's protocol: single path with
# FIRE after reset and after a lost life. Run it with --methods single_path_fire_reset.
FLAGS["single_path_fire_reset"] = FLAGS["single_path"] + ["--fire-reset"]
METHOD = {"single_path": "single_path", "vine": "vine", "single_path_fire_reset": "single_path"}
PAPER_COLUMN = {"single_path": 0, "vine": 1, "single_path_fire_reset": 0}
FULL_STEPS = {"single_path": 500 * 100_000, "vine": 500 * 400_000,   # Table 3
              "single_path_fire_reset": 500 * 100_000}


def _command(env, seed, steps, method):
  """The train.py command line of one Table 1 run."""
  return [sys.executable, os.path.join(ROOT, "train.py"), "--env", env, "--method", METHOD[method],
          "--seed", str(seed), "--steps", str(steps), "--out",
          _run_dir(env, method, seed)] + FLAGS[method]


def _name(env, method, seed):
  """GAME-METHOD for env ALE/GAME-v5 and seed 0 (the first runs' names), GAME-METHOD-seedS for
  another seed: every seed's run directory, curve and committed copy apart."""
  return f"{env[4:-3]}-{method}" + (f"-seed{seed}" if seed else "")


def _run_dir(env, method, seed):
  """runs/table1/GAME-METHOD[-seedS]."""
  return os.path.join(ROOT, "runs", "table1", _name(env, method, seed))


def _curve(run_dir, csv_path):
  """The run's (steps, episodes, mean_return, seconds) per iteration. Read from its log when the
  run directory exists, and then also written to csv_path (committed, so the score survives the
  run directory); otherwise read from csv_path; [] if neither exists. An iteration in which no
  episode ended has no return (older logs repeated the previous one there: dropped by
  episodes = 0); CSVs written before the episodes column count every iteration once."""
  log = _log(run_dir)
  if log:
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    with open(csv_path + ".tmp", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["iteration", "steps", "episodes", "mean_return", "seconds"])
      for r in log:
        ret = "" if r["mean_return"] is None or not r["episodes"] else f"{r['mean_return']:.3f}"
        w.writerow([r["iteration"], r["steps"], r["episodes"], ret, f"{r['seconds']:.1f}"])
    os.replace(csv_path + ".tmp", csv_path)
  if not os.path.exists(csv_path):
    return []
  with open(csv_path) as f:
    return [(int(r["steps"]), int(r.get("episodes", 1)),
             float(r["mean_return"]) if r["mean_return"] else math.nan, float(r["seconds"]))
            for r in csv.DictReader(f)]


def _kept(env, method, seed):
  """results/table1/resume/GAME-METHOD[-seedS]: a committed copy of a run's checkpoint and log."""
  return os.path.join(ROOT, "results", "table1", "resume", _name(env, method, seed))


def _episode_mean(curve, lo, hi):
  """Mean return of the episodes that ended at steps in [lo, hi] (each iteration's mean
  weighted by its episode count); None if none ended there."""
  its = [(n, ret) for s, n, ret, _ in curve if lo <= s <= hi and n > 0]
  return sum(n * ret for n, ret in its) / sum(n for n, _ in its) if its else None


def _score(curve, method):
  """One line: steps, the score (mean return of the training episodes that ended in the last
  10% of steps, as the paper's learning curves), the first 10% for contrast, and the learner's
  speed with the full protocol's time."""
  steps, seconds = curve[-1][0], curve[-1][3]
  fmt = lambda x: "no episode ended" if x is None else f"{x:.1f}"
  rate = steps / seconds
  return (f"    {steps:,} steps, {len(curve)} iterations: score "
          f"{fmt(_episode_mean(curve, 0.9 * steps, steps))} (last 10% of steps; first 10%: "
          f"{fmt(_episode_mean(curve, 0, 0.1 * steps))}); learner {rate:.0f} steps/s, so the "
          f"paper's {FULL_STEPS[method] / 1e6:.0f}M steps would take "
          f"{FULL_STEPS[method] / rate / 3600:.0f} h here")


def _blocks(path):
  """{method: its score line} from an earlier results/table1-GAME.txt ({} if none)."""
  if not os.path.exists(path):
    return {}
  out, method = {}, None
  with open(path) as f:
    for line in f.read().splitlines():
      if line.startswith("  ") and not line.startswith("    ") and ":" in line:
        method = line.split(":")[0].strip()
      elif line.startswith("    ") and method:
        out[method] = line
  return out




def figure(path, window=100_000):
  """The paper's Figure 5 at this machine's scale: one panel per game, each method's training
  return (the episodes ending in each window of steps, weighted by their count) against
  simulator steps, from the committed curves results/table1/GAME-METHOD.csv; random play and
  the paper's final scores as horizontal lines. Needs matplotlib (`[plots]`)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 4, figsize=(16, 7))
  xmax = window
  for ax, game in zip(axes.flat, sorted(PAPER)):
    random, *paper = PAPER[game]
    for m, color in zip(FLAGS, ("C0", "C1", "C2")):
      curve = _curve(_run_dir(f"ALE/{game}-v5", m, 0),
                     os.path.join(ROOT, "results", "table1", f"{game}-{m}.csv"))
      if curve:
        ends = range(window, curve[-1][0] + window, window)
        xmax = max(xmax, ends[-1])
        points = [(e, _episode_mean(curve, e - window + 1, e)) for e in ends]
        xs, ys = zip(*[(e, y) for e, y in points if y is not None]) if any(
            y is not None for _, y in points) else ((), ())
        ax.plot(xs, ys, color=color, lw=2, label=f"{m.replace('_', ' ')} (here)")
      if m in ("single_path", "vine"):
        ax.axhline(paper[PAPER_COLUMN[m]], color=color, ls="--", lw=1,
                   label=f"{m.replace('_', ' ')} (paper, 50M/200M steps)")
    ax.axhline(random, color="gray", ls=":", lw=1, label="random play")
    ax.set(title=game, xlabel="simulator steps")
    ax.grid(alpha=0.3)
  for ax in axes.flat[:-1]:
    ax.set_xlim(0, xmax)   # one scale of steps in every panel
  axes.flat[-1].axis("off")
  legend = {}
  for ax in axes.flat:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      legend.setdefault(label, handle)
  axes.flat[-1].legend(legend.values(), legend.keys(), loc="center", fontsize=11)
  fig.suptitle(f"Table 1 games: mean training return per {window:,} steps")
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def run_game(game, args):
  """Runs (or carries on) the game's runs of args.methods, then writes its summary."""
  env = f"ALE/{game}-v5"
  runs = {m: _run_dir(env, m, args.seed) for m in args.methods}
  cmds = {m: _command(env, args.seed, args.steps, m) for m in args.methods}
  if not args.summarize_only:
    todo = []
    for m in args.methods:
      if not os.path.exists(runs[m]) and os.path.exists(_kept(env, m, args.seed)):
        copy_run(_kept(env, m, args.seed), runs[m])   # runs/ is gone: carry on the copy
      log = _log(runs[m])
      if log and log[-1]["steps"] >= args.steps:
        continue
      if os.path.exists(os.path.join(runs[m], "checkpoint.npz")):   # carry on a stopped run
        todo.append((m, [sys.executable, os.path.join(ROOT, "train.py"), "--resume", runs[m],
                         "--steps", str(args.steps)], runs[m]))
      else:
        todo.append((m, cmds[m], runs[m]))
    run_commands(todo, args.jobs)
  random, *paper = PAPER[game]
  seed_tag = f"-seed{args.seed}" if args.seed else ""
  path = os.path.join(ROOT, "results", f"table1-{game}{seed_tag}.txt")
  previous = _blocks(path)
  lines = [f"$ python bench/table1.py --game {game} --steps {args.steps}"
           + (f" --seed {args.seed}" if args.seed else ""),
           f"{env}: random play {random}; paper (500 iterations): single path {paper[0]}, "
           f"vine {paper[1]}; OpenAI Baselines trpo_mpi at 10M steps {BASELINES_10M[game]}"]
  for m in FLAGS:   # every method, so that summarising one run keeps the other's line
    curve = _curve(_run_dir(env, m, args.seed),
                   os.path.join(ROOT, "results", "table1", f"{_name(env, m, args.seed)}.csv"))
    if m not in ("single_path", "vine") and not curve and m not in previous:
      continue   # a variant this game has not run
    command = " ".join(["python"] + _command(env, args.seed, args.steps, m)[1:])
    lines.append(f"  {m}: $ {command.replace(ROOT + '/', '')}")
    if os.path.exists(os.path.join(_run_dir(env, m, args.seed), "checkpoint.npz")):
      copy_run(_run_dir(env, m, args.seed), _kept(env, m, args.seed))
    if curve:
      lines.append(_score(curve, m))
    elif m in previous and "not run" not in previous[m]:
      # a run whose log is gone: its line as the last summary wrote it
      note = " [run log lost; line kept from the earlier summary]"
      lines.append(previous[m] if note in previous[m] else previous[m] + note)
    else:
      lines.append("    not run")
  text = "\n".join(lines)
  with open(path + ".tmp", "w") as f:
    f.write(text + "\n")
  os.replace(path + ".tmp", path)
  print(text)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--game", required=True, choices=sorted(PAPER) + ["all"],
                  help="a game, or all seven one after another")
  ap.add_argument("--steps", type=int, default=2_000_000)
  ap.add_argument("--methods", nargs="+", choices=list(FLAGS), default=["single_path", "vine"])
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--jobs", type=int, default=1)
  ap.add_argument("--summarize-only", action="store_true")
  ap.add_argument("--figure", action="store_true",
                  help="also draw results/figure5.png from every game's committed curves")
  args = ap.parse_args()
  for game in sorted(PAPER) if args.game == "all" else [args.game]:
    run_game(game, args)
  if args.figure:
    figure(os.path.join(ROOT, "results", "figure5.png"))


if __name__ == "__main__":
  main()
