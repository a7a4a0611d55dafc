"""This project and its peer trained side by side in one run: wall time and return, same task.

  python bench/side_by_side.py [--env Hopper-v5] [--steps 1000000] [--seed 0] [--episodes 10]

Runs one after another on this machine: `python train.py --env ENV --steps N --seed S` with no
other flag (the task's defaults, one process), the same with `--processes 2`, and the RL Zoo's
TRPO (sb3-contrib with the Zoo's settings and one torch thread, `bench/zoo_peer.py`; needs
`pip install -e ".[peers]"`). Each is timed from its start to its exit, as a user waits for it
(Python's start, JAX's compilation and torch's import included), and its policy evaluated
deterministically for --episodes episodes from seed 12345 (ours by `train.evaluate`, the peer's
as zoo_peer.py evaluates it). Writes results/side-by-side-ENV.txt: the command, the commit and
processor, each run's wall time, training time and return, and the ratios of the peer's wall
time to ours, as a block after the file's earlier ones: speed ratios are measured in one run,
since this shared machine's speed varies.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults import ROOT, provenance  # noqa: E402

sys.path.insert(0, ROOT)
import rundir  # noqa: E402
import train  # noqa: E402


def timed(argv):
  """(seconds from start to exit, stdout) of `python ARGV` run from the project's root."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable] + argv, cwd=ROOT, capture_output=True, text=True)
  if proc.returncode:
    raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
  return time.perf_counter() - start, proc.stdout


def ours(args, run_dir, processes):
  """One run of train.py and its evaluation: {"wall", "train", "return", "backend"}."""
  wall, _ = timed(["train.py", "--env", args.env, "--steps", str(args.steps), "--seed",
                   str(args.seed), "--out", run_dir, "--overwrite",
                   *(["--processes", str(processes)] if processes > 1 else [])])
  cfg, data = rundir.load_checkpoint(run_dir)
  returns = train.evaluate(run_dir, episodes=args.episodes)
  return {"wall": wall, "train": float(data["seconds"]), "return": statistics.mean(returns),
          "std": statistics.pstdev(returns), "backend": cfg["backend"]}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--env", default="Hopper-v5")
  ap.add_argument("--steps", type=int, default=1_000_000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--episodes", type=int, default=10)
  args = ap.parse_args()
  made_by = provenance()
  rows = {}
  with tempfile.TemporaryDirectory() as tmp:
    for processes in (1, 2):
      rows[f"this project, {processes} process{'es' * (processes > 1)}"] = ours(
          args, os.path.join(tmp, f"p{processes}"), processes)
      print(rows, flush=True)
  wall, out = timed([os.path.join("bench", "zoo_peer.py"), "--env", args.env, "--seed",
                     str(args.seed), "--steps", str(args.steps), "--episodes",
                     str(args.episodes), "--json"])
  peer = json.loads(out.strip().splitlines()[-1])
  rows["sb3-contrib TRPO (RL Zoo settings, 1 torch thread)"] = {
      "wall": wall, "train": peer["seconds"], "return": statistics.mean(peer["returns"]),
      "std": statistics.pstdev(peer["returns"]), "backend": "gymnasium"}
  peer_wall = wall
  lines = [f"$ python bench/side_by_side.py --env {args.env} --steps {args.steps} --seed "
           f"{args.seed} --episodes {args.episodes}",
           f"# {made_by}; {os.cpu_count()} cores; one run after another, nothing else running",
           "run | wall s | training s | return (deterministic, mean ± std over episodes) | "
           "environments | peer wall / this wall"]
  for name, r in rows.items():
    lines.append(f"{name} | {r['wall']:.1f} | {r['train']:.1f} | {r['return']:.1f} ± "
                 f"{r['std']:.1f} | {r['backend']} | {peer_wall / r['wall']:.2f}")
  path = os.path.join(ROOT, "results", f"side-by-side-{args.env}.txt")
  earlier = ""
  if os.path.exists(path):        # earlier blocks are kept: this one goes after them
    with open(path) as f:
      earlier = f.read().rstrip("\n") + "\n\n"
  with open(path + ".tmp", "w") as f:
    f.write(earlier + "\n".join(lines) + "\n")
  os.replace(path + ".tmp", path)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
