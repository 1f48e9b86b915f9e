"""Data loading (npy, CSV, encoders) and metrics through the bindings; metrics checked
against scikit-learn."""

import gc

import numpy as np
import pytest

import mtl
from mtl import data, metrics

CSV = """age,workclass,hours,income
39,State-gov,40,<=50K
50,Self-emp,13,>50K
38,Private,?,<=50K
53,Private,40,>50K
28,?,40,<=50K
"""


def test_npy_roundtrip_with_numpy(tmp_path, calls):
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.save(tmp_path / "a.npy", a)
    got = data.load_npy(tmp_path / "a.npy")
    assert got.dtype == np.float32 and got.shape == (3, 4)
    assert np.allclose(got, a.astype(np.float32))
    ids = np.array([[1, -2], [3, 4]], dtype=np.int64)
    np.save(tmp_path / "i.npy", ids)
    assert np.array_equal(data.load_npy(str(tmp_path / "i.npy")), ids)
    data.save_npy(tmp_path / "b.npy", got)
    assert np.array_equal(np.load(tmp_path / "b.npy"), got)
    frees = calls["mtl_tensor_free"]
    del got
    gc.collect()
    assert calls["mtl_tensor_free"] == frees + 1    # the loaded tensor lived in the view
    with pytest.raises(mtl.MtlIOError, match="missing.npy"):
        data.load_npy(tmp_path / "missing.npy")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(mtl.FormatError):
        data.load_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((2, 3))))
    with pytest.raises(mtl.UnsupportedError, match="fortran"):
        data.load_npy(tmp_path / "f.npy")


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(CSV)
    with data.CsvTable.read(p, na_values="?") as t:
        yield t


def test_csv_table(table, tmp_path):
    assert table.num_rows == 5 and len(table) == 5 and table.num_cols == 4
    assert table.columns == ["age", "workclass", "hours", "income"]
    assert table.col_index("hours") == 2
    assert table.is_numeric("age") and table.is_numeric(2) and not table.is_numeric("income")
    assert table.field(1, "workclass") == "Self-emp"
    assert table.field(2, "hours") is None                # "?" is missing
    num = table.numeric(["age", "hours"])
    assert num.shape == (5, 2) and np.isnan(num[2, 1]) and num[0, 0] == 39
    std = table.numeric([0], standardize=True)
    assert abs(float(std.mean())) < 1e-6
    with pytest.raises(mtl.NotFoundError, match="nope"):
        table.col_index("nope")
    with pytest.raises(mtl.MtlError):
        table.col_name(9)
    with pytest.raises(mtl.MtlError):
        table.is_numeric(9)
    with pytest.raises(mtl.RangeError):
        table.field(5, 0)
    with pytest.raises(mtl.FormatError, match="income"):
        table.numeric(["income"])
    assert "rows=5" in repr(table)
    # options object, no header, other delimiter
    p = tmp_path / "semi.csv"
    p.write_text("# comment\n1;2\n3;4\n")
    with data.CsvOptions(header=0, delimiter=";", comment="#") as opts:
        opts.set_int("trim", 1)
        opts.set_string("na_values", "NA")
        with data.CsvTable.read(p, opts) as t2:
            assert t2.columns == ["c0", "c1"] and t2.numeric().tolist() == [[1, 2], [3, 4]]
    with pytest.raises(mtl.MtlError, match="nosuchkey"):
        data.CsvOptions(nosuchkey=1)
    with pytest.raises(mtl.MtlIOError):
        data.CsvTable.read(tmp_path / "missing.csv")
    (tmp_path / "ragged.csv").write_text("a,b\n1\n")
    with pytest.raises(mtl.FormatError):
        data.CsvTable.read(tmp_path / "ragged.csv")


def test_encoder(table, tmp_path):
    enc = data.Encoder()
    enc.add_numeric(table, "age").add_onehot(table, "workclass").add_label(table, "income")
    enc.add_ids(table, "workclass")
    enc.add_numeric(table, "hours", standardize=False)
    assert enc.num_features == 1 + 3 + 1 and enc.num_labels == 1 and enc.num_id_columns == 1
    assert enc.num_classes(0) == 2 and enc.class_names(0) == ["<=50K", ">50K"]
    assert enc.num_ids(0) == 4
    X = enc.transform(table)
    assert X.shape == (5, 5) and X.dtype == np.float32
    assert np.array_equal(X[4, 1:4], [0, 0, 0])          # missing category: all zeros
    assert X[2, 4] == pytest.approx(np.mean([40, 13, 40, 40]))   # missing -> fitted mean
    y = enc.transform_label(table, 0)
    assert y.tolist() == [0, 1, 0, 1, 0]
    ids = enc.transform_ids(table, 0)
    assert ids[4] == 0 and set(ids[:4]) <= {1, 2, 3}
    with pytest.raises(mtl.MtlError):
        enc.num_classes(3)
    with pytest.raises(mtl.MtlError):
        enc.num_ids(2)
    enc.save(tmp_path / "enc.bin")
    with data.Encoder.load(tmp_path / "enc.bin") as e2:
        assert np.array_equal(e2.transform(table), X)
        assert "features=5" in repr(e2)
    (tmp_path / "bad.bin").write_bytes(b"nope")
    with pytest.raises(mtl.MtlError):
        data.Encoder.load(tmp_path / "bad.bin")
    with pytest.raises(mtl.MtlError, match="income"):
        enc.add_numeric(table, "income")
    enc.close()


def test_classification_metrics_match_sklearn(rng):
    skm = pytest.importorskip("sklearn.metrics")
    labels = rng.integers(0, 4, 200)
    scores = rng.normal(size=(200, 4)).astype(np.float32)
    scores[np.arange(200), labels] += 1.0
    pred = scores.argmax(1)
    assert metrics.accuracy(pred, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    assert metrics.accuracy(scores, labels) == pytest.approx(skm.accuracy_score(labels, pred))
    for avg in ("macro", "micro", "weighted"):
        assert metrics.precision(pred, labels, avg) == pytest.approx(
            skm.precision_score(labels, pred, average=avg, zero_division=0))
        assert metrics.recall(pred, labels, avg) == pytest.approx(
            skm.recall_score(labels, pred, average=avg, zero_division=0))
        assert metrics.f1(pred, labels, avg) == pytest.approx(
            skm.f1_score(labels, pred, average=avg, zero_division=0))
    pc = metrics.per_class(pred, labels, 4)
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred, labels=range(4),
                                                     zero_division=0)
    assert np.allclose(pc["precision"], p) and np.allclose(pc["recall"], r)
    assert np.allclose(pc["f1"], f) and np.array_equal(pc["support"], s)
    assert np.array_equal(metrics.confusion(pred, labels, 4),
                          skm.confusion_matrix(labels, pred, labels=range(4)))
    yb = (labels > 1).astype(int)
    sb = scores[:, 2] + scores[:, 3]
    assert metrics.roc_auc(sb, yb) == pytest.approx(skm.roc_auc_score(yb, sb))
    assert metrics.compute("f1_macro", pred, labels) == pytest.approx(
        skm.f1_score(labels, pred, average="macro"))
    assert metrics.compute("roc_auc", sb, yb) == pytest.approx(skm.roc_auc_score(yb, sb))
    missing = labels.astype(float)
    missing[:50] = np.nan                              # NaN label -> -1 (skipped)
    assert metrics.accuracy(pred, missing) == pytest.approx(
        skm.accuracy_score(labels[50:], pred[50:]))
    with pytest.raises(mtl.MtlError, match="average"):
        metrics.f1(pred, labels, "nosuch")
    with pytest.raises(mtl.ShapeError):
        metrics.accuracy(pred[:10], labels)


def test_regression_metrics_match_sklearn(rng):
    skm = pytest.importorskip("sklearn.metrics")
    t = rng.normal(size=(100, 2)).astype(np.float32)
    p = (t + rng.normal(scale=0.3, size=t.shape)).astype(np.float32)
    assert metrics.mse(p, t) == pytest.approx(skm.mean_squared_error(t, p), rel=1e-5)
    assert metrics.mae(p, t) == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-5)
    assert metrics.r2(p, t) == pytest.approx(skm.r2_score(t, p), rel=1e-5)
    assert metrics.compute("rmse", p, t) == pytest.approx(
        np.sqrt(skm.mean_squared_error(t, p)), rel=1e-5)
    assert metrics.lower_is_better("mse") and not metrics.lower_is_better("r2")
    with pytest.raises(mtl.NotFoundError):
        metrics.lower_is_better("nosuch")
    with pytest.raises(mtl.NotFoundError):
        metrics.compute("nosuch", p, t)
    assert "r2" in metrics.names() and "accuracy" in metrics.names()


def test_delta_m():
    # accuracy 0.9 vs 0.8 (+12.5%), error 0.5 vs 1.0 (+50%): mean +31.25
    assert metrics.delta_m([0.9, 0.5], [0.8, 1.0], [0, 1]) == pytest.approx(31.25)
    assert metrics.delta_m([0.9], [0.8]) == pytest.approx(12.5)
    with pytest.raises(mtl.RangeError):
        metrics.delta_m([1.0], [0.0])
    with pytest.raises(mtl.ShapeError):
        metrics.delta_m([1.0, 2.0], [1.0])


def test_weighting_getters_reset_available():
    avail = mtl.Weighting.available()
    assert {"ew", "fixed"} <= set(avail)
    with mtl.Weighting("ew", 2) as w:
        assert w.get("reduction") == "sum" and w.get_string("reduction") == "sum"
        assert w.options() == {"reduction": "sum"}
        with pytest.raises(mtl.InvalidArgumentError, match="holds a string"):
            w.get_double("reduction")
        with pytest.raises(mtl.InvalidArgumentError, match="unknown key 'nosuch'"):
            w.get("nosuch")
        w.reset()
    if "dwa" in avail:
        with mtl.Weighting("dwa", 3, temperature=1.5) as w:
            assert w.get("temperature") == 1.5 and isinstance(w.get_int("window"), int)
            with pytest.raises(mtl.InvalidArgumentError, match="not an int"):
                w.get_int("temperature")


def test_multi_input_training_step(rng):
    from conftest import make_model
    m = make_model()
    xa = rng.normal(size=(8, 6)).astype(np.float32)
    xb = rng.normal(size=(5, 6)).astype(np.float32)          # another batch size
    ya = rng.integers(0, 3, 8).astype(np.int32)
    yb = rng.normal(size=(5, 2)).astype(np.float32)
    got = m.forward_backward_multi({"cls": xa, "reg": xb}, {"cls": ya, "reg": yb})
    ref_a = m.compute_losses(xa, {"cls": ya})[0]
    ref_b = m.compute_losses(xb, {"reg": yb})[1]
    assert got[0] == pytest.approx(ref_a, rel=1e-5) and got[1] == pytest.approx(ref_b, rel=1e-5)
    # gradient of the sum = sum of the single-task gradients
    m.forward_backward(xa, {"cls": ya})
    ga = m.get_grad("trunk.0.weight")
    m.forward_backward(xb, {"reg": yb})
    gb = m.get_grad("trunk.0.weight")
    m.forward_backward_multi([xa, xb], [ya, yb])
    np.testing.assert_allclose(m.get_grad("trunk.0.weight"), ga + gb, rtol=1e-4, atol=1e-6)
    with mtl.Optimizer(m, "sgd", lr=0.1) as opt:
        first = m.train_step_multi(opt, {"cls": xa}, {"cls": ya})
        assert np.isnan(first[1])
        for _ in range(10):
            last = m.train_step_multi(opt, {"cls": xa, "reg": xb}, {"cls": ya, "reg": yb})
        assert last[0] < first[0]
    with pytest.raises(mtl.NotFoundError, match="unknown task"):
        m.forward_backward_multi({"nope": xa}, {"cls": ya})
    m.close()


def test_entity_f1_counts_whole_entities():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    true = np.array([[1, 2, 0, 3, -1], [0, 3, 4, 0, 0]], np.int32)
    pred = np.array([[1, 2, 0, 0, 0], [0, 3, 0, 0, 0]], np.int32)
    # 3 true entities, 2 predicted; 1 correct (PER span); LOC [1,2] predicted as [1,1]
    assert metrics.entity_f1(pred, true, tags) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert metrics.entity_f1(true, true, tags) == pytest.approx(1.0)
    with pytest.raises(mtl.MtlError, match="tag"):
        metrics.entity_f1(pred, true, ["O", "PER"])
