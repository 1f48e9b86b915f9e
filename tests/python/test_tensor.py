"""Tensors and numpy: zero-copy wrapping, the one-copy fallback, views, ownership."""

import gc

import numpy as np
import pytest

import mtl
from mtl import _lib
from mtl.tensor import as_tensor_array, dtype_code


def c_data(t):
    return _lib.C.mtl_tensor_data(t._ptr)


def test_create_owned_zero_filled():
    with mtl.Tensor((2, 3, 4)) as t:
        assert t.shape == (2, 3, 4)
        assert t.ndim == 3
        assert t.size == 24 and len(t) == 2
        assert t.nbytes == 96
        assert t.dtype == np.float32
        assert t.owns_data
        assert t.dim(-1) == 4 and t.dim(0) == 2 and t.dim(7) == 0
        assert np.array_equal(t.numpy(), np.zeros((2, 3, 4), np.float32))
    with mtl.Tensor(5, dtype="int32") as t:
        assert t.shape == (5,) and t.dtype == np.int32
        assert "int32" in repr(t)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
def test_from_numpy_is_zero_copy(dtype, shape):
    a = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    t = mtl.Tensor.from_numpy(a)
    assert not t.owns_data
    assert c_data(t) == a.ctypes.data          # the array's buffer IS the tensor's
    assert t.data_ptr == a.ctypes.data
    assert t.shape == shape and t.dtype == dtype
    v = t.numpy()
    assert v.ctypes.data == a.ctypes.data      # and .numpy() views it again
    a.flat[0] = 42
    assert v.flat[0] == 42
    t.fill(3)
    assert np.all(a == 3)
    t.close()


def test_wrap_keeps_the_array_alive():
    a = np.ones((4, 4), np.float32)
    addr = a.ctypes.data
    t = mtl.Tensor.from_numpy(a)
    del a
    gc.collect()
    assert c_data(t) == addr
    assert np.all(t.numpy() == 1)
    t.close()


@pytest.mark.parametrize("make,why", [
    (lambda: np.arange(6, dtype=np.float64), "dtype is float64"),
    (lambda: np.arange(12, dtype=np.float32).reshape(3, 4).T, "not C-contiguous"),
    (lambda: np.arange(12, dtype=np.float32)[::2], "not C-contiguous"),
    (lambda: np.arange(6, dtype=np.int64), "dtype is int64"),
])
def test_one_copy_fallback_and_copy_false(make, why):
    a = make()
    t = mtl.Tensor.from_numpy(a)               # one documented conversion copy
    assert c_data(t) != a.ctypes.data
    assert np.array_equal(t.numpy(), a)
    assert t.numpy().flags.c_contiguous
    t.close()
    with pytest.raises(mtl.InvalidArgumentError, match=why) as e:
        mtl.Tensor.from_numpy(a, copy=False)
    assert "cannot be wrapped without a copy" in str(e.value)


def test_read_only_array_is_copied():
    a = np.arange(4, dtype=np.float32)
    a.flags.writeable = False
    with pytest.raises(mtl.InvalidArgumentError, match="read-only"):
        mtl.Tensor.from_numpy(a, copy=False)
    with mtl.Tensor.from_numpy(a) as t:
        assert c_data(t) != a.ctypes.data
        assert np.array_equal(t.numpy(), a)


def test_copy_true_always_copies():
    a = np.arange(4, dtype=np.float32)
    with mtl.Tensor.from_numpy(a, copy=True) as t:
        assert c_data(t) != a.ctypes.data
        assert as_tensor_array(a) is a
        assert as_tensor_array(a, copy=True) is not a


def test_dtype_selection():
    with mtl.Tensor.from_numpy(np.array([True, False])) as t:
        assert t.dtype == np.int32 and t.tolist() == [1, 0]
    with mtl.Tensor.from_numpy([1.5, 2.5]) as t:
        assert t.dtype == np.float32
    with mtl.Tensor.from_numpy(np.arange(3), dtype="float32") as t:
        assert t.dtype == np.float32
    with pytest.raises(mtl.InvalidArgumentError, match="dtype complex128"):
        mtl.Tensor.from_numpy(np.zeros(2, complex))
    with pytest.raises(mtl.InvalidArgumentError, match="cannot convert an array of dtype"):
        mtl.Tensor.from_numpy(np.array(["a"]))
    with pytest.raises(mtl.InvalidArgumentError, match="not supported"):
        dtype_code("float64")
    with pytest.raises(mtl.InvalidArgumentError, match="unknown mtl dtype code 5"):
        dtype_code(5)
    with pytest.raises(mtl.RangeError, match="do not fit int32"):
        mtl.Tensor.from_numpy(np.array([2**40]))


def test_bad_shapes_raise_with_library_message():
    with pytest.raises(mtl.InvalidArgumentError, match=r"shape\[1\] is 0, expected a size >= 1"):
        mtl.Tensor((3, 0))
    with pytest.raises(mtl.InvalidArgumentError, match="ndim is 5, expected 1..4"):
        mtl.Tensor((1, 1, 1, 1, 1))
    with pytest.raises(mtl.InvalidArgumentError, match="has 0 dimensions"):
        mtl.Tensor.from_numpy(np.float32(3.0))
    with pytest.raises(mtl.InvalidArgumentError, match="has 5 dimensions"):
        mtl.Tensor.from_numpy(np.zeros((1,) * 5, np.float32))
    with pytest.raises(mtl.InvalidArgumentError, match="it is empty"):
        mtl.Tensor.from_numpy(np.zeros((0, 3), np.float32), copy=False)


def test_clone_copy_fill_reshape():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    with mtl.Tensor.from_numpy(a) as t, t.clone() as c:
        assert c.owns_data and c_data(c) != a.ctypes.data
        assert np.array_equal(c.numpy(), a)
        c.fill(-1.5)
        assert np.all(c.numpy() == -1.5) and a[0, 0] == 0
        c.reshape_(3, 2)
        assert c.shape == (3, 2)
        c.reshape_((6,))
        assert c.shape == (6,)
        with pytest.raises(mtl.MtlError, match="mtl_tensor_reshape"):
            c.reshape_(4, 2)
        c.copy_from(t)
        assert np.array_equal(c.numpy(), a.ravel())
        c.copy_from(np.full(6, 7, np.float32))
        assert np.all(c.numpy() == 7)
    with mtl.Tensor(3, "int32") as i, mtl.Tensor(3) as f:
        with pytest.raises(mtl.MtlError, match="mtl_tensor_copy"):
            i.copy_from(f)
        with pytest.raises(mtl.MtlError, match="mtl_tensor_fill"):
            i.fill(0.5)
        i.fill(7)
        assert i.tolist() == [7, 7, 7]
        assert np.array_equal(np.asarray(i), [7, 7, 7])


def test_view_outlives_close(calls):
    t = mtl.Tensor((1000,))
    t.fill(2.0)
    v = t.numpy()
    frees = calls["mtl_tensor_free"]
    t.close()
    assert t.closed
    assert calls["mtl_tensor_free"] == frees          # deferred: a view still uses it
    assert float(v.sum()) == 2000.0                   # memory still valid
    w = v[10:20]                                      # a view of the view
    del v
    gc.collect()
    assert calls["mtl_tensor_free"] == frees
    assert float(w.sum()) == 20.0
    del w
    gc.collect()
    assert calls["mtl_tensor_free"] == frees + 1      # freed exactly once, now


def test_close_twice_and_gc_free_once(calls):
    frees = calls["mtl_tensor_free"]
    t = mtl.Tensor(3)
    t.close()
    t.close()
    with t:
        pass
    del t
    gc.collect()
    assert calls["mtl_tensor_free"] == frees + 1
    t = mtl.Tensor(3)
    del t                                             # garbage collection frees it
    gc.collect()
    assert calls["mtl_tensor_free"] == frees + 2


def test_closed_tensor_raises_state_error():
    t = mtl.Tensor(3)
    t.close()
    assert repr(t) == "<mtl.Tensor (closed)>"
    for op in (lambda: t.shape, lambda: t.numpy(), lambda: t.fill(1), lambda: t.clone()):
        with pytest.raises(mtl.StateError, match="this tensor is closed"):
            op()


def test_data_const_and_nbytes_int32():
    a = np.arange(10, dtype=np.int32)
    with mtl.Tensor.from_numpy(a) as t:
        assert _lib.C.mtl_tensor_data_const(t._ptr) == a.ctypes.data
        assert t.nbytes == 40
        assert _lib.C.mtl_tensor_is_owned(t._ptr) == 0


def test_pickle_tensor_and_refuse_model():
    import pickle
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    with mtl.Tensor.from_numpy(a) as t:
        u = pickle.loads(pickle.dumps(t))
    assert u.owns_data and u.shape == (2, 3) and u.dtype == np.int32
    assert np.array_equal(u.numpy(), a)
    u.close()
    m = mtl.Model(3)
    with pytest.raises(TypeError, match="model handle cannot be pickled"):
        pickle.dumps(m)
    m.close()
