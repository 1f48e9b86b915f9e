#!/usr/bin/python3
"""Training-step time of the Multi-Fashion LeNet (examples/configs/multifashion/) with libmtl
and with PyTorch, side by side in one process: the same model, the same initial weights, the
same batches of the real data, SGD with momentum, equal weighting (or the weighting the
configuration names, for libmtl only). Rounds alternate between the two; the report gives
each one's median time per step and the ratio.

    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \\
      /usr/bin/python3 bench/lenet_step.py [--config FILE] [--rounds 5] [--steps 20]
                                           [--batch 256] [--no-torch] [--json]

One thread for both. Set GLIBC_TUNABLES as docs/performance.md describes for "PyTorch tuned".
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "examples", "configs", "multifashion", "lenet-ew.yaml")
POOL = 4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import numpy as np
    import mtl
    from lenet_torch import lenet_from_mtl

    cfg = mtl.Config.load(a.config)
    cfg.set("training.batch_size", a.batch)
    tasks = list(cfg.tasks)
    data_dir = os.path.join(os.path.dirname(os.path.abspath(a.config)), cfg.get_string("data.dir"))
    x_all = np.load(os.path.join(data_dir, cfg.get_string("data.train.input")), mmap_mode="r")
    y_all = {t: np.load(os.path.join(data_dir, cfg.get_string(f"data.train.labels.{t}")))
             for t in tasks}
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(POOL):
        idx = np.sort(rng.choice(x_all.shape[0], a.batch, replace=False))
        batches.append((np.ascontiguousarray(x_all[idx]),
                        {t: np.ascontiguousarray(y_all[t][idx]) for t in tasks}))

    model = cfg.build_model()
    init = model.state_dict()
    opt = cfg.build_optimizer(model, steps_per_epoch=1000)
    weighting = cfg.build_weighting()
    method = cfg.get_string("weighting.method") if cfg.count("weighting") else "ew"

    def mtl_steps(n, k=[0]):
        for _ in range(n):
            x, y = batches[k[0] % POOL]
            k[0] += 1
            model.train_step(opt, x, y, weighting=weighting)

    runners = {"libmtl": mtl_steps}
    if not a.no_torch:
        import torch
        torch.set_num_threads(1)
        nn = torch.nn
        trunk, heads = lenet_from_mtl(torch, tasks, init)
        params = list(trunk.parameters()) + list(heads.parameters())
        topt = torch.optim.SGD(params, lr=cfg.get_double("optimizer.lr"),
                               momentum=cfg.get_double("optimizer.momentum"))
        ce = nn.CrossEntropyLoss()
        tb = [(torch.from_numpy(x), [torch.from_numpy(y[t].astype(np.int64)) for t in tasks])
              for x, y in batches]

        def torch_steps(n, k=[0]):
            for _ in range(n):
                x, ys = tb[k[0] % POOL]
                k[0] += 1
                topt.zero_grad(set_to_none=True)
                z = trunk(x)
                loss = ce(heads[0](z), ys[0])
                for h, y in zip(heads[1:], ys[1:]):
                    loss = loss + ce(h(z), y)
                loss.backward()
                topt.step()

        runners["torch"] = torch_steps

    for f in runners.values():  # warm-up
        f(3)
    times = {k: [] for k in runners}
    for _ in range(a.rounds):
        for k, f in runners.items():
            t0 = time.perf_counter()
            f(a.steps)
            times[k].append((time.perf_counter() - t0) / a.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    rec = {"config": os.path.basename(a.config), "method": method, "batch": a.batch,
           "ms_per_step": {k: v * 1e3 for k, v in med.items()}}
    if "torch" in med:
        rec["speedup_vs_torch"] = med["torch"] / med["libmtl"]
    if a.json:
        print(json.dumps(rec))
    else:
        line = "  ".join(f"{k} {v * 1e3:.2f} ms/step" for k, v in med.items())
        extra = f"  (libmtl {rec['speedup_vs_torch']:.2f}x torch)" if "torch" in med else ""
        print(f"{rec['config']} batch {a.batch}: {line}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
