"""Datasets and loaders (mtl_dataset_*, mtl_loader_*): zero-copy over numpy memory, owned
conversions, npy and CSV sources, splits and views, gathering, batches, typed errors."""

import gc

import numpy as np
import pytest

import mtl
from mtl import _lib

from conftest import make_model


@pytest.fixture
def data(rng):
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40).astype(np.int32)
    s = rng.normal(size=(40, 2)).astype(np.float32)
    return X, y, s


# ---- creation and zero copy -------------------------------------------------------------

def test_zero_copy_inputs_targets_masks(data, calls):
    X, y, s = data
    m = np.ones(40, np.float32)
    before = calls["mtl_dataset_create"], calls["mtl_dataset_set_target"], \
        calls["mtl_dataset_set_mask"]
    ds = mtl.Dataset(X, {"cls": y, "reg": s}, masks={"reg": m})
    assert (calls["mtl_dataset_create"], calls["mtl_dataset_set_target"],
            calls["mtl_dataset_set_mask"]) == (before[0] + 1, before[1] + 2, before[2] + 1)
    assert ds.tasks == ["cls", "reg"] and ds.num_tasks == 2 and len(ds) == 40
    # the library reads the caller's memory itself: same addresses, no copy
    assert ds.inputs.ctypes.data == X.ctypes.data
    assert ds.target("cls").ctypes.data == y.ctypes.data
    assert ds.target(1).ctypes.data == s.ctypes.data
    assert ds.mask("reg").ctypes.data == m.ctypes.data and ds.mask("cls") is None
    X[3, 0] = 123.0          # visible through the dataset
    x, ys, ms = ds.gather([3])
    assert x[0, 0] == 123.0 and ys[0][0] == y[3]
    assert ms[0].tolist() == [1.0] and ms[1].tolist() == [1.0]   # absent mask reads as ones


def test_borrowed_arrays_stay_alive_with_the_dataset(rng):
    X = rng.normal(size=(8, 3)).astype(np.float32)
    want = X.copy()
    ds = mtl.Dataset(X, [np.arange(8, dtype=np.int32)])
    del X
    gc.collect()
    np.testing.assert_array_equal(ds.gather(np.arange(8))[0], want)
    view = ds.inputs
    ds.close()                     # the view keeps the memory alive
    gc.collect()
    np.testing.assert_array_equal(view, want)
    with pytest.raises(mtl.StateError, match="closed"):
        len(ds)


def test_conversions_are_owned_copies(rng, calls):
    X64 = rng.normal(size=(10, 4))                 # float64: converted once
    y64 = np.arange(10) % 3                        # int64 class ids
    before = calls["mtl_dataset_adopt"], calls["mtl_dataset_adopt_target"], \
        calls["mtl_dataset_adopt_mask"]
    ds = mtl.Dataset(X64, {"a": y64}, masks={"a": np.arange(10) % 2 == 0})
    assert (calls["mtl_dataset_adopt"], calls["mtl_dataset_adopt_target"],
            calls["mtl_dataset_adopt_mask"]) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert ds.inputs.dtype == np.float32 and not np.shares_memory(ds.inputs, X64)
    np.testing.assert_allclose(ds.inputs, X64.astype(np.float32))
    assert ds.target("a").dtype == np.int32 and ds.target("a").tolist() == y64.tolist()
    assert ds.mask("a").dtype == np.int32 and ds.mask("a").tolist() == [1, 0] * 5
    # a strided float32 view is copied too; copy=True copies even a wrappable array
    Xf = rng.normal(size=(10, 8)).astype(np.float32)
    d2 = mtl.Dataset(Xf[:, ::2])
    assert not np.shares_memory(d2.inputs, Xf)
    np.testing.assert_array_equal(d2.inputs, Xf[:, ::2])
    d3 = mtl.Dataset(Xf, copy=True)
    assert not np.shares_memory(d3.inputs, Xf)
    for d in (ds, d2, d3):
        d.close()


def test_copy_false_refuses_conversion(rng):
    X64 = rng.normal(size=(10, 4))
    with pytest.raises(mtl.InvalidArgumentError,
                       match="inputs cannot be wrapped without a copy: dtype is float64"):
        mtl.Dataset(X64, copy=False)
    ds = mtl.Dataset(X64.astype(np.float32), num_tasks=1, copy=False)
    with pytest.raises(mtl.InvalidArgumentError, match="it is not C-contiguous"):
        ds.set_target(0, np.zeros((10, 2), np.float32)[:, :1], copy=False)
    assert not ds.has_target(0)


def test_targets_masks_and_clearing(data):
    X, y, s = data
    ds = mtl.Dataset(X, num_tasks=2)
    assert ds.tasks is None and not ds.has_target(0) and not ds.has_target(1)
    assert ds.target(0) is None
    ds.set_target(0, y).set_target(1, s).set_mask(1, np.ones(40, np.int32))
    assert ds.has_target(0) and ds.has_target(1) and ds.mask(1).dtype == np.int32
    ds.set_target(1, None).set_mask(1, None)
    assert not ds.has_target(1) and ds.mask(1) is None
    assert not ds.has_target(5)          # out of range reads as "no target"
    with pytest.raises(mtl.NotFoundError, match="slots have no names"):
        ds.set_target("cls", y)


def test_bad_input_raises_typed_errors(data):
    X, y, s = data
    with pytest.raises(mtl.InvalidArgumentError, match="num_tasks is 0, expected >= 1"):
        mtl.Dataset(X, num_tasks=0)
    ds = mtl.Dataset(X, tasks=["cls", "reg"])
    with pytest.raises(mtl.ShapeError, match="target of task slot 0 has 39 rows, the inputs "
                                             "have 40"):
        ds.set_target("cls", y[:39])
    with pytest.raises(mtl.InvalidArgumentError, match="task slot 2 is out of range"):
        ds.set_target(2, y)
    with pytest.raises(mtl.ShapeError, match="mask of task slot 1 must be"):
        ds.set_mask("reg", np.ones((40, 2), np.float32))
    with pytest.raises(mtl.NotFoundError, match="unknown task 'age'"):
        ds.set_target("age", y)
    with pytest.raises(mtl.InvalidArgumentError, match="num_tasks is 3 but 2 task names"):
        mtl.Dataset(X, tasks=["a", "b"], num_tasks=3)
    with pytest.raises(mtl.InvalidArgumentError, match="duplicate task names"):
        mtl.Dataset(X, tasks=["a", "a"])
    with pytest.raises(mtl.InvalidArgumentError, match="a dict by task or a list"):
        mtl.Dataset(X, y, num_tasks=2)
    with pytest.raises(mtl.InvalidArgumentError, match="pass a numpy array"):
        mtl.Dataset(mtl.Tensor.from_numpy(X))
    with pytest.raises(mtl.InvalidArgumentError, match="inputs is empty"):
        mtl.Dataset(np.zeros((0, 3)))
    with pytest.raises(mtl.InvalidArgumentError, match="cannot convert an array of dtype"):
        mtl.Dataset(np.array([["a"]]))
    # a failing target does not leave a half-made dataset behind
    with pytest.raises(mtl.ShapeError):
        mtl.Dataset(X, {"cls": y[:5]})


def test_tasks_from_a_model(data):
    X, y, s = data
    with make_model() as m:
        ds = mtl.Dataset(X, {"reg": s, "cls": y}, tasks=m)
        assert ds.tasks == ["cls", "reg"]            # the model's head order
        assert ds.target("reg").shape == (40, 2)


# ---- files ------------------------------------------------------------------------------

def test_from_npy(tmp_path, data):
    X, y, s = data
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    np.save(tmp_path / "s.npy", s.astype(np.float64))
    np.save(tmp_path / "m.npy", (np.arange(40) % 2).astype(np.float32))
    ds = mtl.Dataset.from_npy(tmp_path / "x.npy", {"cls": tmp_path / "y.npy",
                                                   "reg": str(tmp_path / "s.npy")},
                              masks={"reg": tmp_path / "m.npy"})
    assert ds.tasks == ["cls", "reg"] and len(ds) == 40
    np.testing.assert_array_equal(ds.inputs, X)
    assert ds.target("cls").dtype == np.int32 and ds.target("cls").tolist() == y.tolist()
    np.testing.assert_allclose(ds.target("reg"), s, rtol=1e-6)
    assert ds.mask("reg").tolist() == [0.0, 1.0] * 20
    one = mtl.Dataset.from_npy(tmp_path / "x.npy", tmp_path / "y.npy")
    assert one.num_tasks == 1 and one.has_target(0)
    with pytest.raises(mtl.MtlIOError, match="cannot open '.*missing.npy'"):
        mtl.Dataset.from_npy(tmp_path / "missing.npy")
    with pytest.raises(mtl.MtlIOError, match="missing.npy"):
        mtl.Dataset.from_npy(tmp_path / "x.npy", [tmp_path / "missing.npy"])
    (tmp_path / "bad.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(mtl.FormatError):
        mtl.Dataset.from_npy(tmp_path / "bad.npy")


CSV = """age,job,income,hours
39,tech,>50K,40
50,sales,<=50K,13
38,tech,<=50K,40
53,,>50K,
28,sales,<=50K,40
37,tech,>50K,80
"""


def test_from_csv_with_encoder(tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    table = mtl.data.CsvTable.read(tmp_path / "t.csv", header=1)
    enc = mtl.data.Encoder().add_numeric(table, "age").add_onehot(table, "job") \
        .add_label(table, "income")
    ds = mtl.Dataset.from_csv(enc, table, labels={"income": 0, "rich": (0, True)},
                              numeric={"hours": ["hours"]})
    assert ds.tasks == ["income", "rich", "hours"] and len(ds) == 6
    np.testing.assert_allclose(ds.inputs, enc.transform(table))
    np.testing.assert_array_equal(ds.target("income"), enc.transform_label(table, 0))
    rich = ds.target("rich")
    assert rich.dtype == np.float32 and rich.shape == (6, 1)
    np.testing.assert_array_equal(rich[:, 0], enc.transform_label(table, 0).astype(np.float32))
    hours = ds.target("hours")
    assert hours.shape == (6, 1) and hours[0, 0] == 40 and np.isnan(hours[3, 0])
    # errors of the sources come through typed
    with pytest.raises(mtl.NotFoundError, match="nope"):
        ds.set_target_numeric("hours", table, ["nope"])
    with pytest.raises(mtl.FormatError):
        ds.set_target_numeric("hours", table, "job")
    empty = mtl.data.Encoder()
    with pytest.raises(mtl.StateError):
        mtl.Dataset.from_csv(empty, table)
    one = mtl.Dataset.from_csv(enc, table, num_tasks=1)
    assert one.num_tasks == 1 and not one.has_target(0)


# ---- views and gathering ----------------------------------------------------------------

def test_split_views(data):
    X, y, s = data
    ds = mtl.Dataset(X, {"cls": y, "reg": s})
    tr, va, te = ds.split(val=0.25, test=0.1, seed=7)
    assert (len(tr), len(va), len(te)) == (26, 10, 4)
    rows = np.concatenate([tr.indices(), va.indices(), te.indices()])
    assert sorted(rows.tolist()) == list(range(40))          # disjoint, covering
    assert tr.tasks == ["cls", "reg"] and va.index(0) == va.indices()[0]
    assert va.index(10) == -1
    assert np.shares_memory(va.inputs, X)                    # views share the parent's data
    x, ys, _ = va.gather(np.arange(len(va)))
    np.testing.assert_array_equal(x, X[va.indices()])
    np.testing.assert_array_equal(ys[0], y[va.indices()])
    again = ds.split(val=0.25, test=0.1, seed=7)
    assert again[1].indices().tolist() == va.indices().tolist()   # deterministic
    assert ds.split(val=0.25, seed=8)[1].indices().tolist() != va.indices().tolist()
    tr2, none_val, none_test = ds.split(val=0.0)
    assert none_val is None and none_test is None and len(tr2) == 40
    with pytest.raises(mtl.StateError, match="the dataset is a view"):
        tr.set_target("cls", y[:26])
    with pytest.raises(mtl.InvalidArgumentError, match="val_fraction 0.5 and test_fraction "
                                                       "0.5 must each be in"):
        ds.split(0.5, 0.5)
    # views keep their parent alive
    ds.close()
    gc.collect()
    np.testing.assert_array_equal(te.gather([0])[0], X[te.indices()[:1]])


def test_subset_and_gather(data):
    X, y, s = data
    ds = mtl.Dataset(X, {"cls": y, "reg": s}, masks={"cls": (np.arange(40) % 4 != 0)})
    sub = ds.subset([5, 5, 39, 0])
    assert len(sub) == 4 and sub.indices().tolist() == [5, 5, 39, 0]
    nested = sub.subset([2])
    assert nested.indices().tolist() == [39]
    x, ys, ms = sub.gather([0, 2, 3])
    np.testing.assert_array_equal(x, X[[5, 39, 0]])
    np.testing.assert_array_equal(ys[1], s[[5, 39, 0]])
    assert ms[0].tolist() == [1.0, 1.0, 0.0] and ms[1].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(mtl.RangeError, match=r"indices\[1\] is 40, outside the dataset's "
                                             r"0..39"):
        ds.subset([1, 40])
    with pytest.raises(mtl.RangeError, match="outside the dataset's 0..3"):
        sub.gather([4])
    with pytest.raises(mtl.InvalidArgumentError, match="n is 0, expected >= 1"):
        ds.gather([])


def test_gather_checks_caller_tensors(data):
    # the raw call, with tensors of the wrong shape: a shape error, no crash
    X, y, s = data
    ds = mtl.Dataset(X, {"cls": y})
    idx = np.array([0, 1, 2], np.int64)
    small = mtl.Tensor((2, 6))
    with pytest.raises(mtl.ShapeError):
        _lib.C.mtl_dataset_gather(ds._ptr, idx.ctypes.data_as(_lib.I64_P), 3, small._ptr,
                                  None, None)
    small.close()


# ---- loaders ----------------------------------------------------------------------------

def test_loader_passes_and_replay(data):
    X, y, s = data
    ds = mtl.Dataset(X, {"cls": y, "reg": s}, masks={"reg": np.ones(40, np.float32)})
    ld = mtl.Loader(ds, batch_size=16, shuffle=True, seed=5)
    assert len(ld) == 3 and ld.pass_index == 0 and ld.position == 0
    seen = []
    for b in ld:
        assert b.input.shape == (b.rows, 6) and b.targets[1].shape == (b.rows, 2)
        assert b.masks[0] is None and b.masks[1].shape == (b.rows,)
        # rows are the dataset's: find each input row's sample id through the targets
        for row in range(b.rows):
            seen.append(int(np.flatnonzero((X == b.input[row]).all(axis=1))[0]))
        np.testing.assert_array_equal(b.targets[0], y[seen[-b.rows:]])
    assert [len(seen)] == [40] and sorted(seen) == list(range(40))
    assert ld.pass_index == 1 and ld.position == 0          # the end moved to pass 1
    first = [r for r in seen[:16]]
    ld.next()
    second_pass = [int(np.flatnonzero((X == r).all(axis=1))[0]) for r in ld.batch().input]
    assert second_pass != first                               # reshuffled
    ld.seek(0, 0)                                             # replay pass 0
    ld.next()
    replay = [int(np.flatnonzero((X == r).all(axis=1))[0]) for r in ld.batch().input]
    assert replay == first
    ld.seek(0, 2)
    assert ld.next() == 8 and ld.position == 3               # the partial last batch
    assert ld.next() == 0
    with pytest.raises(mtl.StateError, match="no current batch"):
        ld.batch()


def test_loader_in_order_drop_last_and_errors(data):
    X, y, s = data
    ds = mtl.Dataset(X, [y])
    ld = mtl.Loader(ds, 16, shuffle=False, drop_last=True)
    assert ld.num_batches == 2
    batches = [b.input.copy() for b in ld]
    np.testing.assert_array_equal(np.concatenate(batches), X[:32])
    with pytest.raises(mtl.InvalidArgumentError, match="batch_size is 0, expected >= 1"):
        mtl.Loader(ds, 0)
    with pytest.raises(mtl.ShapeError, match="drop_last with 40 samples and batch_size 41"):
        mtl.Loader(ds, 41, drop_last=True)
    with pytest.raises(mtl.RangeError, match="position 5: expected pass >= 0 and position in "
                                             "0..2"):
        ld.seek(0, 5)
    big = mtl.Loader(ds, 100)                 # larger than the data: one batch of 40
    assert big.num_batches == 1 and big.next() == 40


def test_loader_keeps_dataset_alive_and_trains(data):
    X, y, s = data
    with make_model(max_batch=16) as m, mtl.Optimizer(m, "sgd", lr=0.1) as opt:
        ds = mtl.Dataset(X, {"cls": y, "reg": s}, tasks=m)
        ld = mtl.Loader(ds, 16, seed=1)
        ds.close()
        del ds
        gc.collect()
        with pytest.raises(mtl.StateError, match="no current batch"):
            ld.train_step(m, opt)
        ld.next()
        b = ld.batch()
        want = m.compute_losses(b.input, b.targets, b.masks)
        losses = ld.train_step(m, opt)
        np.testing.assert_allclose(losses, want, rtol=1e-6)
        assert opt.step_count == 1
        other = mtl.Loader(mtl.Dataset(X, [y]), 8)
        other.next()
        with pytest.raises(mtl.ShapeError, match="1 task slots, the model 2 heads"):
            other.train_step(m, opt)
        ld.close()
        other.close()
