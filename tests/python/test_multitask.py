"""The Pythonic layer: MultiTaskModel."""

import copy
import pickle

import numpy as np
import pytest

import mtl


def data(rng, n=400, d=10):
    X = rng.normal(size=(n, d)).astype(np.float32)
    digit = ((X[:, 0] > 0).astype(int) + (X[:, 1] > 0)).astype(np.int64)   # 3 classes
    value = (X[:, 2:3] * 1.5 - X[:, 3:4]).astype(np.float64)               # [n, 1]
    return X, {"digit": digit, "value": value}


def build(d=10, **kw):
    args = dict(input_shape=(d,),
                trunk=[("linear", {"out": 32}), "relu", {"type": "linear", "out": 32}, ("relu",)],
                heads={"digit": {"layers": [("linear", {"out": 3})], "loss": "cross_entropy"},
                       "value": {"layers": [("linear", {"out": 1})], "loss": "mse"}},
                seed=0, max_batch=64)
    args.update(kw)
    return mtl.MultiTaskModel(**args)


def test_fit_evaluate_predict(rng):
    X, Y = data(rng)
    with build() as m:
        m.compile(optimizer="adam", lr=1e-2, weighting="ew")
        before = m.evaluate(X, Y)
        seen = []
        hist = m.fit(X, Y, epochs=8, batch_size=32, seed=1,
                     validation_data=(X[:100], {k: v[:100] for k, v in Y.items()}),
                     callback=lambda e, logs: seen.append((e, logs["loss"])))
        after = m.evaluate(X, Y)
        assert [e for e, _ in seen] == list(range(8))
        for k in ("loss", "lr", "digit_loss", "value_loss", "digit_weight", "value_weight",
                  "val_digit_loss", "val_digit_accuracy", "val_value_mse", "val_loss"):
            assert len(hist[k]) == 8, k
        assert hist["loss"][-1] < hist["loss"][0]
        assert hist is m.history
        assert after["digit"]["loss"] < before["digit"]["loss"]
        assert after["digit"]["accuracy"] > 0.8
        assert after["value"]["mse"] < 0.2 and after["value"]["loss"] == pytest.approx(
            after["value"]["mse"], rel=1e-4)
        assert set(after["value"]) == {"loss", "mse", "mae"}
        out = m.predict(X[:70], batch_size=64)      # two batches
        assert out["digit"].shape == (70, 3) and out["value"].shape == (70, 1)
        probs = m.predict(X[:70], probabilities=True)["digit"]
        assert np.allclose(probs.sum(1), 1, atol=1e-5)
        cls = m.predict_classes(X[:70])
        assert np.array_equal(cls["digit"], out["digit"].argmax(1))
        losses = m.train_step(X[:16], {"digit": Y["digit"][:16]})
        assert np.isnan(losses["value"]) and losses["digit"] > 0
        assert "MultiTaskModel" in m.summary() and "heads.digit.0.weight" in m.summary()
        assert m.num_params > 0 and "digit" in repr(m)


def test_fit_is_deterministic(rng):
    X, Y = data(rng, n=200)
    res = []
    for _ in range(2):
        with build() as m:
            m.compile("sgd", lr=0.05, momentum=0.9)
            res.append(m.fit(X, Y, epochs=2, batch_size=50, seed=3)["loss"])
    assert res[0] == res[1]


def test_callback_stop_and_exception_propagates(rng):
    X, Y = data(rng, n=100)
    with build() as m:
        m.compile("adam")
        hist = m.fit(X, Y, epochs=10, callback=lambda e, logs: e < 2)
        assert len(hist["loss"]) == 3

        class Boom(Exception):
            pass

        def cb(epoch, logs):
            raise Boom(f"stop at {epoch}")

        with pytest.raises(Boom, match="stop at 0"):
            m.fit(X, Y, epochs=3, callback=cb)
        m.fit(X, Y, epochs=1)   # still usable afterwards


def test_missing_labels_and_masks(rng):
    X, Y = data(rng, n=128)
    d = Y["digit"].astype(np.float64)
    d[::2] = np.nan                                  # NaN -> missing class id
    v = Y["value"].copy()
    v[1::2] = np.nan
    with build() as m:
        m.compile("adam")
        m.fit(X, {"digit": d, "value": v}, epochs=1, batch_size=32)
        full = m.evaluate(X[1::2], {"digit": Y["digit"][1::2]})
        part = m.evaluate(X, {"digit": d})
        assert set(part) == {"digit"}
        assert part["digit"]["loss"] == pytest.approx(full["digit"]["loss"], rel=1e-5)
        assert part["digit"]["accuracy"] == pytest.approx(full["digit"]["accuracy"])
        mask = np.zeros(128, np.float32)
        mask[:64] = 1
        mres = m.evaluate(X, Y, masks={"value": mask})
        ref = m.evaluate(X[:64], {"value": Y["value"][:64]})
        assert mres["value"]["loss"] == pytest.approx(ref["value"]["loss"], rel=1e-5)
        assert mres["value"]["mse"] == pytest.approx(ref["value"]["mse"], rel=1e-5)
        m.fit(X, Y, epochs=1, masks={"value": mask})


def test_bad_input_errors(rng):
    X, Y = data(rng, n=50)
    with build() as m:
        with pytest.raises(mtl.StateError, match="compile"):
            m.fit(X, Y)
        m.compile("adam")
        with pytest.raises(mtl.ShapeError, match=r"expected \(N, 10\)"):
            m.fit(X[:, :5], Y)
        with pytest.raises(mtl.ShapeError, match="batch dimension"):
            m.predict(X[0])
        with pytest.raises(mtl.NotFoundError, match="unknown task"):
            m.fit(X, {"nope": Y["digit"]})
        with pytest.raises(mtl.ShapeError, match="49 rows"):
            m.fit(X, {"digit": Y["digit"][:49]})
        with pytest.raises(mtl.InvalidArgumentError, match="must be class ids"):
            m.fit(X, {"digit": Y["digit"] + 0.5})
        with pytest.raises(mtl.InvalidArgumentError, match="batch_size is 65"):
            m.fit(X, Y, batch_size=65)
        with pytest.raises(mtl.InvalidArgumentError, match="dict by task name"):
            m.fit(X, Y["digit"])
        with pytest.raises(mtl.InvalidArgumentError, match="mask but no target"):
            m.fit(X, {"digit": Y["digit"]}, masks={"value": np.ones(50)})
        with pytest.raises(mtl.MtlError, match="digit"):
            m.fit(X, {"digit": np.full(50, 3)})             # class id out of range
        with pytest.raises(mtl.MtlError):
            m.compile("adam", nosuchkey=1)
    with pytest.raises(mtl.InvalidArgumentError, match="at least one head"):
        mtl.MultiTaskModel((3,), [], {})
    with pytest.raises(mtl.InvalidArgumentError, match="cannot read layer spec"):
        mtl.MultiTaskModel((3,), [42], {"a": {}})
    with pytest.raises(mtl.InvalidArgumentError, match="unknown key"):
        mtl.MultiTaskModel((3,), [], {"a": {"loss": "mse", "lyers": []}})
    with pytest.raises(mtl.MtlError, match="nosuchlayer"):
        mtl.MultiTaskModel((3,), ["nosuchlayer"], {"a": {}})


def test_params_state_dict_and_compile_options(rng):
    with build() as m:
        assert m.param_names()[0] == "trunk.0.weight"
        w = m.get_param("trunk.0.weight")
        m.set_param("trunk.0.weight", w * 2)
        assert np.allclose(m.get_param("trunk.0.weight"), w * 2)
        sd = m.state_dict()
        with build(seed=9) as m2:
            assert not np.array_equal(m2.get_param("trunk.0.weight"), sd["trunk.0.weight"])
            m2.load_state_dict(sd)
            assert np.array_equal(m2.get_param("trunk.0.weight"), sd["trunk.0.weight"])
        m.compile(optimizer="sgd", lr=0.1, momentum=0.9, weighting="fixed",
                  weighting_options={"weights": [1.0, 0.25]}, lr_scales={"trunk": 0.5})
        X, Y = data(rng, n=64)
        hist = m.fit(X, Y, epochs=1)
        assert hist["value_weight"] == [0.25]
        assert m.optimizer.get("momentum") == pytest.approx(0.9)
        opt = mtl.Optimizer(m.model, "adam")
        m.compile(optimizer=opt, weighting=None)
        assert m.optimizer is opt and m.weighting is None
        m.fit(X, Y, epochs=1)


def test_save_load_npz_and_pickle(rng, tmp_path):
    X, Y = data(rng, n=64)
    with build(l2_trunk=1e-4) as m:
        m.compile("adam", lr=3e-3, weighting="ew", weighting_options={"reduction": "mean"})
        m.fit(X, Y, epochs=1)
        ref = m.predict(X)
        p = tmp_path / "model.npz"
        m.save(p)
        assert not (tmp_path / "model.npz.tmp").exists()
        m2 = mtl.MultiTaskModel.load(p)
        assert m2.optimizer is not None and m2.optimizer.lr == pytest.approx(3e-3)
        assert m2.config == m.config
        for t in ref:
            assert np.array_equal(m2.predict(X)[t], ref[t])
        m2.close()
        with build(seed=5) as m3:
            m3.load_weights(p)
            assert np.array_equal(m3.predict(X)["digit"], ref["digit"])
        m4 = pickle.loads(pickle.dumps(m))
        assert np.array_equal(m4.predict(X)["value"], ref["value"])
        assert m4.history == m.history
        m4.fit(X, Y, epochs=1)
        m5 = copy.deepcopy(m)
        assert np.array_equal(m5.predict(X)["digit"], ref["digit"])
        m4.close()
        m5.close()
    with pytest.raises(mtl.MtlIOError):
        mtl.MultiTaskModel.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(mtl.FormatError):
        mtl.MultiTaskModel.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(mtl.FormatError, match="not an mtl checkpoint"):
        mtl.MultiTaskModel.load(tmp_path / "other.npz")


def test_from_yaml_config(tmp_path, rng):
    # the library's configuration schema (docs/config.md), parsed by the library
    cfg = tmp_path / "model.yaml"
    cfg.write_text("""
model:
  input: {shape: [10]}
  trunk:
    - {kind: linear, out: 16}
    - relu
    - {kind: dropout, p: 0.1}
tasks:
  digit:
    kind: classification
    classes: 3
    loss: {name: cross_entropy, label_smoothing: 0.05, class_weights: [1.0, 1.0, 2.0]}
  value:
    kind: regression
    outputs: 1
    loss: huber
optimizer: {kind: adamw, lr: 0.003, weight_decay: 0.01}
weighting: {method: ew, reduction: mean}
training: {seed: 4, batch_size: 32}
""")
    with mtl.MultiTaskModel.from_config(str(cfg)) as m:
        assert m.losses == {"digit": "cross_entropy", "value": "huber"}
        assert m.optimizer.kind == "adamw" and m.optimizer.get("weight_decay") == 0.01
        assert m.weighting.method == "ew" and m.weighting.get("reduction") == "mean"
        assert m.max_batch == 32 and m.config["seed"] == 4
        assert m.config["trunk"] == [["linear", {"out": 16}], ["relu", {}],
                                     ["dropout", {"p": 0.1}]]
        assert m.config["heads"]["digit"]["loss_options"] == {"label_smoothing": 0.05}
        assert m.source_config.get("tasks.digit.loss.class_weights.2") == 2.0
        X, Y = data(rng, n=64)
        m.fit(X, Y, epochs=1, batch_size=32)
    # the file of the constructor's keys is not the library's schema
    old = tmp_path / "old.yaml"
    old.write_text("input_shape: [10]\nheads: {a: {loss: mse}}\n")
    with pytest.raises(mtl.InvalidArgumentError, match="unknown key 'input_shape'"):
        mtl.MultiTaskModel.from_config(old)


def test_bce_head_accuracy(rng):
    X = rng.normal(size=(64, 4)).astype(np.float32)
    Y = (X[:, :2] > 0).astype(np.float32)
    with mtl.MultiTaskModel((4,), [("linear", {"out": 8}), "tanh"],
                            {"tags": {"layers": [("linear", {"out": 2})], "loss": "bce"}},
                            max_batch=64) as m:
        m.compile("adam", lr=0.05)
        m.fit(X, Y, epochs=30, batch_size=64)
        res = m.evaluate(X, Y)
        assert res["tags"]["accuracy"] > 0.9
        assert m.predict_classes(X)["tags"].shape == (64, 2)


def test_evaluate_with_library_metrics(rng):
    skm = pytest.importorskip("sklearn.metrics")
    X, Y = data(rng, n=120)
    with build() as m:
        m.compile("adam", lr=1e-2)
        m.fit(X, Y, epochs=3)
        res = m.evaluate(X, Y, metrics=["f1_macro", "accuracy", "r2", "rmse"])
        out = m.predict(X)
        pred = out["digit"].argmax(1)
        assert res["digit"]["f1_macro"] == pytest.approx(
            skm.f1_score(Y["digit"], pred, average="macro"))
        assert res["digit"]["accuracy"] == pytest.approx(skm.accuracy_score(Y["digit"], pred))
        assert "r2" not in res["digit"] and "f1_macro" not in res["value"]
        assert res["value"]["r2"] == pytest.approx(skm.r2_score(Y["value"], out["value"]),
                                                   rel=1e-4)
        assert res["value"]["rmse"] == pytest.approx(np.sqrt(res["value"]["mse"]), rel=1e-4)
        mask = (np.arange(120) < 60).astype(np.float32)
        res = m.evaluate(X, Y, masks={"digit": mask, "value": mask},
                         metrics={"digit": ["f1_weighted"], "value": ["mae"]})
        assert res["digit"]["f1_weighted"] == pytest.approx(
            skm.f1_score(Y["digit"][:60], pred[:60], average="weighted"))
        assert res["value"]["mae"] == pytest.approx(res["value"]["mae"])
        with pytest.raises(mtl.InvalidArgumentError, match="classification metric"):
            m.evaluate(X, Y, metrics={"value": ["f1_macro"]})


def test_bce_metrics(rng):
    skm = pytest.importorskip("sklearn.metrics")
    X = rng.normal(size=(80, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32).reshape(-1, 1)
    with mtl.MultiTaskModel((4,), [("linear", {"out": 8}), "relu"],
                            {"b": {"layers": [("linear", {"out": 1})], "loss": "bce"},
                             "m": {"layers": [("linear", {"out": 2})], "loss": "bce"}},
                            max_batch=80) as m:
        m.compile("adam", lr=0.05)
        m.fit(X, {"b": y}, epochs=20, batch_size=80)
        res = m.evaluate(X, {"b": y}, metrics=["roc_auc", "f1"])
        logits = m.predict(X)["b"][:, 0]
        assert res["b"]["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, 0], logits))
        assert res["b"]["f1"] == pytest.approx(skm.f1_score(y[:, 0], logits > 0))
        with pytest.raises(mtl.UnsupportedError, match="multi-label"):
            m.evaluate(X, {"m": np.hstack([y, y])}, metrics=["f1"])
