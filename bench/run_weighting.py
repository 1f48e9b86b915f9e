#!/usr/bin/env python3
"""Weighting benchmark driver: libmtl's step time of every weighting method relative to its
equal-weighting step, for T = 2, 4, 8, 16 tasks on the mid model, side by side with the
PyTorch per-task loop (bench/torch_weighting.py), in interleaved rounds. Writes the raw
measurements (one JSON line each) and a markdown table to bench/out/.

    python3 bench/run_weighting.py [--build build] [--rounds 3] [--tasks 2,4,8,16]
                                   [--time 0.8] [--groups 5] [--methods m1,m2,...]
                                   [--alt-build DIR --alt-label TEXT [--alt-tasks 8]
                                    [--alt-methods ...]]

Needs only the Python standard library; the PyTorch side runs under /usr/bin/python3 (the
Python with torch). It uses BUILD/bench/bench_weighting, or compiles bench_weighting.c with cc
against BUILD/libmtl/libmtl.so when the build has none (a release build is what the numbers
in docs/weighting-performance.md come from:
meson setup build-rel --buildtype=release && ninja -C build-rel).
--alt-build runs the libmtl side a second time against another build (e.g. one with a
proposed change), for the tasks and methods given, in the same rounds.

PyTorch environments (set in the PyTorch command only, never elsewhere):
  tuned      OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, GLIBC_TUNABLES keeping freed
             memory (no page faults per step), one thread (torch, OpenMP, OpenBLAS, BLIS),
             and BLIS_ARCH_TYPE=0 because Debian's python3-torch multiplies through
             libblas.so.3, which here is BLIS, whose own detection picks its slow generic
             kernels on this CPU (libmtl selects the same skx kernels itself)
  installed  the environment unchanged, one thread (T = 8 only)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TORCH_PY = "/usr/bin/python3"

G_METHODS = ["mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "aligned_mtl", "fairgrad",
             "upgrad", "dualproj", "gradnorm", "config"]
J_METHODS = ["graddrop", "gradvac", "moco", "db_mtl", "excessmtl"]
R_METHODS = ["mgda_ub", "mgda:rep"]


def sh(cmd, env=None):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("command failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return r.stdout


def compile_bench(build, out):
    built = os.path.join(ROOT, build, "bench", "bench_weighting")
    src = os.path.join(HERE, "bench_weighting.c")
    if os.path.exists(built) and os.path.getmtime(built) >= os.path.getmtime(src):
        return built
    # the build does not include bench/ (or is older than the source): compile it here
    lib = os.path.join(ROOT, build, "libmtl")
    if not os.path.exists(os.path.join(lib, "libmtl.so")):
        sys.exit("no %s/libmtl.so: build the library first" % lib)
    sh(["cc", "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror",
        "-I" + os.path.join(ROOT, "include"), src,
        "-o", out, "-L" + lib, "-lmtl", "-Wl,-rpath," + lib, "-lm"])
    return out


def torch_env(tuned, threads=1):
    env = dict(os.environ)
    n = str(threads)
    env.update({"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "BLIS_NUM_THREADS": n})
    if tuned:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
        env["GLIBC_TUNABLES"] = ("glibc.malloc.mmap_threshold=33554432:"
                                 "glibc.malloc.trim_threshold=4294967296")
        env["BLIS_ARCH_TYPE"] = "0"
    return env


def lines(text, **extra):
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.startswith("{"):
            d = json.loads(ln)
            d.update(extra)
            out.append(d)
    return out


def med(v):
    return statistics.median(v) if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-rel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", default="2,4,8,16")
    ap.add_argument("--time", type=float, default=0.8)
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--methods", default=None)
    ap.add_argument("--alt-build", default=None)
    ap.add_argument("--alt-label", default="alt")
    ap.add_argument("--alt-tasks", default="8")
    ap.add_argument("--alt-methods", default="ew,mgda,pcgrad,imtl,mgda_ub,mgda:rep,graddrop,db_mtl")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tasks = [int(t) for t in a.tasks.split(",")]
    bench = compile_bench(a.build, os.path.join(a.out, "bench_weighting"))
    alt = compile_bench(a.alt_build, os.path.join(a.out, "bench_weighting_alt")) \
        if a.alt_build else None
    info = json.loads(sh([bench, "--info"]))
    tinfo = sh([TORCH_PY, "-c", "import torch; print(torch.__version__)"],
               env=torch_env(True)).strip()
    raw_path = os.path.join(a.out, "weighting.jsonl")
    raw = open(raw_path, "w")
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()

    def record(ds, rnd):
        for d in ds:
            d["round"] = rnd
            d["load1"] = os.getloadavg()[0]
            raw.write(json.dumps(d) + "\n")
            raw.flush()
            rows.append(d)

    common = ["--time", str(a.time), "--groups", str(a.groups)]
    for rnd in range(a.rounds):
        order = tasks[rnd % len(tasks):] + tasks[:rnd % len(tasks)]
        for T in order:
            print("round %d/%d, T = %d" % (rnd + 1, a.rounds, T), file=sys.stderr, flush=True)
            jobs = [("libmtl", [bench, "--tasks", str(T)] + common +
                     (["--methods", a.methods] if a.methods else []), None, {}),
                    ("torch", [TORCH_PY, os.path.join(HERE, "torch_weighting.py"), "--tasks",
                               str(T)] + common, torch_env(True), {"env_kind": "tuned"})]
            if T == 8:
                jobs.append(("torch", [TORCH_PY, os.path.join(HERE, "torch_weighting.py"),
                                       "--tasks", "8", "--loops", "ew,gram"] + common,
                             torch_env(False), {"env_kind": "installed"}))
            if alt and str(T) in a.alt_tasks.split(","):
                jobs.append(("alt", [alt, "--tasks", str(T), "--methods", a.alt_methods,
                                     "--label", a.alt_label] + common, None,
                             {"impl": "libmtl-alt"}))
            if rnd % 2:
                jobs.reverse()
            for _, cmd, env, extra in jobs:
                record(lines(sh(cmd, env=env), **extra), rnd)
    raw.close()

    # ---- aggregation: medians over rounds; ratios as the median of per-round ratios
    def get(impl, T, key, val, rnd=None, env_kind=None):
        out = [d for d in rows if d["impl"] == impl and d["tasks"] == T and d.get(key) == val
               and (rnd is None or d["round"] == rnd)
               and (env_kind is None or d.get("env_kind") == env_kind)]
        return out

    def ms(impl, T, key, val, field="ms", env_kind=None):
        return med([d[field] for d in get(impl, T, key, val, env_kind=env_kind)])

    def ratio(num, den):
        """median over rounds of num(r)/den(r); num/den: functions of the round"""
        v = []
        for r in range(a.rounds):
            n, d = num(r), den(r)
            if n is not None and d is not None and d > 0:
                v.append(n / d)
        return med(v), (min(v) if v else float("nan")), (max(v) if v else float("nan"))

    def one(impl, T, key, val, r, env_kind=None, field="ms"):
        ds = get(impl, T, key, val, rnd=r, env_kind=env_kind)
        return ds[0][field] if ds else None

    methods = []
    for d in rows:
        if d["impl"] == "libmtl" and d["method"] not in methods:
            methods.append(d["method"])
    kinds = {d["method"]: d["kind"] for d in rows if d["impl"] == "libmtl"}
    md = []
    md.append("Measured %s to %s, %d interleaved rounds, %.1f s per method and round "
              "(%d groups; median group). Load average at the start: %.2f / %.2f / %.2f."
              % (started, time.strftime("%H:%M"), a.rounds, a.time, a.groups, *load_start))
    loads = [d["load1"] for d in rows]
    md.append("1-minute load average during the measurements: median %.2f, range %.2f-%.2f "
              "(2 cores)." % (med(loads), min(loads), max(loads)))
    md.append("")
    md.append("libmtl: `%s`" % info["build_info"])
    md.append("")
    md.append("PyTorch %s (Debian python3-torch), one thread." % tinfo)
    md.append("")
    md.append("### Step time of each method (ms, median over rounds) and relative to libmtl's EW")
    md.append("")
    md.append("| method | kind | " + " | ".join("T=%d" % T for T in tasks) + " |")
    md.append("|---|---|" + "---|" * len(tasks))
    for mth in methods:
        cells = []
        for T in tasks:
            m_ = ms("libmtl", T, "method", mth)
            rr = ratio(lambda r: one("libmtl", T, "method", mth, r),
                       lambda r: one("libmtl", T, "method", "ew", r))[0]
            cells.append("%.2f (%.2f×)" % (m_, rr))
        md.append("| %s | %s | %s |" % (mth, kinds[mth], " | ".join(cells)))
    md.append("")
    md.append("CPU time per step of the same measurements (ms, median), less sensitive to "
              "other jobs on the cores:")
    md.append("")
    md.append("| method | " + " | ".join("T=%d" % T for T in tasks) + " |")
    md.append("|---|" + "---|" * len(tasks))
    for mth in methods:
        md.append("| %s | %s |" % (mth, " | ".join(
            "%.2f" % ms("libmtl", T, "method", mth, field="cpu_ms") for T in tasks)))
    md.append("")
    md.append("### PyTorch (tuned), ms per step")
    md.append("")
    md.append("| loop | " + " | ".join("T=%d" % T for T in tasks) + " |")
    md.append("|---|" + "---|" * len(tasks))
    for loop in ["ew", "gram", "jac", "fb"]:
        md.append("| %s | %s |" % (loop, " | ".join(
            "%.2f" % ms("torch", T, "loop", loop, env_kind="tuned") for T in tasks)))
    md.append("| fb / ew | %s |" % " | ".join(
        "%.2f×" % ratio(lambda r: one("torch", T, "loop", "fb", r, "tuned"),
                        lambda r: one("torch", T, "loop", "ew", r, "tuned"))[0]
        for T in tasks))
    md.append("")
    if 8 in tasks:
        md.append("PyTorch as installed (T=8): ew %.2f ms, gram %.2f ms per step."
                  % (ms("torch", 8, "loop", "ew", env_kind="installed"),
                     ms("torch", 8, "loop", "gram", env_kind="installed")))
        md.append("")
    md.append("### Speed-up over the PyTorch per-task loop (PyTorch tuned time / libmtl time; "
              "median of per-round ratios, range)")
    md.append("")
    md.append("| method | kind | vs | " + " | ".join("T=%d" % T for T in tasks) + " |")
    md.append("|---|---|---|" + "---|" * len(tasks))
    for mth in methods:
        k = kinds[mth]
        loop = "jac" if k == "J" else "gram" if k in ("G", "R") else "ew"
        cells = []
        for T in tasks:
            v, lo, hi = ratio(lambda r: one("torch", T, "loop", loop, r, "tuned"),
                              lambda r: one("libmtl", T, "method", mth, r))
            cells.append("%.2f× (%.2f-%.2f)" % (v, lo, hi))
        md.append("| %s | %s | %s | %s |" % (mth, k, loop, " | ".join(cells)))
    md.append("")
    alt_rows = [d for d in rows if d["impl"] == "libmtl-alt"]
    if alt_rows:
        md.append("### Alternative build: %s" % a.alt_label)
        md.append("")
        md.append("| T | method | ms | × its EW | PyTorch loop / it |")
        md.append("|---|---|---|---|---|")
        for T in sorted({d["tasks"] for d in alt_rows}):
            for mth in [d["method"] for d in alt_rows if d["tasks"] == T and d["round"] == 0]:
                k = kinds.get(mth, "L")
                loop = "jac" if k == "J" else "gram" if k in ("G", "R") else "ew"
                rr = ratio(lambda r: one("libmtl-alt", T, "method", mth, r),
                           lambda r: one("libmtl-alt", T, "method", "ew", r))[0]
                vs = ratio(lambda r: one("torch", T, "loop", loop, r, "tuned"),
                           lambda r: one("libmtl-alt", T, "method", mth, r))[0]
                md.append("| %d | %s | %.2f | %.2f× | %.2f× (%s) |"
                          % (T, mth, ms("libmtl-alt", T, "method", mth), rr, vs, loop))
        md.append("")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "weighting.md"), "w") as f:
        f.write(text)
    print(text)
    print("raw: %s" % raw_path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
