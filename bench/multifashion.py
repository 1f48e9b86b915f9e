#!/usr/bin/python3
"""Multi-Fashion benchmark driver: the LeNet recipe of examples/configs/multifashion/ with each
weighting method, the single-task baselines and the same recipe in PyTorch, then a table of
train and test accuracy, the multi-task score

    delta_m% = 100/T * sum_t (M_t - B_t) / B_t        (test accuracy: higher is better)

against the single-task baselines B_t, and the wall time per epoch.

    bench/multifashion.py train NAME... [--epochs N] [--jobs J]
        NAME: a configuration (ew, mgda_ub, pcgrad, cagrad, nash_mtl, uw, dwa, single-left,
        single-right) or torch-ew (bench/torch_multifashion.py). Each run writes NAME.out
        (the trainer's output), NAME.train (the best checkpoint evaluated on the training
        split), multifashion-NAME.jsonl/.ckpt; --jobs runs that many at once.
    bench/multifashion.py time [--epochs 2] [--rounds 3] [--methods ew,...]
        Wall time per epoch (training only, no evaluation), libmtl and PyTorch alternating in
        rounds on an otherwise idle machine; writes time.json. PyTorch runs "tuned" (glibc
        keeps freed memory, see docs/performance.md) and as installed.
    bench/multifashion.py report [--md FILE]
        The table from what the runs wrote.

Files go to bench/out/multifashion (--out). Needs the data (mtl make-multifashion
examples/data/multifashion) and a build (build/). One thread everywhere."""
import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "examples", "configs", "multifashion")
METHODS = ["ew", "mgda_ub", "pcgrad", "cagrad", "nash_mtl", "uw", "dwa"]
TASKS = ["left", "right"]
TUNED = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
# Lin et al., NeurIPS 2019, Fig. 4b (training-set accuracy, read off the figure; their
# generator differs from ours)
PUBLISHED = [("single-task", "0.809", "0.800"), ("MOO-MTL", "≈ 0.80", "≈ 0.79–0.80"),
             ("GradNorm", "≈ 0.78", "≈ 0.78"), ("Uncertainty", "≈ 0.79", "≈ 0.76")]


def env():
    """The environment of the runs: the bindings and the library by absolute paths (the runs
    start in the output folder), one thread."""
    e = dict(os.environ)
    paths = e.get("PYTHONPATH", os.path.join(ROOT, "bindings", "python")).split(os.pathsep)
    e["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths if p)
    e["MTL_LIBRARY"] = os.path.abspath(
        e.get("MTL_LIBRARY", os.path.join(ROOT, "build", "libmtl", "libmtl.so.1")))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        e.setdefault(var, "1")
    return e


def config(name):
    return os.path.join(CONFIG_DIR[0], f"lenet-{name}.yaml")


CONFIG_DIR = [CONFIGS]


def sh(cmd, out_path, cwd, extra_env=None):
    e = env()
    e.update(extra_env or {})
    with open(out_path, "w") as f:
        p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=e)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}); see {out_path}")


def train_one(a, name):
    if name == "torch-ew":
        cmd = [sys.executable, os.path.join(ROOT, "bench", "torch_multifashion.py"), "--verbose",
               "--config", config("ew"), "--out", "torch-ew.json"] + (["--epochs", str(a.epochs)] if a.epochs else [])
        sh(cmd, os.path.join(a.out, "torch-ew.out"), a.out, {"GLIBC_TUNABLES": TUNED})
        return name
    cmd = [a.mtl, "train", config(name)]
    if a.epochs:
        cmd += ["--set", f"training.epochs={a.epochs}"]
    sh(cmd, os.path.join(a.out, f"{name}.out"), a.out)
    sh([a.mtl, "eval", f"multifashion-{name}.ckpt", config(name), "--split", "train"],
       os.path.join(a.out, f"{name}.train"), a.out)
    return name


def cmd_train(a):
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as ex:
        for name in ex.map(lambda n: train_one(a, n), a.names):
            print(f"{name}: done", flush=True)


def epoch_rates(text):
    """samples/s of each epoch line of the trainer's output"""
    return [float(m.group(1)) for m in re.finditer(r"^epoch \d+/\d+ .*\((\d+) samples/s\)", text, re.M)]


def train_rows(name):
    """training rows of a configuration (after its validation hold-out)"""
    e = env()
    sys.path[:0] = e["PYTHONPATH"].split(os.pathsep)
    os.environ["MTL_LIBRARY"] = e["MTL_LIBRARY"]
    import mtl
    return len(mtl.Config.load(config(name)).build_dataset("train"))


def cmd_time(a):
    rows = {}
    methods = a.methods.split(",")
    for r in range(a.rounds):
        for m in (methods if r == 0 else ["ew"]) + ["torch-tuned", "torch"]:
            if m.startswith("torch"):
                cmd = [sys.executable, os.path.join(ROOT, "bench", "torch_multifashion.py"),
                       "--epochs", str(a.epochs), "--no-eval", "--config", config("ew")]
                e = env()
                if m == "torch-tuned":
                    e["GLIBC_TUNABLES"] = TUNED
                p = subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=a.out)
                if p.returncode:
                    raise SystemExit(p.stderr)
                secs = json.loads(p.stdout.strip().splitlines()[-1])["epoch_seconds"]
            else:
                cmd = [a.mtl, "train", config(m), "--set", f"training.epochs={a.epochs}",
                       "--set", "training.eval_every=0", "--set", "training.checkpoint_path=",
                       "--set", "training.log_path="]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=a.out)
                if p.returncode:
                    raise SystemExit(p.stdout + p.stderr)
                secs = [train_rows(m) / r for r in epoch_rates(p.stdout)]
            # the first epoch also pays for the first touches of the data; keep the rest
            rows.setdefault(m, []).extend(secs[1:] if len(secs) > 1 else secs)
            print(f"{m}: {' '.join(f'{s:.1f}' for s in secs)} s per epoch", flush=True)
    res = {}
    path = os.path.join(a.out, "time.json")
    if os.path.exists(path):  # earlier measurements of other methods stay
        res = json.load(open(path))
    res.update({m: {"seconds": v, "median": statistics.median(v)} for m, v in rows.items()})
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    for m, v in res.items():
        print(f"{m}: median {v['median']:.2f} s per epoch over {len(v['seconds'])}")


def parse_acc(path, prefix=""):
    """{task: accuracy} from the test section of a trainer output or an eval output"""
    if not os.path.exists(path):
        return None
    text = open(path).read()
    if "test metrics:" in text:
        text = text.split("test metrics:", 1)[1]
    elif not prefix:  # a training run that has not finished
        return None
    acc = {}
    for m in re.finditer(rf"^\s+(\w+)\s+.*?\b{prefix}accuracy (\S+)", text, re.M):
        acc[m.group(1)] = float(m.group(2))
    return acc or None


def val_at(out, name, epoch):
    """{task: validation accuracy} of a run after the given epoch, from its log"""
    if name == "torch-ew":
        path = os.path.join(out, "torch-ew.out")
        if not os.path.exists(path):
            return None
        for line in open(path):
            if line.startswith("{") and '"val_accuracy"' in line:
                r = json.loads(line)
                if r.get("epoch") == epoch:
                    return r["val_accuracy"]
        return None
    path = os.path.join(out, f"multifashion-{name}.jsonl")
    if not os.path.exists(path):
        return None
    for line in open(path):
        r = json.loads(line)
        if r.get("epoch") == epoch and "val" in r:
            return {k.split(".")[0]: v for k, v in r["val"].items() if k.endswith(".accuracy")}
    return None


def epochs_of(path):
    if not os.path.exists(path):
        return None
    m = re.findall(r"stopped: completed after (\d+) epochs", open(path).read())
    return int(m[-1]) if m else None


def cmd_report(a):
    timing = {}
    tp = os.path.join(a.out, "time.json")
    if os.path.exists(tp):
        timing = {k: v["median"] for k, v in json.load(open(tp)).items()}
    res = {}
    for name in ["single-left", "single-right"] + METHODS:
        test = parse_acc(os.path.join(a.out, f"{name}.out"))
        if test is None:
            continue
        res[name] = {"test": test, "train": parse_acc(os.path.join(a.out, f"{name}.train"), "train_"),
                     "epochs": epochs_of(os.path.join(a.out, f"{name}.out"))}
    tj = os.path.join(a.out, "torch-ew.json")
    if os.path.exists(tj):
        t = json.load(open(tj))
        res["torch-ew"] = {"test": t["test_accuracy"], "train": t["train_accuracy"],
                           "epochs": t["epochs"]}
    base = {}
    for t in TASKS:
        s = res.get(f"single-{t}")
        if s:
            base[t] = s

    def f4(d, t):
        return f"{d[t]:.4f}" if d and t in d else "—"

    def secs(key):
        return f"{timing[key]:.1f}" if key in timing else "—"

    lines = ["| method | epochs | train left | train right | test left | test right | Δm% (test) | s / epoch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    if len(base) == 2:
        lines.append(
            f"| single-task (one model per task) | {base['left']['epochs']} | "
            f"{f4(base['left']['train'], 'left')} | {f4(base['right']['train'], 'right')} | "
            f"{f4(base['left']['test'], 'left')} | {f4(base['right']['test'], 'right')} | 0 | "
            f"{secs('single-left')} + {secs('single-right')} |")
    for name in METHODS + ["torch-ew"]:
        r = res.get(name)
        if not r:
            continue
        dm = "—"
        if len(base) == 2:
            dm = f"{100.0 / 2 * sum((r['test'][t] - base[t]['test'][t]) / base[t]['test'][t] for t in TASKS):+.2f}"
        label = "ew, PyTorch (same files, split, initial weights)" if name == "torch-ew" else name
        tkey = "torch-tuned" if name == "torch-ew" else name
        lines.append(f"| {label} | {r['epochs']} | {f4(r['train'], 'left')} | "
                     f"{f4(r['train'], 'right')} | {f4(r['test'], 'left')} | "
                     f"{f4(r['test'], 'right')} | {dm} | {secs(tkey)} |")
    short = sorted({r["epochs"] for r in res.values() if r["epochs"] and r["epochs"] < 100})
    for E in short:
        lines += ["", f"At epoch {E} (validation accuracy of every run at that epoch; Δm% "
                      f"against the single-task runs' validation accuracy at epoch {E}):", "",
                  "| method | schedule | val left | val right | Δm% (val) |",
                  "|---|---:|---:|---:|---:|"]
        vb = {t: val_at(a.out, f"single-{t}", E) for t in TASKS}
        for name in ["single-task"] + METHODS + ["torch-ew"]:
            if name == "single-task":
                v = {t: (vb[t] or {}).get(t) for t in TASKS}
                sched = res.get("single-left", {}).get("epochs")
            else:
                if name not in res:
                    continue
                v, sched = val_at(a.out, name, E), res[name]["epochs"]
            if not v or None in v.values():
                continue
            dm = "0" if name == "single-task" else (
                f"{100.0 / 2 * sum((v[t] - vb[t][t]) / vb[t][t] for t in TASKS):+.2f}"
                if all(vb[t] for t in TASKS) else "—")
            lines.append(f"| {name} | {sched} | {v['left']:.4f} | {v['right']:.4f} | {dm} |")
    lines += ["", "Published reference points (training-set accuracy):", "",
              "| method | left | right |", "|---|---:|---:|"]
    lines += [f"| {n} | {l} | {r} |" for n, l, r in PUBLISHED]
    text = "\n".join(lines) + "\n"
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    print(text)
    if timing:
        print("wall time per epoch (median, s): " +
              ", ".join(f"{k} {v:.2f}" for k, v in sorted(timing.items())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "multifashion"))
    ap.add_argument("--mtl", default=os.path.join(ROOT, "build", "tools", "mtl", "mtl"))
    ap.add_argument("--configs", default=CONFIGS, help="folder of the lenet-*.yaml files")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("names", nargs="+")
    t.add_argument("--epochs", type=int, default=0, help="override the recipe's 100 epochs")
    t.add_argument("--jobs", type=int, default=1)
    m = sub.add_parser("time")
    m.add_argument("--epochs", type=int, default=2)
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--methods", default="ew")
    r = sub.add_parser("report")
    r.add_argument("--md", default="")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    a.mtl = os.path.abspath(a.mtl)
    CONFIG_DIR[0] = os.path.abspath(a.configs)
    {"train": cmd_train, "time": cmd_time, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
