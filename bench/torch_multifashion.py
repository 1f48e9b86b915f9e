#!/usr/bin/python3
"""PyTorch counterpart of the Multi-Fashion LeNet recipe (examples/configs/multifashion/),
trained on the identical files, the identical train/validation split and the identical
initial weights:

  * the split is read from libmtl (the configuration's seeded hold-out, via the Python
    bindings), so both frameworks train on the same 108,000 images and select the best
    epoch on the same 12,000;
  * the initial weights are libmtl's for the configuration's seed (same names and layouts
    as torch.nn.Conv2d / Linear), copied into the torch modules;
  * SGD (lr, momentum), the multi-step schedule, batch size, epochs, equal weighting (sum of
    the task losses), per-epoch reshuffling, a kept last partial batch, the best checkpoint
    by mean validation loss and its test (and train) accuracy all follow the recipe.

Only the order of the shuffled batches differs (each framework draws its own). One thread
(torch.set_num_threads(1), OMP/OpenBLAS threads 1 unless the caller set them). Prints one
JSON line per epoch (--verbose) and one at the end.

    PYTHONPATH=bindings/python MTL_LIBRARY=build/libmtl/libmtl.so.1 \\
      /usr/bin/python3 bench/torch_multifashion.py [--config lenet-ew.yaml] [--epochs N]
                       [--max-steps N] [--out result.json]

--max-steps stops each epoch after N steps (timing runs); per-epoch times then cover N steps.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "examples", "configs", "multifashion", "lenet-ew.yaml")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--epochs", type=int, default=0, help="override training.epochs")
    ap.add_argument("--max-steps", type=int, default=0, help="steps per epoch (0: all)")
    ap.add_argument("--no-eval", action="store_true", help="skip validation/test (timing)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(a.threads))
    import numpy as np
    import torch
    import mtl  # the libmtl bindings: configuration, split and initial weights
    from lenet_torch import lenet_from_mtl

    torch.set_num_threads(a.threads)
    cfg = mtl.Config.load(a.config)
    if a.epochs:
        cfg.set("training.epochs", a.epochs)
    tasks = list(cfg.tasks)
    epochs = cfg.get_int("training.epochs")
    batch = cfg.get_int("training.batch_size")
    seed = cfg.get_int("training.seed")
    lr = cfg.get_double("optimizer.lr")
    momentum = cfg.get_double("optimizer.momentum")
    gamma = cfg.get_double("optimizer.gamma")
    milestones = [cfg.get_int(f"optimizer.milestones.{i}")
                  for i in range(cfg.count("optimizer.milestones"))]
    method = cfg.get_string("weighting.method")
    if method != "ew":
        sys.exit(f"torch_multifashion.py trains equal weighting only, the file asks for {method!r}")

    # identical data: the rows libmtl's configuration gives each split (its seeded hold-out of
    # the validation rows), read from libmtl's datasets; the test split is the test files
    splits = {}
    for split in ("train", "validation", "test"):
        ds = cfg.build_dataset(split)
        x = np.array(ds.inputs[ds.indices()])
        ys = [np.array(ds.target(t)[ds.indices()]).astype(np.int64) for t in tasks]
        splits[split] = (torch.from_numpy(x), [torch.from_numpy(y) for y in ys])
        del ds
    x_tr, y_tr = splits["train"]
    x_va, y_va = splits["validation"]
    x_test, y_test = splits["test"]
    tr_idx = torch.arange(x_tr.shape[0])

    # identical initial weights: libmtl's model for the configuration's seed
    init = cfg.build_model().state_dict()
    nn = torch.nn
    trunk, heads = lenet_from_mtl(torch, tasks, init)

    params = list(trunk.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)
    ce = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)

    def evaluate(x, ys, idx=None, chunk=2000):
        trunk.eval(); heads.eval()
        n = len(idx) if idx is not None else x.shape[0]
        loss = [0.0] * len(tasks)
        correct = [0] * len(tasks)
        with torch.no_grad():
            for s in range(0, n, chunk):
                sel = idx[s:s + chunk] if idx is not None else slice(s, min(n, s + chunk))
                z = trunk(x[sel])
                for i, h in enumerate(heads):
                    out, y = h(z), ys[i][sel]
                    loss[i] += float(nn.functional.cross_entropy(out, y, reduction="sum"))
                    correct[i] += int((out.argmax(1) == y).sum())
        trunk.train(); heads.train()
        return ({t: loss[i] / n for i, t in enumerate(tasks)},
                {t: correct[i] / n for i, t in enumerate(tasks)})

    best, best_state, best_epoch = None, None, 0
    epoch_times = []
    t_start = time.perf_counter()
    for ep in range(1, epochs + 1):
        perm = torch.randperm(len(tr_idx), generator=gen)
        steps = (len(perm) + batch - 1) // batch
        if a.max_steps:
            steps = min(steps, a.max_steps)
        t0 = time.perf_counter()
        run = [0.0] * len(tasks)
        for s in range(steps):
            sel = perm[s * batch:(s + 1) * batch]
            xb = x_tr[sel]
            opt.zero_grad(set_to_none=True)
            z = trunk(xb)
            losses = [ce(h(z), y_tr[i][sel]) for i, h in enumerate(heads)]
            total = losses[0]
            for l in losses[1:]:
                total = total + l
            total.backward()
            opt.step()
            for i, l in enumerate(losses):
                run[i] += float(l)
        sched.step()
        dt = time.perf_counter() - t0
        epoch_times.append(dt)
        rec = {"epoch": ep, "seconds": dt, "samples_per_s": min(len(perm), steps * batch) / dt,
               "train_loss": {t: run[i] / steps for i, t in enumerate(tasks)}}
        if not a.no_eval:
            vl, vacc = evaluate(x_va, y_va)
            val = sum(vl.values()) / len(tasks)
            rec.update(val_loss=val, val_accuracy=vacc)
            if best is None or val < best:
                best, best_epoch = val, ep
                best_state = ({k: v.clone() for k, v in trunk.state_dict().items()},
                              [{k: v.clone() for k, v in h.state_dict().items()} for h in heads])
        if a.verbose:
            print(json.dumps(rec), flush=True)
    total_time = time.perf_counter() - t_start
    result = {"impl": "torch", "torch": torch.__version__, "threads": a.threads,
              "epochs": epochs, "steps_per_epoch": steps, "batch": batch,
              "epoch_seconds": epoch_times,
              "median_epoch_seconds": sorted(epoch_times)[len(epoch_times) // 2],
              "total_seconds": total_time}
    if not a.no_eval:
        trunk.load_state_dict(best_state[0])
        for h, st in zip(heads, best_state[1]):
            h.load_state_dict(st)
        _, test_acc = evaluate(x_test, y_test)
        _, train_acc = evaluate(x_tr, y_tr)
        vl, val_acc = evaluate(x_va, y_va)
        result.update(best_epoch=best_epoch, best_val_loss=best, test_accuracy=test_acc,
                      train_accuracy=train_acc, val_accuracy=val_acc)
    line = json.dumps(result)
    print(line, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
