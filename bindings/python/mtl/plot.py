"""Training curves from a metrics log.

    python3 -m mtl.plot METRICS.jsonl OUT.png [--title TEXT]

The log holds one JSON object per line (what ``MultiTaskModel.fit(..., log_path=...)``
writes): an x value ("epoch", else "step", else the line number) and flat keys

    loss, lr                       overall training loss, learning rate
    <task>_loss                    training loss of a task
    val_<task>_loss, val_<task>_<metric>   validation loss and metrics of a task
    <task>_weight                  the weight the weighting gave the task

Lines may hold any subset (e.g. validation only every few epochs); unknown keys and lines
that are not JSON objects are ignored. The figure has one panel per task (training and
validation loss, validation metrics on a second axis) and one with the task-weight history.
Needs matplotlib (Debian python3-matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

__all__ = ["read_log", "plot_log", "main"]


def read_log(path) -> list:
    records = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                rec.setdefault("_line", i)
                records.append(rec)
    return records


def _x(rec):
    for k in ("epoch", "step"):
        if isinstance(rec.get(k), (int, float)):
            return rec[k]
    return rec["_line"]


def _tasks(records):
    tasks = []
    for rec in records:
        for k in rec:
            for suffix in ("_loss", "_weight"):
                if k.endswith(suffix) and not k.startswith("val_") and k != "loss":
                    t = k[: -len(suffix)]
                    if t and t not in tasks:
                        tasks.append(t)
            if k.startswith("val_") and k.endswith("_loss") and k != "val_loss":
                t = k[4:-5]
                if t not in tasks:
                    tasks.append(t)
    return tasks


def _series(records, key):
    xs, ys = [], []
    for rec in records:
        v = rec.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            xs.append(_x(rec))
            ys.append(v)
    return xs, ys


def plot_log(log_path, out_path, title=None) -> list:
    """Render the log to an image file; returns the task names drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    if not records:
        raise ValueError(f"{log_path}: no JSON records")
    tasks = _tasks(records)
    has_weights = any(_series(records, f"{t}_weight")[0] for t in tasks)
    n = max(1, len(tasks)) + (1 if has_weights else 0)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    xlabel = "epoch" if any("epoch" in r for r in records) else (
        "step" if any("step" in r for r in records) else "record")
    for ax, t in zip(flat, tasks or ["(overall)"]):
        key = f"{t}_loss" if tasks else "loss"
        for k, style, label in ((key, "-", "train loss"), (f"val_{key}", "--", "val loss")):
            xs, ys = _series(records, k)
            if xs:
                ax.plot(xs, ys, style, marker="o", markersize=3, label=label)
        ax.set_title(t)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        metric_keys = sorted({k for r in records for k in r
                              if k.startswith(f"val_{t}_") and k != f"val_{t}_loss"})
        if metric_keys:
            ax2 = ax.twinx()
            for i, k in enumerate(metric_keys):
                xs, ys = _series(records, k)
                ax2.plot(xs, ys, ":", marker="s", markersize=3, color=f"C{i + 2}",
                         label=k[len(f"val_{t}_"):])
            ax2.set_ylabel("validation metric")
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = ax2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=8)
        else:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    used = max(1, len(tasks))
    if has_weights:
        ax = flat[used]
        for t in tasks:
            xs, ys = _series(records, f"{t}_weight")
            if xs:
                ax.plot(xs, ys, marker="o", markersize=3, label=t)
        ax.set_title("task weights")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        used += 1
    for ax in flat[used:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return tasks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m mtl.plot",
                                 description="Draw per-task training/validation curves and "
                                             "the task-weight history from a metrics log.")
    ap.add_argument("log", help="metrics log, one JSON object per line")
    ap.add_argument("out", help="image to write (.png, .svg, .pdf)")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    try:
        tasks = plot_log(args.log, args.out, args.title)
    except (OSError, ValueError) as exc:
        print(f"mtl.plot: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(tasks)} tasks: {', '.join(tasks)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
