#!/usr/bin/env python3
"""Multi-Fashion benchmark: train the LeNet recipe of examples/configs/multifashion/ with each
weighting method and the single-task baselines, then report per-task test accuracy and the
multi-task score

    delta_m% = 100/T * sum_t (M_t - B_t) / B_t        (accuracy: higher is better)

against the single-task baselines B_t.

    python3 bench/multifashion.py [--epochs N] [--methods ew,pcgrad,...] [--out DIR]

--epochs overrides the recipe's 100 epochs (the milestones stay at 15/30/...). Needs the data
(`mtl make-multifashion examples/data/multifashion`) and a build (build/tools/mtl/mtl)."""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "examples", "configs", "multifashion")
METHODS = ["ew", "mgda_ub", "pcgrad", "cagrad", "nash_mtl", "uw", "dwa"]


def run(mtl, config, epochs, workdir):
    cmd = [mtl, "train", config, "--quiet"]
    if epochs:
        cmd += ["--set", f"training.epochs={epochs}"]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    acc = {}
    in_test = False
    for line in p.stdout.splitlines():
        if line.startswith("test metrics") or line.startswith("test.loss"):
            in_test = True
        m = re.match(r"\s+(\w+)\s+loss \S+\s+accuracy (\S+)", line)
        if in_test and m:
            acc[m.group(1)] = float(m.group(2))
    if not acc:
        sys.exit(f"no test metrics in the output of {' '.join(cmd)}:\n{p.stdout}")
    return acc, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "multifashion"))
    ap.add_argument("--mtl", default=os.path.join(ROOT, "build", "tools", "mtl", "mtl"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    base = {}
    for t in ["left", "right"]:
        acc, sec = run(a.mtl, os.path.join(CONFIGS, f"lenet-single-{t}.yaml"), a.epochs, a.out)
        base[t] = acc[t]
        print(f"single-task {t}: accuracy {acc[t]:.4f} ({sec:.0f} s)", flush=True)
    rows = []
    for m in a.methods.split(","):
        acc, sec = run(a.mtl, os.path.join(CONFIGS, f"lenet-{m}.yaml"), a.epochs, a.out)
        dm = 100.0 / 2 * sum((acc[t] - base[t]) / base[t] for t in ["left", "right"])
        rows.append((m, acc["left"], acc["right"], dm, sec))
        print(f"{m}: left {acc['left']:.4f} right {acc['right']:.4f} delta_m {dm:+.2f}% ({sec:.0f} s)", flush=True)
    epochs = a.epochs or 100
    md = [f"Multi-Fashion, LeNet recipe, {epochs} epochs, seed 2019; test accuracy.", "",
          "| method | left | right | Δm% |", "|---|---:|---:|---:|",
          f"| single-task | {base['left']:.4f} | {base['right']:.4f} | 0 |"]
    md += [f"| {m} | {l:.4f} | {r:.4f} | {d:+.2f} |" for m, l, r, d, _ in rows]
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, f"multifashion-{epochs}ep.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
