"""How far saved locomotion policies move: return, episode length and distance, deterministically.

  python bench/forward.py [--episodes 10] LABEL=RUN_DIR [LABEL=RUN_DIR ...]

For each run directory, plays the saved policy's mode for --episodes episodes from seed 12345
(`train.evaluate_episodes`) and writes one line to results/forward-progress.txt (replacing the
line of the same label): the mean return, the episode lengths and the distance moved forward
(Gymnasium's `x_position` at the episode's end; each episode starts within the reset noise of
x = 0). A return can rise while a hopper only stands or dives: the distance and the length say
whether it walks.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults import ROOT, provenance  # noqa: E402

sys.path.insert(0, ROOT)
import train  # noqa: E402

RESULTS = os.path.join(ROOT, "results", "forward-progress.txt")


def line(label, run_dir, episodes):
  played = train.evaluate_episodes(run_dir, episodes=episodes)
  lengths = [e["length"] for e in played]
  dist = [e["distance"] for e in played if e["distance"] is not None]
  moved = (f"; distance {statistics.mean(dist):.2f} m (from {min(dist):.2f} to "
           f"{max(dist):.2f})" if dist else "; no x_position")
  return (f"{label} ({os.path.relpath(run_dir, ROOT)}): return "
          f"{statistics.mean(e['return'] for e in played):.1f}; length "
          f"{statistics.mean(lengths):.0f} steps (from {min(lengths)} to {max(lengths)}){moved}")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
  ap.add_argument("--episodes", type=int, default=10)
  args = ap.parse_args()
  new = {}
  for item in args.runs:
    label, _, run_dir = item.partition("=")
    new[label] = line(label, os.path.abspath(run_dir), args.episodes)
    print(new[label], flush=True)
  old = {}
  if os.path.exists(RESULTS):
    with open(RESULTS) as f:
      old = {l.split(" (")[0]: l.rstrip("\n") for l in f if not l.startswith(("$", "#"))}
  old.update(new)
  with open(RESULTS + ".tmp", "w") as f:
    f.write(f"$ python bench/forward.py --episodes {args.episodes} LABEL=RUN_DIR ...\n"
            f"# {provenance()}; deterministic policy (the mode of π), seed 12345\n"
            + "\n".join(old.values()) + "\n")
  os.replace(RESULTS + ".tmp", RESULTS)


if __name__ == "__main__":
  main()
