"""The library's evaluation and trainer from Python (mtl_evaluate, mtl_eval_result_*,
mtl_trainer_*): a synthetic problem learned to a stated accuracy, the progress callback
(stop by return value, exceptions stored and re-raised), keys, samplers, early stopping,
the metrics log, and fit(engine="c")."""

import ctypes
import gc
import json

import numpy as np
import pytest

import mtl
from mtl import _lib

from conftest import make_model

# Stated targets of the synthetic problem below (validation split, 25 epochs of Adam).
MIN_ACCURACY = 0.90
MIN_R2 = 0.90


def synthetic(n=800, d=10, seed=0):
    """Two tasks over one input: 3 classes from the argmax of fixed linear scores, and a
    regression target linear in the input plus small noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    W = rng.normal(size=(d, 3))
    y = np.argmax(X @ W, axis=1).astype(np.int32)
    s = (X @ rng.normal(size=(d, 1)) * 0.5 + 0.05 * rng.normal(size=(n, 1))).astype(np.float32)
    return X, y, s


def build(input_dim=10, classes=3, max_batch=64, seed=0):
    m = mtl.Model((input_dim,))
    m.trunk.add_layer("linear", out=32)
    m.trunk.add_layer("relu")
    m.add_head("cls", loss="cross_entropy", layers=[("linear", {"out": classes})])
    m.add_head("reg", loss="mse", layers=[("linear", {"out": 1})])
    return m.build(max_batch, seed)


@pytest.fixture
def problem():
    X, y, s = synthetic()
    m = build()
    opt = mtl.Optimizer(m, "adam", lr=0.01)
    w = mtl.Weighting("ew", 2)
    ds = mtl.Dataset(X, {"cls": y, "reg": s}, tasks=m)
    train, val, test = ds.split(val=0.2, test=0.1, seed=3)
    yield m, opt, w, train, val, test
    for h in (test, val, train, ds, w, opt, m):
        h.close()


def test_trainer_reaches_stated_accuracy(problem):
    m, opt, w, train, val, test = problem
    tr = mtl.Trainer(m, opt, w, train=train, val=val, epochs=25, batch_size=32, seed=1)
    assert tr.steps_per_epoch == 18 and tr.epoch == 0 and tr.stop_reason == ""
    assert tr.eval_result is None
    val_losses = []
    assert tr.run(lambda ev, e, s, v: val_losses.append(v["val.loss"]) if ev == "eval"
                  else None) == "completed"
    assert tr.epoch == 25 and tr.step == 25 * 18
    ev = tr.eval_result
    assert ev["val.cls.accuracy"] >= MIN_ACCURACY, ev
    assert ev["val.reg.r2"] >= MIN_R2, ev
    assert tr.eval_value("val.cls.accuracy") == ev["val.cls.accuracy"]
    with pytest.raises(mtl.NotFoundError):
        tr.eval_value("val.cls.nope")
    # the held-out test part, through mtl_evaluate
    res = mtl.evaluate(m, test, batch_size=64, prefix="test")
    assert res["test.cls.accuracy"] >= MIN_ACCURACY - 0.05 and res["test.reg.r2"] >= MIN_R2
    assert list(res)[:3] == ["test.loss", "test.cls.loss", "test.cls.accuracy"]
    assert res["test.loss"] == pytest.approx((res["test.cls.loss"] + res["test.reg.loss"]) / 2)
    # the library's numbers agree with numpy on the same predictions
    x, ys, _ = test.gather(np.arange(len(test)))
    out = {t: np.concatenate([m.predict(x[i:i + 64])[t] for i in range(0, len(x), 64)])
           for t in ("cls", "reg")}
    assert res["test.cls.accuracy"] == pytest.approx(np.mean(out["cls"].argmax(1) == ys[0]))
    assert res["test.reg.mse"] == pytest.approx(np.mean((out["reg"] - ys[1]) ** 2), rel=1e-5)
    value, epoch, step = tr.best()           # the monitored metric: val.loss
    assert value == min(val_losses) and epoch == int(np.argmin(val_losses)) + 1
    assert step == epoch * 18


def test_evaluate_forms_and_errors(problem):
    m, opt, w, train, val, test = problem
    whole = mtl.evaluate(m, val)                           # prefix "val", every head
    assert set(whole) >= {"val.loss", "val.cls.f1_macro", "val.reg.mae"}
    per_head = mtl.evaluate(m, [val, None], batch_size=16)  # reg skipped
    assert "val.cls.loss" in per_head and not any(k.startswith("val.reg") for k in per_head)
    assert per_head["val.cls.loss"] == pytest.approx(whole["val.cls.loss"], rel=1e-6)
    by_name = mtl.evaluate(m, {"reg": val}, metrics={"reg": ["r2"]})
    assert list(by_name) == ["val.loss", "val.reg.loss", "val.reg.r2"]
    chosen = mtl.evaluate(m, val, metrics={"cls": "accuracy,per_class"}, prefix="x")
    assert "x.cls.f1.2" in chosen and "x.reg.mse" in chosen
    with pytest.raises(mtl.NotFoundError, match="task 'cls': unknown metric 'nope'"):
        mtl.evaluate(m, val, metrics=["nope"])
    with pytest.raises(mtl.InvalidArgumentError, match="batch_size is 100, expected 1..64"):
        mtl.evaluate(m, val, batch_size=100)
    with pytest.raises(mtl.InvalidArgumentError, match="3 datasets for 2 heads"):
        mtl.evaluate(m, [val, val, val])
    with pytest.raises(mtl.NotFoundError, match="unknown task"):
        mtl.evaluate(m, {"age": val})
    with pytest.raises(mtl.InvalidArgumentError, match="expected mtl.Dataset"):
        mtl.evaluate(m, [val, np.zeros(3)])
    with pytest.raises(mtl.InvalidArgumentError, match="expected an mtl.Model"):
        mtl.evaluate("model", val)
    swapped = mtl.Dataset(np.zeros((4, 10), np.float32), tasks=["reg", "cls"])
    with pytest.raises(mtl.InvalidArgumentError, match=r"slots \['reg', 'cls'\] are not the "
                                                       "model's heads"):
        mtl.evaluate(m, swapped)
    wrong = mtl.Dataset(np.zeros((4, 7), np.float32), num_tasks=2)
    wrong.set_target(0, np.zeros(4, np.int32))
    with pytest.raises(mtl.ShapeError):
        mtl.evaluate(m, wrong)


def test_eval_result_raw_calls(problem):
    m, opt, w, train, val, test = problem
    out = ctypes.c_void_p()
    arr = (ctypes.c_void_p * 1)(val._ptr)
    _lib.C.mtl_evaluate(ctypes.byref(out), m._ptr, arr, 1, 16, None, None)
    try:
        n = _lib.C.mtl_eval_result_count(out.value)
        assert n > 3 and _lib.C.mtl_eval_result_name(out.value, 0) == b"val.loss"
        assert _lib.C.mtl_eval_result_name(out.value, n) is None
        assert np.isnan(_lib.C.mtl_eval_result_value(out.value, n))
        v = ctypes.c_double()
        _lib.C.mtl_eval_result_get(out.value, b"val.cls.loss", ctypes.byref(v))
        assert v.value == _lib.C.mtl_eval_result_value(out.value, 1)
        with pytest.raises(mtl.NotFoundError):
            _lib.C.mtl_eval_result_get(out.value, b"val.nope", ctypes.byref(v))
    finally:
        _lib.C.mtl_eval_result_free(out.value)
    assert _lib.C.mtl_eval_result_count(None) == 0
    _lib.C.mtl_eval_result_free(None)


def test_progress_callback_events(problem):
    m, opt, w, train, val, test = problem
    events = []

    def progress(event, epoch, step, values):
        events.append((event, epoch, step, dict(values)))

    tr = mtl.Trainer(m, opt, w, train=train, val=val, epochs=2, batch_size=32,
                     callback=progress)
    assert tr.run() == "completed"
    kinds = [e[0] for e in events]
    assert kinds.count("step") == 36 and kinds.count("epoch") == 2 and kinds.count("eval") == 2
    assert kinds[17:20] == ["step", "epoch", "eval"]
    ev, epoch, step, values = events[0]
    assert (ev, epoch, step) == ("step", 1, 1)
    assert list(values) == ["samples", "lr", "cls.loss", "reg.loss"]
    assert values["samples"] == 32 and values["lr"] == pytest.approx(0.01)
    ev, epoch, step, values = events[18]
    assert (ev, epoch, step) == ("epoch", 1, 18) and values["samples"] == len(train)
    steps = [e[3]["cls.loss"] for e in events[:18]]
    assert values["cls.loss"] == pytest.approx(np.mean(steps))
    ev, epoch, step, values = events[-1]
    assert ev == "eval" and epoch == 2 and values == tr.eval_result


@pytest.mark.parametrize("stop_value", [True, 1, 7, np.int64(2)])
def test_callback_return_value_stops(problem, stop_value):
    m, opt, w, train, val, test = problem
    seen = []

    def progress(event, epoch, step, values):
        seen.append(step)
        if event == "step" and step == 5:
            return stop_value
        return False if step % 2 else None      # falsy results continue

    tr = mtl.Trainer(m, opt, w, train=train, epochs=3, batch_size=32)
    assert tr.run(progress) == "callback"
    assert tr.stop_reason == "callback" and tr.step == 5 and seen[-1] == 5
    # the position is kept: a new run continues to the end
    assert tr.run() == "completed" and tr.step == 3 * 18


def test_exception_in_callback_is_reraised_after_run(problem):
    m, opt, w, train, val, test = problem

    class Boom(Exception):
        pass

    calls = []

    def progress(event, epoch, step, values):
        calls.append(event)
        if step == 3:
            raise Boom("bad step 3")

    tr = mtl.Trainer(m, opt, w, train=train, epochs=2, batch_size=32)
    with pytest.raises(Boom, match="bad step 3"):
        tr.run(progress)
    assert tr.stop_reason == "callback" and tr.step == 3 and len(calls) == 3
    gc.collect()
    # the trainer is still usable, and the failed callback is gone
    assert tr.run() == "completed" and tr.epoch == 2
    tr.set(epochs=3)
    with pytest.raises(KeyError):
        tr.run(lambda *a: {}["missing"])
    assert tr.step == 2 * 18 + 1


def test_keys(problem):
    m, opt, w, train, val, test = problem
    tr = mtl.Trainer(m, opt, w, epochs=4, batch_size=16, temperature=3.5,
                     early_stopping_metric="val.cls.accuracy", shuffle=False,
                     metrics={"cls": ["accuracy", "f1_macro"], "reg": "r2"})
    assert tr.get("epochs") == 4 and tr.get("temperature") == 3.5
    assert tr.get("early_stopping_metric") == "val.cls.accuracy" and tr.get("shuffle") == 0
    assert tr.get_double("epochs") == 4.0
    keys = mtl.Trainer.keys()
    assert {"epochs", "batch_size", "sampler", "log_path", "checkpoint_path"} <= set(keys)
    opts = tr.options()
    assert set(opts) == set(keys) and opts["sampler"] == "all"
    tr.set_int("epochs", 5)
    tr.set_double("temperature", 1.5)
    tr.set_string("sampler", "uniform")
    tr.set(epochs=6.0, log_path=None)      # an integral float is accepted for an int key
    assert tr.get_int("epochs") == 6 and tr.get_string("sampler") == "uniform"
    with pytest.raises(mtl.InvalidArgumentError, match="unknown key 'epochz'"):
        tr.set(epochz=3)
    with pytest.raises(mtl.RangeError, match="epochs = 0 is out of range"):
        tr.set(epochs=0)
    with pytest.raises(mtl.InvalidArgumentError, match="key 'epochs' takes an integer, got "
                                                       "4.5"):
        tr.set(epochs=4.5)
    with pytest.raises(mtl.InvalidArgumentError, match="sampler 'random' is unknown"):
        tr.set(sampler="random")
    with pytest.raises(mtl.RangeError, match="temperature = 0 is out of range"):
        tr.set(temperature=0.0)
    with pytest.raises(mtl.InvalidArgumentError, match="key 'epochs' is not a string key"):
        tr.get_string("epochs")
    with pytest.raises(mtl.InvalidArgumentError, match="key 'temperature' is not an integer"):
        tr.get_int("temperature")
    with pytest.raises(mtl.InvalidArgumentError, match="a dict {task: \\[metric names\\]}"):
        tr.set(metrics=["accuracy"])
    with pytest.raises(mtl.InvalidArgumentError, match="unsupported type"):
        tr.set(epochs=object())


def test_metrics_keys_change_the_evaluation(problem):
    m, opt, w, train, val, test = problem
    tr = mtl.Trainer(m, opt, w, train=train, val=val, epochs=1, batch_size=32,
                     metrics={"cls": ["accuracy"], "reg": "mae"})
    tr.run()
    names = [n for n in tr.eval_result if n.startswith("val.")]
    assert names == ["val.loss", "val.cls.loss", "val.cls.accuracy", "val.reg.loss",
                     "val.reg.mae"]


def test_errors_of_creation_data_and_run(problem):
    m, opt, w, train, val, test = problem
    with pytest.raises(mtl.ShapeError, match="the weighting is for 3 tasks, the model has 2"):
        mtl.Trainer(m, opt, mtl.Weighting("ew", 3))
    unbuilt = mtl.Model(10)
    unbuilt.trunk.add_linear(2)
    unbuilt.add_head("a")
    with pytest.raises(mtl.StateError, match="the model is not built"):
        mtl.Trainer(unbuilt, opt)
    with pytest.raises(mtl.StateError, match="an optimizer is needed"):
        mtl.Trainer(m)
    tr = mtl.Trainer(m, opt, w)
    with pytest.raises(mtl.StateError, match="no training data"):
        tr.run()
    with pytest.raises(mtl.StateError, match="no data is set"):
        tr.evaluate()
    with pytest.raises(mtl.StateError, match="no evaluation has produced a value"):
        tr.best()
    three = mtl.Dataset(np.zeros((8, 10), np.float32), num_tasks=3)
    with pytest.raises(mtl.ShapeError, match="the train dataset has 3 task slots, the model "
                                             "has 2 heads"):
        tr.set_data(three)
    narrow = mtl.Dataset(np.zeros((8, 5), np.float32), num_tasks=2)
    with pytest.raises(mtl.ShapeError, match="dimension 1 is 5, the model expects 10"):
        tr.set_data(narrow)
    with pytest.raises(mtl.NotFoundError, match="the model has no head 'nope'"):
        tr.set_task_data("nope", train)
    with pytest.raises(mtl.InvalidArgumentError, match="val data without train data"):
        mtl.Trainer(m, opt, val=val)
    with pytest.raises(mtl.InvalidArgumentError, match="expected an mtl.Dataset"):
        tr._keep(np.zeros(3))
    tr.set_data(train).set(batch_size=128)
    with pytest.raises(mtl.ShapeError, match="batch_size 128 exceeds the model's max_batch "
                                             "64"):
        tr.run()
    tr.set(batch_size=32, early_stopping_metric="val.zzz")
    with pytest.raises(mtl.NotFoundError, match="early_stopping_metric 'val.zzz' is not "
                                                "among"):
        tr.run()


def test_trainer_evaluate_and_keeps_handles_alive(problem):
    m, opt, w, train, val, test = problem
    X, y, s = synthetic(n=64, seed=5)
    m2 = build(seed=2)
    opt2 = mtl.Optimizer(m2, "sgd", lr=0.05)
    tr = mtl.Trainer(m2, opt2, None, train=mtl.Dataset(X, {"cls": y, "reg": s}, tasks=m2),
                     epochs=2, batch_size=32)
    # the Python objects may go: the trainer keeps model, optimizer and data alive
    m2.close()
    opt2.close()
    del m2, opt2
    gc.collect()
    ev = tr.evaluate()
    assert set(ev) == {"train.loss", "train.cls.loss", "train.reg.loss"}
    assert np.isnan(ev["train.loss"])            # no step yet
    assert tr.run() == "completed" and tr.eval_result["train.loss"] > 0
    tr.close()
    tr.close()
    with pytest.raises(mtl.StateError, match="closed"):
        tr.run()


def test_early_stopping_and_best(problem):
    m, opt, w, train, val, test = problem
    tr = mtl.Trainer(m, opt, w, train=train, val=val, epochs=200, batch_size=32,
                     early_stopping_patience=2, early_stopping_min_delta=1e9)
    assert tr.run() == "early_stopping"
    # nothing can improve by 1e9 after the first evaluation: stop after 1 + 2 of them
    assert tr.epoch == 3
    value, epoch, step = tr.best()
    assert epoch == 1 and step == 18


def test_multi_input_samplers(rng):
    X1 = rng.normal(size=(48, 6)).astype(np.float32)
    X2 = rng.normal(size=(24, 6)).astype(np.float32)
    d1 = mtl.Dataset(X1, [(X1[:, 0] > 0).astype(np.int32)])        # one slot each
    d2 = mtl.Dataset(X2, {"reg": X2[:, :2].copy()}, tasks=["cls", "reg"])
    with make_model(max_batch=8) as m, mtl.Optimizer(m, "adam", lr=0.01) as opt:
        tr = mtl.Trainer(m, opt, task_data={"cls": d1, "reg": (d2, d2)}, batch_size=8,
                         epochs=2, sampler="round_robin")
        assert tr.steps_per_epoch == 6 + 3
        trained = []
        tr.run(lambda ev, e, s, v: trained.append(
            [t for t in ("cls.loss", "reg.loss") if not np.isnan(v[t])]) if ev == "step"
            else None)
        assert trained[:3] == [["cls.loss"], ["reg.loss"], ["cls.loss"]]
        assert tr.stop_reason == "completed" and "val.reg.loss" in tr.eval_result
        tr.set_task_data("reg", None)          # removes the task's data
        tr.set(sampler="all", epochs=3)
        tr.run()
        assert "val.reg.loss" not in tr.eval_result
        tr2 = mtl.Trainer(m, opt, batch_size=8,
                          train=mtl.Dataset(X1, [(X1[:, 0] > 0).astype(np.int32), None]))
        with pytest.raises(mtl.StateError):
            tr2.set_task_data("cls", d1)
        tr.close()
        tr2.close()


def test_metrics_log(problem, tmp_path):
    m, opt, w, train, val, test = problem
    log = tmp_path / "log.jsonl"
    tr = mtl.Trainer(m, opt, w, train=train, val=val, epochs=2, batch_size=32,
                     log_path=str(log))
    tr.run()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines[-1]["step"] == 36
    assert set(lines[0]["train"]) == {"cls", "reg"} and "cls.accuracy" in lines[0]["val"]
    tr.set(log_path=str(tmp_path / "no" / "such" / "dir.jsonl"), epochs=3)
    with pytest.raises(mtl.MtlIOError, match="cannot open the log"):
        tr.run()


# ---- MultiTaskModel.fit(engine="c") -----------------------------------------------------

def make_mtm(seed=0):
    return mtl.MultiTaskModel(
        input_shape=(10,), trunk=[("linear", {"out": 32}), "relu"],
        heads={"cls": {"layers": [("linear", {"out": 3})], "loss": "cross_entropy"},
               "reg": {"layers": [("linear", {"out": 1})], "loss": "mse"}},
        seed=seed, max_batch=64)


def test_fit_with_the_c_engine():
    X, y, s = synthetic()
    with make_mtm() as model:
        model.compile(optimizer="adam", lr=0.01, weighting="dwa")
        logs = []
        h = model.fit(X[:640], {"cls": y[:640], "reg": s[:640]}, epochs=25, batch_size=32,
                      validation_data=(X[640:], {"cls": y[640:], "reg": s[640:]}),
                      engine="c", callback=lambda e, lg: logs.append((e, lg)))
        assert [e for e, _ in logs] == list(range(25))
        for key in ("loss", "lr", "cls_loss", "reg_loss", "cls_weight", "reg_weight",
                    "val_cls_loss", "val_cls_accuracy", "val_reg_r2", "val_loss"):
            assert len(h[key]) == 25, key
        assert h["val_loss"][-1] == pytest.approx(h["val_cls_loss"][-1] + h["val_reg_loss"][-1])
        assert h["val_cls_accuracy"][-1] >= MIN_ACCURACY and h["val_reg_r2"][-1] >= MIN_R2
        assert h["loss"][-1] < h["loss"][0]
        assert model.history is h and logs[-1][1]["val_cls_accuracy"] == h[
            "val_cls_accuracy"][-1]
        # the library's evaluation agrees with the Python one on the validation data
        py = model.evaluate(X[640:], {"cls": y[640:], "reg": s[640:]})
        assert py["cls"]["accuracy"] == pytest.approx(h["val_cls_accuracy"][-1])
        assert py["reg"]["loss"] == pytest.approx(h["val_reg_loss"][-1], rel=1e-4)


def test_fit_c_engine_stops_masks_and_errors(tmp_path):
    X, y, s = synthetic(n=200)
    with make_mtm() as model:
        model.compile(optimizer="sgd", lr=0.05)
        ylab = y.astype(np.float64)
        ylab[:50] = np.nan                                   # missing labels
        h = model.fit(X, {"cls": ylab, "reg": s}, masks={"reg": np.arange(200) % 2},
                      epochs=5, batch_size=50, engine="c", log_path=tmp_path / "m.jsonl",
                      callback=lambda e, lg: e < 1)          # False after the 2nd epoch
        assert len(h["loss"]) == 2
        lines = (tmp_path / "m.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
        only_cls = model.fit(X, {"cls": y}, epochs=1, batch_size=50, engine="c")
        assert np.isnan(only_cls["reg_loss"][0]) and only_cls["cls_loss"][0] > 0
        with pytest.raises(mtl.InvalidArgumentError, match="engine is 'torch'"):
            model.fit(X, {"cls": y}, engine="torch")

        def bad(epoch, logs):
            raise RuntimeError("stop here")

        with pytest.raises(RuntimeError, match="stop here"):
            model.fit(X, {"cls": y}, epochs=3, batch_size=50, engine="c", callback=bad)
    with make_mtm() as fresh:
        with pytest.raises(mtl.StateError, match="compile"):
            fresh.fit(X, {"cls": y}, engine="c")

