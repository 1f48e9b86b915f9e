#!/usr/bin/python3
"""PyTorch counterpart of bench_train.c: the same models, optimizer, batches and timing.

Trains one configuration per process (so the peak RSS is that configuration's own) and prints
one JSON line. Run with Debian's python3-torch (/usr/bin/python3). The environment decides
PyTorch's speed on this machine (see docs/performance.md); this script changes none of it
except OPENBLAS_NUM_THREADS, which must be set before torch is imported to size OpenBLAS's
pool (torch.set_num_threads does not), and only when the caller has not set it.

    torch_train.py --model mid --batch 32 [--threads 1] [--label torch-tuned] [--quick]
"""
import argparse
import json
import os
import resource
import sys
import time

MODELS = {
    # name: (input features, trunk widths, [(head outputs, loss)])
    "small": (32, [64, 64], [(1, "mse"), (1, "mse"), (1, "mse")]),
    "mid": (784, [512, 256], [(10, "cross_entropy"), (1, "mse")]),
    "large": (1024, [2048, 2048], [(16, "mse")] * 4),
}
POOL = 4  # distinct pre-generated batches, cycled through


def gemm_flops(model, batch):
    """FLOPs of the matrix products of one training step: 2*B*in*out for each Linear forward,
    the same for its weight gradient, and the same for its input gradient except in the first
    trunk layer (the input needs no gradient; neither framework computes it)."""
    nin, widths, heads = MODELS[model]
    total, prev, first = 0, nin, True
    for w in widths:
        total += 2 * batch * prev * w * (2 if first else 3)
        prev, first = w, False
    for out, _ in heads:
        total += 2 * batch * prev * out * 3
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1,
                    help="cores for the matrix products: OpenBLAS threads (torch itself stays "
                         "at 1 thread, its fastest setting here)")
    ap.add_argument("--label", default="torch")
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--repeat-time", type=float, default=None,
                    help="seconds per timed repeat (default 0.15, quick 0.03)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import torch  # after OPENBLAS_NUM_THREADS

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    repeats = args.repeats or (3 if args.quick else 7)
    rep_time = args.repeat_time or (0.03 if args.quick else 0.15)
    warm_time = 0.03 if args.quick else 0.15

    nin, widths, heads = MODELS[args.model]
    layers, prev = [], nin
    for w in widths:
        layers += [torch.nn.Linear(prev, w), torch.nn.ReLU()]
        prev = w
    trunk = torch.nn.Sequential(*layers)
    head_mods = torch.nn.ModuleList([torch.nn.Linear(prev, out) for out, _ in heads])
    params = list(trunk.parameters()) + list(head_mods.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    mse = torch.nn.MSELoss()
    ce = torch.nn.CrossEntropyLoss()
    crits = [ce if loss == "cross_entropy" else mse for _, loss in heads]

    # synthetic data, generated once
    B = args.batch
    xs, ys = [], []
    for _ in range(POOL):
        xs.append(torch.randn(B, nin))
        ys.append([torch.randint(0, out, (B,)) if loss == "cross_entropy"
                   else torch.randn(B, out) for out, loss in heads])

    counter = [0]

    def step():
        i = counter[0] % POOL
        counter[0] += 1
        opt.zero_grad(set_to_none=True)
        z = trunk(xs[i])
        loss = None
        for h, c, y in zip(head_mods, crits, ys[i]):
            l = c(h(z), y)
            loss = l if loss is None else loss + l
        loss.backward()
        opt.step()
        return loss

    # warm-up: at least 3 steps (Adam state, allocator caches) and warm_time seconds
    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < warm_time:
        step()
        n += 1
    per_step = (time.perf_counter() - t0) / n
    steps = max(1, int(rep_time / per_step + 0.5))
    # a very slow step (an overloaded machine): fewer groups, at least 3
    max_time = 1.0 if args.quick else 3.0
    if per_step * repeats > max_time:
        repeats = min(repeats, max(3, int(max_time / per_step)))

    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        times.append((time.perf_counter() - t0) / steps)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (
        times[len(times) // 2 - 1] + times[len(times) // 2])
    flops = gemm_flops(args.model, B)
    rec = {
        "impl": args.label,
        "model": args.model,
        "batch": B,
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
        "openblas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]),
        "steps": steps,
        "repeats": repeats,
        "ms_per_step": med * 1e3,
        "ms_min": times[0] * 1e3,
        "samples_per_s": B / med,
        "peak_rss_kib": ru.ru_maxrss,
        "minflt_per_step": (ru.ru_minflt - flt0) / (steps * repeats),
        "gemm_gflop_per_step": flops * 1e-9,
        "gflops": flops * 1e-9 / med,
        "loss": float(loss),
        "torch": torch.__version__,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                               "OPENBLAS_NUM_THREADS", "GLIBC_TUNABLES")},
    }
    print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
