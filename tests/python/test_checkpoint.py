"""Checkpoints and safetensors from Python (mtl_checkpoint_*, mtl_model_*_safetensors):
bit-identical continuation after a save/load round trip (low level, MultiTaskModel, and the
trainer's resume), summaries, pickling through checkpoints, and typed errors for missing,
corrupt, truncated and mismatched files, with the model unchanged."""

import ctypes
import json
import os
import pickle
import struct

import numpy as np
import pytest

import mtl
from mtl import _lib


def build(seed=0, dropout=True, max_batch=16, out=3):
    m = mtl.Model((6,))
    m.trunk.add_layer("linear", out=12)
    m.trunk.add_layer("relu")
    if dropout:
        m.trunk.add_layer("dropout", p=0.25)     # consumes the random state each step
    m.add_head("cls", loss="cross_entropy", layers=[("linear", {"out": out})])
    m.add_head("reg", loss="mse", layers=[("linear", {"out": 2})])
    return m.build(max_batch, seed)


def batches(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=(16, 6)).astype(np.float32)
        out.append((x, {"cls": rng.integers(0, 3, 16).astype(np.int32),
                        "reg": rng.normal(size=(16, 2)).astype(np.float32)}))
    return out


def train(m, opt, w, data):
    return np.array([m.train_step(opt, x, y, weighting=w) for x, y in data])


def params(m):
    return {n: m.get_param(n) for n in m.param_names()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for n in a:
        assert np.array_equal(a[n], b[n]), n


def test_bit_identical_continuation_low_level(tmp_path):
    path = tmp_path / "run.ckpt"
    first, then = batches(4, seed=1), batches(5, seed=2)
    m = build(seed=0)
    opt = mtl.Optimizer(m, "adam", lr=0.01, weight_decay=0.01)
    w = mtl.Weighting("dwa", 2)
    train(m, opt, w, first)
    m.save_checkpoint(path, opt, w)
    assert path.exists() and not list(tmp_path.glob("*.tmp*"))
    ref_losses = train(m, opt, w, then)
    ref = params(m)
    ref_weights = w.weights

    # into existing handles of another seed: the continuation is the same, bit for bit
    m2 = build(seed=9)
    opt2 = mtl.Optimizer(m2, "adam")
    w2 = mtl.Weighting("dwa", 2)
    m2.load_checkpoint(path, opt2, w2)
    assert opt2.step_count == 4 and opt2.get("lr") == 0.01
    losses2 = train(m2, opt2, w2, then)
    assert np.array_equal(losses2, ref_losses)
    assert_same_params(params(m2), ref)
    assert np.array_equal(w2.weights, ref_weights)

    # new handles from the file
    m3, opt3, w3 = mtl.load_checkpoint(path)
    assert m3.input_shape == (6,) and m3.task_names == ["cls", "reg"]
    assert opt3.kind == "adam" and opt3.model is m3 and w3.method == "dwa"
    assert np.array_equal(train(m3, opt3, w3, then), ref_losses)
    assert_same_params(params(m3), ref)
    # the same through Model.from_checkpoint, leaving the optimizer out
    m4, opt4, w4 = mtl.Model.from_checkpoint(path, optimizer=False)
    assert opt4 is None and w4 is not None
    for h in (opt4, w4, m4, opt3, w3, m3, opt2, w2, m2, opt, w, m):
        if h is not None:
            h.close()


def test_optional_parts_and_describe(tmp_path):
    m = build(dropout=False)
    path = tmp_path / "weights-only.ckpt"
    mtl.save_checkpoint(path, m)
    text = mtl.describe_checkpoint(path)
    assert text.startswith("libmtl checkpoint, format version ")
    assert "input: float32 [6], max_batch 16, seed 0" in text
    assert "optimizer: none" in text and "weighting: none" in text
    info = mtl.checkpoint_info(path)
    assert info["input_shape"] == [6] and info["max_batch"] == 16
    assert info["trunk"] == [["linear", {"out": 12}], ["relu", {}]]
    assert info["heads"]["cls"] == {"layers": [["linear", {"out": 3}]],
                                    "loss": "cross_entropy", "loss_options": {}}
    assert not info["has_optimizer"] and not info["has_weighting"]
    m2, o2, w2 = mtl.load_checkpoint(path)
    assert o2 is None and w2 is None
    with pytest.raises(mtl.NotFoundError, match="it holds no optimizer state"):
        mtl.load_checkpoint(path, optimizer=True)
    opt = mtl.Optimizer(m2, "sgd")
    with pytest.raises(mtl.NotFoundError):
        m2.load_checkpoint(path, opt)
    # a summary longer than the buffer: a range error naming the size, and the retry path
    needed = ctypes.c_size_t()
    buf = ctypes.create_string_buffer(16)
    with pytest.raises(mtl.RangeError, match="the summary needs"):
        _lib.C.mtl_checkpoint_describe(os.fsencode(path), buf, 16, ctypes.byref(needed))
    assert needed.value == len(text.encode()) + 1 and buf.value == text.encode()[:15]
    opt.close()
    m2.close()
    m.close()


def test_errors_leave_the_model_unchanged(tmp_path):
    m = build()
    opt = mtl.Optimizer(m, "adam")
    path = tmp_path / "a.ckpt"
    m.save_checkpoint(path, opt)
    other = build(seed=4, out=4)                      # a different head size
    before = params(other)
    with pytest.raises(mtl.ShapeError, match="head 'cls' layer 0 \\(linear\\): option 'out' is "
                                             "3 in the checkpoint, 4 in the model"):
        other.load_checkpoint(path)
    assert_same_params(params(other), before)
    with pytest.raises(mtl.MtlIOError, match="cannot open '.*missing.ckpt': No such file"):
        mtl.load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(mtl.MtlIOError, match="cannot create a temporary file next to"):
        m.save_checkpoint(tmp_path / "no" / "dir" / "x.ckpt")
    with pytest.raises(mtl.InvalidArgumentError, match="the optimizer belongs to another "
                                                       "model"):
        other.save_checkpoint(path, opt)
    blob = path.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(mtl.FormatError, match="truncated or corrupted"):
        mtl.load_checkpoint(tmp_path / "trunc.ckpt")
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    same = build(seed=5)
    before = params(same)
    with pytest.raises(mtl.FormatError, match="fails its checksum"):
        same.load_checkpoint(tmp_path / "flip.ckpt")
    assert_same_params(params(same), before)
    with pytest.raises(mtl.FormatError):
        mtl.describe_checkpoint(tmp_path / "flip.ckpt")
    sgd = mtl.Optimizer(same, "sgd")                  # not the stored kind
    with pytest.raises(mtl.ShapeError, match="the optimizer is adam in the checkpoint, sgd "
                                             "here"):
        same.load_checkpoint(path, sgd)
    assert_same_params(params(same), before)
    for h in (sgd, same, other, opt, m):
        h.close()


def test_safetensors_round_trip(tmp_path):
    m = build()
    opt = mtl.Optimizer(m, "sgd", lr=0.1)
    train(m, opt, None, batches(2))
    path = tmp_path / "w.safetensors"
    m.save_safetensors(path)
    # the documented layout: 8-byte header length, JSON header, float32 data
    raw = path.read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    assert header["__metadata__"]["format"] == "pt"
    assert header["trunk.0.weight"] == {"dtype": "F32", "shape": [12, 6],
                                        "data_offsets": header["trunk.0.weight"]["data_offsets"]}
    b0, b1 = header["heads.cls.0.bias"]["data_offsets"]
    np.testing.assert_array_equal(
        np.frombuffer(raw[8 + hlen + b0:8 + hlen + b1], "<f4"), m.get_param("heads.cls.0.bias"))
    m2 = build(seed=7)
    m2.load_safetensors(path)
    assert_same_params(params(m2), params(m))
    # PyTorch's reader agrees, when installed
    try:
        from safetensors.numpy import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        d = load_file(str(path))
        assert set(d) == set(m.param_names())
    small = build(out=4)
    before = params(small)
    with pytest.raises(mtl.ShapeError, match="tensor 'heads.cls.0.bias' has shape \\[3\\], "
                                             "the model's is \\[4\\]"):
        small.load_safetensors(path)
    assert_same_params(params(small), before)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(mtl.FormatError, match="header of 16 bytes, only 10 follow"):
        m2.load_safetensors(tmp_path / "bad.safetensors")
    for h in (small, m2, opt, m):
        h.close()


# ---- MultiTaskModel -------------------------------------------------------------------------

def make_mtm(seed=0):
    return mtl.MultiTaskModel(
        input_shape=(6,), trunk=[("linear", {"out": 12}), "relu", ("dropout", {"p": 0.25})],
        heads={"cls": {"layers": [("linear", {"out": 3})], "loss": "cross_entropy"},
               "reg": {"layers": [("linear", {"out": 2})], "loss": "mse"}},
        seed=seed, max_batch=16)


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    return X, {"cls": rng.integers(0, 3, n), "reg": rng.normal(size=(n, 2))}


@pytest.mark.parametrize("engine", ["python", "c"])
def test_multitask_checkpoint_continuation(tmp_path, engine):
    X, Y = data()
    with make_mtm() as a:
        a.compile("adam", lr=0.01, weighting="dwa")
        a.fit(X, Y, epochs=2, batch_size=16, seed=1, engine=engine)
        a.save(tmp_path / "m.ckpt")                      # not .npz: a libmtl checkpoint
        h_ref = a.fit(X, Y, epochs=2, batch_size=16, seed=2, engine=engine)
        ref = a.state_dict()
        with mtl.MultiTaskModel.load(tmp_path / "m.ckpt") as b:
            assert b.optimizer.kind == "adam" and b.optimizer.step_count == 8
            assert b.weighting.method == "dwa" and b.tasks == ["cls", "reg"]
            assert b.config["input_shape"] == [6] and b.config["trunk"][2] == [
                "dropout", {"p": 0.25}]
            h = b.fit(X, Y, epochs=2, batch_size=16, seed=2, engine=engine)
            assert h["loss"] == h_ref["loss"]
            for n, v in b.state_dict().items():
                assert np.array_equal(v, ref[n]), n
        with make_mtm(seed=3) as c:                      # into an existing model
            c.compile("adam", weighting="dwa")
            c.load_checkpoint(tmp_path / "m.ckpt")
            assert c.optimizer.get("lr") == 0.01
            h = c.fit(X, Y, epochs=2, batch_size=16, seed=2, engine=engine)
            assert h["loss"] == h_ref["loss"]


def test_multitask_formats_and_weights(tmp_path):
    X, Y = data()
    with make_mtm() as a:
        a.compile("sgd", lr=0.05)
        a.fit(X, Y, epochs=1, batch_size=16)
        ref = a.predict(X)
        a.save(tmp_path / "m.npz")                       # the numpy archive still works
        a.save_checkpoint(tmp_path / "m.ckpt")
        a.save_safetensors(tmp_path / "m.safetensors")
        with mtl.MultiTaskModel.load(tmp_path / "m.npz") as b:
            assert b.config == a.config
            assert np.array_equal(b.predict(X)["cls"], ref["cls"])
        for name in ("m.npz", "m.ckpt", "m.safetensors"):
            with make_mtm(seed=8) as c:
                c.load_weights(tmp_path / name)
                assert np.array_equal(c.predict(X)["reg"], ref["reg"]), name
        with make_mtm(seed=8) as c:
            c.load_safetensors(tmp_path / "m.safetensors")
            assert np.array_equal(c.predict(X)["cls"], ref["cls"])
            with pytest.raises(mtl.StateError, match="has no optimizer"):
                c.load_checkpoint(tmp_path / "m.ckpt", optimizer=True)
            c.load_checkpoint(tmp_path / "m.ckpt")      # not compiled: the model only
            assert np.array_equal(c.predict(X)["cls"], ref["cls"])
        b = mtl.MultiTaskModel.from_checkpoint(tmp_path / "m.ckpt", config=a.config)
        assert b.config == a.config and b.optimizer.kind == "sgd" and b.weighting is not None
        b.close()
    with pytest.raises(mtl.MtlIOError):
        mtl.MultiTaskModel.load(tmp_path / "missing.ckpt")


def test_pickle_keeps_the_training_state():
    X, Y = data()
    with make_mtm() as a:
        a.compile("adam", lr=0.01, weighting="dwa")
        a.fit(X, Y, epochs=1, batch_size=16, seed=1)
        b = pickle.loads(pickle.dumps(a))
        assert b.optimizer.step_count == a.optimizer.step_count == 4
        assert b.config == a.config and b.history == a.history
        ha = a.fit(X, Y, epochs=1, batch_size=16, seed=2)
        hb = b.fit(X, Y, epochs=1, batch_size=16, seed=2)
        assert ha["loss"] == hb["loss"]                  # moments and random state kept
        b.close()
        # a pickle written before checkpoints (weights by name) still loads
        old = {"config": a.config, "state": a.state_dict(), "compile": a._compile_args,
               "history": {}}
        c = mtl.MultiTaskModel.__new__(mtl.MultiTaskModel)
        c.__setstate__(old)
        assert np.array_equal(c.predict(X)["cls"], a.predict(X)["cls"])
        assert c.optimizer.kind == "adam" and c.optimizer.step_count == 0
        c.close()


# ---- the trainer's checkpoints and resume ----------------------------------------------------

def trainer_setup(seed, X, y, s, **keys):
    m = build(seed=seed)
    opt = mtl.Optimizer(m, "adam", lr=0.01)
    w = mtl.Weighting("dwa", 2)
    ds = mtl.Dataset(X, {"cls": y, "reg": s}, tasks=m)
    train, val, _ = ds.split(val=0.25, seed=1)
    keys.setdefault("batch_size", 16)
    tr = mtl.Trainer(m, opt, w, train=train, val=val, seed=3, **keys)
    return m, tr


def test_trainer_resume_is_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 6)).astype(np.float32)
    y = rng.integers(0, 3, 96).astype(np.int32)
    s = rng.normal(size=(96, 2)).astype(np.float32)
    pattern = str(tmp_path / "ck.epoch{epoch}")
    m, tr = trainer_setup(0, X, y, s, epochs=4, checkpoint_every=1, checkpoint_pattern=pattern,
                          checkpoint_path=str(tmp_path / "best.ckpt"))
    evals = []
    tr.run(lambda ev, e, st, v: evals.append((e, v["val.loss"])) if ev == "eval" else None)
    assert (tmp_path / "ck.epoch2").exists() and (tmp_path / "ck.epoch2.trainer").exists()
    assert (tmp_path / "best.ckpt").exists()
    ref = params(m)

    m2, tr2 = trainer_setup(5, X, y, s, epochs=4)
    tr2.resume(tmp_path / "ck.epoch2")
    assert tr2.epoch == 2 and tr2.step == 2 * tr2.steps_per_epoch
    evals2 = []
    assert tr2.run(lambda ev, e, st, v: evals2.append((e, v["val.loss"])) if ev == "eval"
                   else None) == "completed"
    assert evals2 == evals[2:]
    assert_same_params(params(m2), ref)
    # the best checkpoint holds the model of the best epoch
    best_epoch = min(evals, key=lambda t: t[1])[0]
    with mtl.MultiTaskModel.from_checkpoint(tmp_path / "best.ckpt") as best:
        assert best.optimizer.step_count == best_epoch * tr.steps_per_epoch
    with pytest.raises(mtl.MtlIOError):
        tr2.resume(tmp_path / "missing.ckpt")
    m3, tr3 = trainer_setup(5, X, y, s, epochs=4, batch_size=8)   # other steps per epoch
    with pytest.raises(mtl.StateError):
        tr3.resume(tmp_path / "ck.epoch2")
    assert tr3.epoch == 0
    for h in (tr3, m3, tr2, m2, tr, m):
        h.close()
