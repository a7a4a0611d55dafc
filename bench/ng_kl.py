"""Per-update KL of the fixed natural-gradient steps against TRPO's, Hopper at Table 2's settings.

  python bench/ng_kl.py

Section 7's argument for the trust region: a fixed step takes updates of whatever size the
current A⁻¹g gives, while TRPO's line search keeps each near δ. Reads the committed logs of
results/figure4-table2/hopper_table2/ (bench/figure4.py --tasks hopper_table2) and writes
results/ng-kl-hopper.txt (per run: the KL(old ‖ new) of the first and last update and its
median over the last 10 updates) and results/ng-kl-hopper.png (KL per update, log scale; needs
matplotlib).
"""

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from defaults import provenance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "results", "figure4-table2", "hopper_table2")


def logs():
  """{run name: [(steps, kl)]} of the single-path and natural-gradient runs, in name order."""
  out = {}
  for name in sorted(os.listdir(RUNS)):
    if name.startswith(("single_path", "natural_gradient")):
      with open(os.path.join(RUNS, name, "log.jsonl"), encoding="utf-8") as f:
        out[name] = [(r["steps"], r["kl"]) for r in map(json.loads, f)]
  return out


def main():
  runs = logs()
  lines = ["$ python bench/ng_kl.py", f"# {provenance()} (it reads the committed logs)",
           "KL(old ‖ new) of each update, Hopper-v5 at Table 2's settings (1M steps an update)"]
  for name, kls in runs.items():
    last = [kl for _, kl in kls[-10:]]
    lines.append(f"{name}: {len(kls)} updates; first {kls[0][1]:.4f}, last {kls[-1][1]:.4f}, "
                 f"median of the last 10 {statistics.median(last):.4f}")
  with open(os.path.join(ROOT, "results", "ng-kl-hopper.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, kls in runs.items():
    label = "TRPO single path (δ = 0.01)" if name.startswith("single") else \
        f"natural gradient, step {name.split('step')[1].split('-')[0]}"
    ax.plot([s / 1e6 for s, _ in kls], [kl for _, kl in kls], marker="o", ms=3, label=label,
            lw=2.5 if name.startswith("single") else 1.5)
  ax.set(yscale="log", xlabel="environment steps (millions)", ylabel="KL(old ‖ new) of the update",
         title="Hopper-v5, Table 2's settings: the size of each update")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(ROOT, "results", "ng-kl-hopper.png"), dpi=110)


if __name__ == "__main__":
  main()
