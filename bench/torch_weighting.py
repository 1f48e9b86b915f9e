#!/usr/bin/python3
"""PyTorch counterpart of bench/bench_weighting.c: the training step of the mid model with
T tasks, the way PyTorch multi-task libraries take per-task gradients (one autograd.grad per
task on the shared parameters, as LibMTL does), and plain equal weighting for reference.

    torch_weighting.py --tasks T [--batch B] [--loops ew,gram,jac,fb] [--time S] [--groups G]
                       [--threads N] [--label L]

Model: trunk 784 -> 512 -> 256 (Linear-ReLU-Linear-ReLU), T heads Linear(256 -> 1) with MSE
(mean), Adam (lr 1e-3), batch 256 by default. Loops:
  ew    sum of the losses, one backward (the reference step)
  gram  a G method: forward; per task one autograd.grad(L_t, shared + head_t parameters,
        retain_graph=True); J = the T flattened shared gradients stacked (T x P); G = J J^T;
        weights from G (a stand-in of negligible cost: w_t = 1/sqrt(G_tt), normalised to sum
        T; libmtl's methods solve small T x T problems, also negligible here); shared
        gradient w^T J, head t's gradient w_t times its own; Adam step
  jac   a J method: the same J, then a per-coordinate combination (GradDrop's sign-purity
        mask, T x P elementwise work); heads get their own gradients; Adam step
  fb    forward and the T autograd.grad calls only (the per-task loop's own cost)
One JSON line per loop on stdout, with the median group's ms per step.
"""
import argparse
import json
import os
import sys
import time

import torch

POOL = 4


def build(T):
    torch.manual_seed(1)
    trunk = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 256), torch.nn.ReLU())
    heads = torch.nn.ModuleList([torch.nn.Linear(256, 1) for _ in range(T)])
    return trunk, heads


def make_step(loop, trunk, heads, T):
    shared = list(trunk.parameters())
    head_params = [list(h.parameters()) for h in heads]
    opt = torch.optim.Adam(list(trunk.parameters()) + list(heads.parameters()), lr=1e-3)
    mse = torch.nn.functional.mse_loss
    sizes = [p.numel() for p in shared]

    def losses_of(x, ys):
        z = trunk(x)
        return [mse(heads[t](z), ys[t]) for t in range(T)]

    if loop == "ew":
        def step(x, ys):
            opt.zero_grad(set_to_none=True)
            sum(losses_of(x, ys)).backward()
            opt.step()
        return step

    def per_task(x, ys):
        losses = losses_of(x, ys)
        rows, own = [], []
        for t in range(T):
            g = torch.autograd.grad(losses[t], shared + head_params[t], retain_graph=t < T - 1)
            rows.append(torch.cat([a.reshape(-1) for a in g[:len(shared)]]))
            own.append(g[len(shared):])
        return torch.stack(rows), own

    def assign(shared_grad, head_grads):
        for p, g in zip(shared, torch.split(shared_grad, sizes)):
            p.grad = g.view_as(p)
        for t in range(T):
            for p, g in zip(head_params[t], head_grads[t]):
                p.grad = g

    if loop == "fb":
        def step(x, ys):
            per_task(x, ys)
        return step

    if loop == "gram":
        def step(x, ys):
            opt.zero_grad(set_to_none=True)
            J, own = per_task(x, ys)
            G = J @ J.T
            w = 1.0 / torch.sqrt(torch.diagonal(G) + 1e-20)
            w = w * (T / w.sum())
            assign(w @ J, [[w[t] * g for g in own[t]] for t in range(T)])
            opt.step()
        return step

    if loop == "jac":
        def step(x, ys):
            opt.zero_grad(set_to_none=True)
            J, own = per_task(x, ys)
            purity = 0.5 * (1.0 + J.sum(0) / (J.abs().sum(0) + 1e-20))
            u = torch.rand(J.shape[1])
            keep = ((purity > u) & (J > 0)) | ((purity < u) & (J < 0))
            assign((J * keep).sum(0), own)
            opt.step()
        return step
    raise SystemExit("unknown loop " + loop)


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--loops", default="ew,gram,jac,fb")
    ap.add_argument("--time", type=float, default=1.5)
    ap.add_argument("--groups", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    xs = [torch.randn(a.batch, 784) for _ in range(POOL)]
    ys = [[torch.randn(a.batch, 1) for _ in range(a.tasks)] for _ in range(POOL)]
    for loop in a.loops.split(","):
        trunk, heads = build(a.tasks)
        step = make_step(loop, trunk, heads, a.tasks)
        k = 0
        t0 = time.perf_counter()
        while k < 3 or time.perf_counter() - t0 < a.time / 4:
            step(xs[k % POOL], ys[k % POOL])
            k += 1
        per = (time.perf_counter() - t0) / k
        n = max(1, int(a.time / a.groups / per))
        groups, cpu = [], []
        for _ in range(a.groups):
            s, c = time.perf_counter(), time.process_time()
            for _ in range(n):
                step(xs[k % POOL], ys[k % POOL])
                k += 1
            groups.append((time.perf_counter() - s) / n * 1e3)
            cpu.append((time.process_time() - c) / n * 1e3)
        print(json.dumps({"impl": "torch", "label": a.label, "tasks": a.tasks, "batch": a.batch,
                          "threads": a.threads, "loop": loop, "ms": round(median(groups), 4),
                          "cpu_ms": round(median(cpu), 4),
                          "steps_per_group": n, "groups_ms": [round(g, 4) for g in groups],
                          "torch": torch.__version__,
                          "env": {k: os.environ.get(k) for k in
                                  ("BLIS_ARCH_TYPE", "GLIBC_TUNABLES", "OPENBLAS_CORETYPE",
                                   "OMP_NUM_THREADS", "BLIS_NUM_THREADS")}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
