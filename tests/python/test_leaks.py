"""No leaks: every handle created is freed exactly once, and 10,000 create/free rounds keep
the resident set size flat."""

import gc
import os

import numpy as np
import pytest

import mtl

from conftest import make_model

N = 10_000
# Growth allowed over N rounds after warm-up. A leaked C tensor struct alone (~100 bytes)
# would add ~1 MB over 10,000 rounds, a leaked model far more.
RSS_SLACK = 512 * 1024


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def creations(calls, kind):
    names = {"tensor": ("mtl_tensor_create", "mtl_tensor_wrap", "mtl_tensor_clone"),
             # mtl_checkpoint_load makes a model and (in the loops here) an optimizer
             "model": ("mtl_model_create", "mtl_config_build_model", "mtl_checkpoint_load"),
             "optimizer": ("mtl_optimizer_create", "mtl_config_build_optimizer",
                           "mtl_checkpoint_load"),
             "weighting": ("mtl_weighting_create",),
             "loader": ("mtl_loader_create",), "trainer": ("mtl_trainer_create",),
             "eval_result": ("mtl_evaluate",),
             "config": ("mtl_config_load", "mtl_config_parse")}[kind]
    return sum(calls[n] for n in names), calls[f"mtl_{kind}_free"]


def run_rounds(fn, rounds):
    for i in range(rounds):
        fn(i)
    gc.collect()


def check_flat(calls, kinds, fn, rounds=N):
    run_rounds(fn, 500)                 # warm-up: allocator pools, caches
    before = {k: creations(calls, k) for k in kinds}
    rss0 = rss_bytes()
    run_rounds(fn, rounds)
    grown = rss_bytes() - rss0
    for k in kinds:
        c0, f0 = before[k]
        c1, f1 = creations(calls, k)
        assert c1 - c0 >= rounds, k
        assert c1 - c0 == f1 - f0, f"{k}: {c1 - c0} created, {f1 - f0} freed"
    assert grown < RSS_SLACK, f"RSS grew by {grown} bytes over {rounds} rounds"


def test_tensor_create_free_loop(calls):
    def one(i):
        t = mtl.Tensor((16, 16))
        t.fill(i)
        c = t.clone()
        c.close()
        t.close()
    check_flat(calls, ["tensor"], one)


def test_tensor_wrap_view_and_gc_loop(calls):
    a = np.ones((64,), np.float32)

    def one(i):
        t = mtl.Tensor.from_numpy(a)
        v = t.numpy()
        del t                            # freed by the finalizer once the view is gone
        v[0] = i
        u = mtl.Tensor.from_numpy(np.arange(8))   # one conversion copy
        u.close()
    check_flat(calls, ["tensor"], one)


def test_model_optimizer_weighting_loop(calls):
    x = np.zeros((4, 6), np.float32)
    y = {"cls": np.zeros(4, np.int32)}

    def one(i):
        m = make_model(max_batch=4)
        with mtl.Optimizer(m, "adam", lr=1e-3) as opt, mtl.Weighting("ew", 2) as w:
            m.train_step(opt, x, y, weighting=w)
        m.close()
    check_flat(calls, ["model", "optimizer", "weighting", "tensor"], one)


def test_error_paths_do_not_leak(calls):
    m = make_model(max_batch=4)

    def one(i):
        with pytest.raises(mtl.ShapeError):
            m.compute_losses(np.zeros((4, 5), np.float32), {"cls": np.zeros(4, np.int32)})
        with pytest.raises(mtl.InvalidArgumentError):
            mtl.Tensor((0,))
        with pytest.raises(mtl.MtlError):
            mtl.Optimizer(m, "adam", nosuchkey=1.0)    # created, then freed on error
    check_flat(calls, ["tensor", "optimizer"], one, rounds=N // 2)
    m.close()


def test_multitask_model_loop(calls):
    X = np.zeros((8, 6), np.float32)
    Y = {"a": np.zeros(8, np.int32)}

    def one(i):
        mm = mtl.MultiTaskModel((6,), [("linear", {"out": 4}), "relu"],
                                {"a": {"layers": [("linear", {"out": 2})],
                                       "loss": "cross_entropy"}}, max_batch=8)
        mm.compile("sgd")
        mm.fit(X, Y, epochs=1, batch_size=8)
        mm.predict(X)
        mm.close()
    check_flat(calls, ["model", "optimizer", "weighting", "tensor"], one, rounds=2000)


def test_dataset_loader_trainer_loop(calls):
    # loaders, trainers and evaluation results: flat RSS, one free per creation; datasets
    # (one split call makes several views) are counted separately below
    X = np.zeros((16, 6), np.float32)
    y = np.zeros(16, np.int64)                       # converted and adopted
    s = np.zeros((16, 2), np.float32)                # borrowed
    m = make_model(max_batch=8)
    opt = mtl.Optimizer(m, "sgd", lr=0.01)

    def one(i):
        ds = mtl.Dataset(X, {"cls": y, "reg": s}, tasks=m)
        tr_ds, va, _ = ds.split(val=0.25, seed=i)
        ld = mtl.Loader(tr_ds, 8, seed=i)
        ld.next()
        ld.batch()
        tr = mtl.Trainer(m, opt, train=tr_ds, val=va, epochs=1, batch_size=8)
        tr.run(lambda *a: None)
        mtl.evaluate(m, va)
        for h in (tr, ld, va, tr_ds, ds):
            h.close()
    check_flat(calls, ["loader", "trainer", "eval_result"], one, rounds=2000)
    # datasets: every create/adopt/view is freed
    c0 = sum(calls[n] for n in ("mtl_dataset_create", "mtl_dataset_adopt"))
    f0 = calls["mtl_dataset_free"]
    for i in range(100):
        one(i)
    gc.collect()
    created = sum(calls[n] for n in ("mtl_dataset_create", "mtl_dataset_adopt")) - c0
    assert created == 100 and calls["mtl_dataset_free"] - f0 == 300   # + 2 views each
    opt.close()
    m.close()


def test_config_and_checkpoint_loop(calls, tmp_path):
    text = ("tasks: {a: {kind: classification, classes: 3}}\n"
            "model: {input: {shape: [4]}, trunk: [{kind: linear, out: 8}, relu]}\n")
    # checkpoints are fsync'ed: in memory (tmpfs) when there is one, to keep the loop quick
    import tempfile
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    tmpdir = tempfile.TemporaryDirectory(dir=shm or str(tmp_path))
    path = os.path.join(tmpdir.name, "m.ckpt")

    def one(i):
        cfg = mtl.Config.parse(text)
        cfg.set("training.seed", i)
        m = cfg.build_model()
        opt = cfg.build_optimizer(m)
        m.save_checkpoint(path, opt)
        m2, opt2, _ = mtl.load_checkpoint(path)
        for h in (opt2, m2, opt, m, cfg):
            h.close()
        with pytest.raises(mtl.InvalidArgumentError):
            mtl.Config.parse(text + "extra: 1\n")       # created nothing, leaks nothing
    try:
        check_flat(calls, ["config", "model", "optimizer"], one, rounds=2000)
    finally:
        tmpdir.cleanup()


def test_handles_dropped_without_close_are_collected(calls):
    c0, f0 = creations(calls, "model")
    for _ in range(200):
        m = make_model()
        mtl.Optimizer(m, "sgd")          # dropped immediately
        m.head(0)
        del m
    gc.collect()
    c1, f1 = creations(calls, "model")
    assert c1 - c0 == 200 and f1 - f0 == 200


def test_rss_measurement_detects_a_real_leak():
    # Negative control: 10,000 tensors of 64 floats created in C and not freed (yet) do
    # show up, so the flat-RSS checks above are sensitive enough.
    import ctypes
    from mtl._lib import C
    shape = (ctypes.c_int64 * 1)(64)
    ptrs = []
    rss0 = rss_bytes()
    for _ in range(N):
        out = ctypes.c_void_p()
        C.mtl_tensor_create(ctypes.byref(out), 0, 1, shape)
        ptrs.append(out.value)
    grown = rss_bytes() - rss0
    for p in ptrs:
        C.mtl_tensor_free(p)
    assert grown > RSS_SLACK
