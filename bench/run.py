#!/usr/bin/env python3
"""Runs libmtl's training benchmark against PyTorch, interleaved in rounds, and writes a
markdown table (see docs/performance.md).

    python3 bench/run.py [--quick] [--rounds N] [--threads 1,2] [--build-dir build]

Each round runs, for every model and batch, libmtl (bench_train), "PyTorch as installed"
(the environment unchanged) and "PyTorch tuned" (torch_train.py with, in its own command only,
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, glibc's malloc told to keep freed memory, and
its BLAS on the same fast kernels libmtl selected), one process per measurement so each peak
RSS is its own. The order of the three rotates from round to round. Medians over the rounds
are reported, with the ratio libmtl speed / PyTorch speed.

Raw JSON lines and the table go to bench/out/ (ignored by git). This script needs only the
Python standard library; torch_train.py runs under /usr/bin/python3 (Debian's python3-torch).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = [("small", 32), ("mid", 32), ("mid", 128), ("mid", 512), ("large", 256)]
# Shapes where the step is dominated by matrix products: judged against BLIS's sgemm rate.
GEMM_BOUND = {("mid", 128), ("mid", 512), ("large", 256)}
# Issue 3's targets, one thread, libmtl speed over PyTorch tuned speed.
TARGETS = {("small", 32): 5.0, ("mid", 32): 2.0, ("mid", 128): 1.1, ("mid", 512): 1.1,
           ("large", 256): 1.1}
SGEMM_TARGET = 0.85
TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
# BLIS 0.9.0 arch_t ids (blis.h), for handing libmtl's kernel choice to PyTorch's BLIS.
BLIS_ARCH_IDS = {"skx": 0, "knl": 1, "knc": 2, "haswell": 3, "sandybridge": 4, "penryn": 5,
                 "zen3": 6, "zen2": 7, "zen": 8, "excavator": 9, "steamroller": 10,
                 "piledriver": 11, "bulldozer": 12}
IMPLS = ["libmtl", "torch-installed", "torch-tuned"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def find_torch_python():
    for p in ("/usr/bin/python3", sys.executable):
        if p and subprocess.run([p, "-c", "import torch"], capture_output=True).returncode == 0:
            return p
    sys.exit("run.py: no python3 with torch found (install python3-torch)")


def find_or_build_bench(build_dir, out_dir):
    exe = os.path.join(build_dir, "bench", "bench_train")
    if os.path.exists(exe):
        return exe
    # The build does not include bench/: compile it here against the built library.
    lib = os.path.join(build_dir, "libmtl")
    if not os.path.exists(os.path.join(lib, "libmtl.so")):
        sys.exit(f"run.py: {exe} not found and no {lib}/libmtl.so; build libmtl first "
                 f"(meson setup {build_dir} --buildtype=release && ninja -C {build_dir})")
    multiarch = subprocess.run(["cc", "-print-multiarch"], capture_output=True,
                               text=True).stdout.strip() or "x86_64-linux-gnu"
    blis_inc = f"/usr/include/{multiarch}/blis-pthread"
    blis_lib = f"/usr/lib/{multiarch}/blis-pthread"
    # libmtl's own BLIS: the folder its RUNPATH names, when it has one
    rp = subprocess.run(["sh", "-c", f"readelf -d {lib}/libmtl.so | grep -E 'RUNPATH|RPATH'"],
                        capture_output=True, text=True).stdout
    if "[" in rp:
        blis_lib = rp.split("[", 1)[1].split("]", 1)[0].split(":")[0]
        cand = blis_lib.replace("/lib/", "/include/")
        if os.path.exists(os.path.join(cand, "blis.h")):
            blis_inc = cand
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, "bench_train")
    src = os.path.join(HERE, "bench_train.c")
    if os.path.exists(exe) and os.path.getmtime(exe) > os.path.getmtime(src):
        return exe
    cmd = ["cc", "-std=c11", "-O2", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra",
           src, "-o", exe, "-I", os.path.join(ROOT, "include"),
           "-isystem", blis_inc, "-L", lib, "-lmtl", "-L", blis_lib, "-lblis",
           f"-Wl,-rpath,{os.path.abspath(lib)}:{blis_lib}", "-lm"]
    log("compiling:", " ".join(cmd))
    subprocess.run(cmd, check=True)
    return exe


def torch_blas(py):
    """The BLAS library PyTorch loads (resolved path)."""
    code = ("import torch, os\n"
            "torch.ones(8, 8) @ torch.ones(8, 8)\n"
            "libs = set()\n"
            "for l in open('/proc/self/maps'):\n"
            "    p = l.split()[-1]\n"
            "    b = os.path.basename(p)\n"
            "    if b.startswith(('libblas', 'libopenblas', 'libblis', 'libmkl_rt')):\n"
            "        libs.add(os.path.realpath(p))\n"
            "print(';'.join(sorted(libs)))\n")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def envs(threads, mtl_kernels, selected_by_libmtl, blas):
    """Environment of each implementation for a thread count (None: not run)."""
    base = dict(os.environ)
    out = {"libmtl": dict(base)}
    if threads == 1:
        # As installed: nothing changed (the thread counts below are 1 by default anyway).
        out["torch-installed"] = dict(base)
    tuned = dict(base)
    tuned.pop("OPENBLAS_CORETYPE", None)
    tuned.pop("OPENBLAS_L2_SIZE", None)
    tuned["GLIBC_TUNABLES"] = TUNABLES
    tuned["OPENBLAS_NUM_THREADS"] = str(threads)
    if "blis" in blas:
        # PyTorch's BLAS is BLIS here: give it the kernels libmtl runs (BLIS 0.9.0 falls back
        # to its slow generic kernels on CPUs it does not know), unless the user chose.
        tuned["BLIS_NUM_THREADS"] = str(threads)
        if selected_by_libmtl and "BLIS_ARCH_TYPE" not in base \
                and mtl_kernels in BLIS_ARCH_IDS:
            tuned["BLIS_ARCH_TYPE"] = str(BLIS_ARCH_IDS[mtl_kernels])
    out["torch-tuned"] = tuned
    return out


def env_diff(env):
    base = os.environ
    d = {k: v for k, v in env.items() if base.get(k) != v}
    d.update({k: None for k in base if k not in env})
    return d


def run_one(cmd, env, timeout):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def fmt(x, d=2):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{d}f}"


def summarize(results, threads_list, rounds):
    """Medians over rounds per (impl, model, batch, threads); ratios per round."""
    groups = {}
    for r in results:
        groups.setdefault((r["impl"], r["model"], r["batch"], r["threads"]), []).append(r)
    summary = {}
    for key, rs in groups.items():
        s = {"ms": statistics.median(r["ms_per_step"] for r in rs),
             "ms_lo": min(r["ms_per_step"] for r in rs),
             "ms_hi": max(r["ms_per_step"] for r in rs),
             "rss_mib": statistics.median(r["peak_rss_kib"] for r in rs) / 1024,
             "gflops": statistics.median(r["gflops"] for r in rs),
             "minflt": statistics.median(r["minflt_per_step"] for r in rs),
             "n": len(rs)}
        if "sgemm_gflops" in rs[0]:
            s["sgemm_gflops"] = statistics.median(r["sgemm_gflops"] for r in rs)
            s["sgemm_fraction"] = statistics.median(r["sgemm_fraction"] for r in rs)
        s["samples"] = key[2] / (s["ms"] * 1e-3)
        summary[key] = s
    # per-round ratios (same round = measured minutes apart at most)
    ratios = {}
    byround = {}
    for r in results:
        byround[(r["impl"], r["model"], r["batch"], r["threads"], r["round"])] = r["ms_per_step"]
    for (impl, m, b, t, rd), ms in byround.items():
        if impl == "libmtl":
            continue
        own = byround.get(("libmtl", m, b, t, rd))
        if own:
            ratios.setdefault((impl, m, b, t), []).append(ms / own)
    return summary, ratios


def markdown(summary, ratios, threads_list, meta):
    L = []
    L.append(f"Run {meta['date']} on {meta['cpu']} ({meta['nproc']} cores), "
             f"{meta['rounds']} interleaved rounds{' (quick mode)' if meta['quick'] else ''}, "
             f"{meta['minutes']:.1f} minutes.")
    L.append("")
    L.append(f"- libmtl: `{meta['build_info']}`")
    L.append(f"- PyTorch {meta['torch']} BLAS: `{meta['torch_blas']}`")
    L.append(f"- PyTorch tuned environment (its command only): `{meta['tuned_env']}`")
    L.append(f"- load average (1/5/15 min) before: {meta['load_before']}, after: "
             f"{meta['load_after']}; median 1-min load at the measurements: "
             f"{meta['load_median']:.2f}")
    L.append("")
    for t in threads_list:
        L.append(f"**{t} thread{'s' if t > 1 else ''}** — median ms/step over rounds "
                 f"(min–max); speed-up = PyTorch ms / libmtl ms (median of per-round ratios, "
                 f"min–max)")
        L.append("")
        has_inst = any(k[0] == "torch-installed" and k[3] == t for k in summary)
        head = "| model | batch | libmtl ms | PyTorch tuned ms |"
        sep = "|---|---:|---:|---:|"
        if has_inst:
            head += " PyTorch as installed ms |"
            sep += "---:|"
        head += (" libmtl samples/s | speed-up vs tuned |")
        sep += "---:|---:|"
        if has_inst:
            head += " vs installed |"
            sep += "---:|"
        if t == 1:
            head += " target | met |"
            sep += "---:|:---:|"
        L.append(head)
        L.append(sep)
        for m, b in CONFIGS:
            lib = summary.get(("libmtl", m, b, t))
            tun = summary.get(("torch-tuned", m, b, t))
            if not lib:
                continue
            inst = summary.get(("torch-installed", m, b, t))
            rt = ratios.get(("torch-tuned", m, b, t), [])
            ri = ratios.get(("torch-installed", m, b, t), [])

            def cell(s):
                return (f"{fmt(s['ms'], 3)} ({fmt(s['ms_lo'], 3)}–{fmt(s['ms_hi'], 3)})"
                        if s else "–")

            def rcell(rs):
                if not rs:
                    return "–"
                return f"**{statistics.median(rs):.2f}×** ({min(rs):.2f}–{max(rs):.2f})"

            row = f"| {m} | {b} | {cell(lib)} | {cell(tun)} |"
            if has_inst:
                row += f" {cell(inst)} |"
            row += f" {fmt(lib['samples'])} | {rcell(rt)} |"
            if has_inst:
                row += f" {rcell(ri)} |"
            if t == 1:
                tgt = TARGETS[(m, b)]
                ok = bool(rt) and statistics.median(rt) >= tgt
                if (m, b) in GEMM_BOUND:
                    ok = ok and lib.get("sgemm_fraction", 0) >= SGEMM_TARGET
                    row += f" ≥ {tgt}× and ≥ {SGEMM_TARGET:.0%} of sgemm |"
                else:
                    row += f" ≥ {tgt}× |"
                row += f" {'yes' if ok else '**no**'} |"
            L.append(row)
        L.append("")
        L.append(f"GEMM rate of the step ({t} thread{'s' if t > 1 else ''}): GFLOP/s = matrix-"
                 f"product FLOPs of one step / step time; sgemm = the same products alone "
                 f"through BLIS in the libmtl process; peak RSS and page faults per step")
        L.append("")
        L.append("| model | batch | GEMM GFLOP/step | libmtl GFLOP/s | PyTorch tuned GFLOP/s | "
                 "sgemm GFLOP/s | libmtl % of sgemm | libmtl RSS MiB | PyTorch tuned RSS MiB |"
                 " faults/step libmtl / tuned / installed |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m, b in CONFIGS:
            lib = summary.get(("libmtl", m, b, t))
            if not lib:
                continue
            tun = summary.get(("torch-tuned", m, b, t)) or {}
            inst = summary.get(("torch-installed", m, b, t)) or {}
            gflop = meta["flops"][(m, b)]
            frac = lib.get("sgemm_fraction")
            mark = "" if (m, b) not in GEMM_BOUND else " (GEMM-bound)"
            L.append(f"| {m}{mark} | {b} | {gflop:.4f} | {fmt(lib['gflops'], 1)} | "
                     f"{fmt(tun.get('gflops'), 1)} | {fmt(lib.get('sgemm_gflops'), 1)} | "
                     f"{'–' if frac is None else f'{frac:.0%}'} | {fmt(lib['rss_mib'], 1)} | "
                     f"{fmt(tun.get('rss_mib'), 1)} | {fmt(lib['minflt'], 1)} / "
                     f"{fmt(tun.get('minflt'), 1)} / {fmt(inst.get('minflt'), 1)} |")
        L.append("")
    if meta.get("gemms"):
        L.append("<details><summary>The sgemm reference product by product (1 thread, median "
                 "over rounds): where BLIS itself is slow</summary>")
        L.append("")
        L.append("| model | batch | product | op | m × n × k | ms | GFLOP/s |")
        L.append("|---|---:|---|---|---|---:|---:|")
        for (m, b), calls in meta["gemms"].items():
            for c in calls:
                L.append(f"| {m} | {b} | {c['what']} | {c['op']} | {c['m']} × {c['n']} × "
                         f"{c['k']} | {c['ms']:.3f} | {c['gflops']:.1f} |")
        L.append("")
        L.append("</details>")
        L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, short timings")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--models", default=None,
                    help="comma-separated model:batch list (default all), e.g. mid:32,large:256")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    threads_list = [int(x) for x in args.threads.split(",")]
    configs = CONFIGS
    if args.models:
        want = {(s.split(":")[0], int(s.split(":")[1])) for s in args.models.split(",")}
        configs = [c for c in CONFIGS if c in want]

    os.makedirs(args.out, exist_ok=True)
    exe = find_or_build_bench(args.build_dir, args.out)
    py = find_torch_python()
    info = run_one([exe, "--info"], dict(os.environ), 60)
    blas = torch_blas(py)
    torch_ver = subprocess.run([py, "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True).stdout.strip()
    selected = "selected by libmtl" in info["build_info"]
    env_by_t = {t: envs(t, info["kernels"], selected, blas) for t in threads_list}
    log(f"libmtl: {info['build_info']}")
    log(f"torch {torch_ver}, BLAS {blas}")
    log("torch-tuned env changes (1 thread):", env_diff(env_by_t[threads_list[0]]["torch-tuned"]))

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw_path = os.path.join(args.out, f"results-{stamp}.jsonl")
    quick = ["--quick"] if args.quick else []
    load_before = os.getloadavg()
    t_start = time.time()
    results = []
    with open(raw_path, "w") as raw:
        raw.write(json.dumps({"info": info, "torch_blas": blas, "torch": torch_ver}) + "\n")
        for rd in range(rounds):
            order = IMPLS[rd % 3:] + IMPLS[:rd % 3]
            log(f"round {rd + 1}/{rounds} (load {os.getloadavg()[0]:.2f}), order {order}")
            for m, b in configs:
                for t in threads_list:
                    for impl in order:
                        env = env_by_t[t].get(impl)
                        if env is None:
                            continue
                        if impl == "libmtl":
                            cmd = [exe, "--model", m, "--batch", str(b), "--threads", str(t)]
                        else:
                            cmd = [py, os.path.join(HERE, "torch_train.py"), "--model", m,
                                   "--batch", str(b), "--threads", str(t), "--label", impl]
                        rec = run_one(cmd + quick, env, 300)
                        rec["impl"] = impl
                        rec["round"] = rd
                        rec["load1"] = os.getloadavg()[0]
                        results.append(rec)
                        raw.write(json.dumps(rec) + "\n")
                        raw.flush()
                        log(f"  {impl:16s} {m:5s} b={b:<4d} t={t}  {rec['ms_per_step']:9.3f} "
                            f"ms/step  {rec['gflops']:7.1f} GFLOP/s"
                            + (f"  sgemm {rec['sgemm_gflops']:.1f}" if "sgemm_gflops" in rec
                               else ""))
    minutes = (time.time() - t_start) / 60
    summary, ratios = summarize(results, threads_list, rounds)
    flops = {}
    for r in results:
        flops[(r["model"], r["batch"])] = r["gemm_gflop_per_step"]
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tuned_diff = env_diff(env_by_t[threads_list[0]]["torch-tuned"])
    # per-product sgemm times of the GEMM-bound shapes, one thread, median over rounds
    gemms = {}
    for m, b in configs:
        runs = [r for r in results if r["impl"] == "libmtl" and r["model"] == m
                and r["batch"] == b and r["threads"] == 1 and r.get("gemms")]
        if (m, b) not in GEMM_BOUND or not runs:
            continue
        calls = []
        for i, c in enumerate(runs[0]["gemms"]):
            ms = statistics.median(r["gemms"][i]["ms"] for r in runs)
            calls.append(dict(c, ms=ms, gflops=2e-6 * c["m"] * c["n"] * c["k"] / ms))
        gemms[(m, b)] = calls
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu, "nproc": os.cpu_count(), "rounds": rounds, "quick": args.quick,
        "minutes": minutes, "build_info": info["build_info"], "torch": torch_ver,
        "torch_blas": blas,
        "tuned_env": " ".join(f"-u {k}" if v is None else f"{k}={v}"
                              for k, v in sorted(tuned_diff.items())),
        "load_before": " / ".join(f"{x:.2f}" for x in load_before),
        "load_after": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "flops": flops, "platform": platform.platform(), "gemms": gemms,
        "load_median": statistics.median(r["load1"] for r in results),
    }
    md = markdown(summary, ratios, threads_list, meta)
    md_path = os.path.join(args.out, f"results-{stamp}.md")
    with open(md_path, "w") as f:
        f.write(md + "\n")
    shutil.copyfile(md_path, os.path.join(args.out, "latest.md"))
    print(md)
    log(f"raw results: {raw_path}\ntable: {md_path}")


if __name__ == "__main__":
    main()
