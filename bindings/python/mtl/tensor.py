"""Tensors: contiguous row-major float32 / int32 arrays of 1 to 4 dimensions, and their
exchange with numpy.

Zero-copy rule: :meth:`Tensor.from_numpy` wraps a C-contiguous, aligned, writeable float32 or
int32 array of 1..4 dimensions in place (``mtl_tensor_wrap``); the tensor keeps a reference to
the array, so the memory lives as long as either needs it. Any other array (another dtype,
non-contiguous, read-only) is converted with exactly one copy,
``np.array(arr, dtype=<float32|int32>, order="C")``, unless ``copy=False`` is given, in which
case :class:`~mtl.errors.InvalidArgumentError` is raised instead. :meth:`Tensor.numpy`
returns a view of the tensor's memory (no copy) that keeps the memory alive.
"""

from __future__ import annotations

import ctypes
import weakref

import numpy as np

from . import errors
from ._handle import HandleBase, Resource
from ._lib import C

__all__ = ["Tensor", "FLOAT32", "INT32", "MAX_DIMS", "borrowed_view"]

FLOAT32 = 0
INT32 = 1
MAX_DIMS = 4

_NP_OF = {FLOAT32: np.dtype(np.float32), INT32: np.dtype(np.int32)}
_NAME_OF = {FLOAT32: "float32", INT32: "int32"}


def dtype_code(dtype) -> int:
    """mtl dtype code of 'float32'/'int32', a numpy dtype, or the code itself."""
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        if int(dtype) in _NP_OF:
            return int(dtype)
        raise errors.InvalidArgumentError(f"unknown mtl dtype code {int(dtype)}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise errors.InvalidArgumentError(f"unknown dtype {dtype!r}") from None
    if dt == np.float32:
        return FLOAT32
    if dt == np.int32:
        return INT32
    raise errors.InvalidArgumentError(
        f"dtype {dt} is not supported by mtl tensors (float32 or int32)")


def _target_code(arr: np.ndarray, dtype) -> int:
    if dtype is not None:
        return dtype_code(dtype)
    kind = arr.dtype.kind
    if kind == "f":
        return FLOAT32
    if kind in "iub":
        return INT32
    raise errors.InvalidArgumentError(
        f"cannot convert an array of dtype {arr.dtype} to an mtl tensor "
        "(use floating or integer data)")


def _shape_array(shape):
    return (ctypes.c_int64 * len(shape))(*[int(s) for s in shape])


def _free_tensor(ptr):
    C.mtl_tensor_free(ptr)


def _wrappable(arr: np.ndarray, code: int) -> bool:
    return (arr.dtype == _NP_OF[code] and arr.flags.c_contiguous and arr.flags.aligned
            and arr.flags.writeable and 1 <= arr.ndim <= MAX_DIMS and arr.size > 0)


def as_tensor_array(data, dtype=None, copy=None, what="array") -> np.ndarray:
    """The array a tensor would wrap: ``data`` itself when it is wrappable, otherwise one
    converted copy (or an error when copy=False)."""
    arr = data if isinstance(data, np.ndarray) else np.asarray(data)
    code = tensor_code(arr, dtype, what)
    if copy is not True and _wrappable(arr, code):
        return arr
    if copy is False:
        reasons = []
        if arr.dtype != _NP_OF[code]:
            reasons.append(f"dtype is {arr.dtype}, not {_NAME_OF[code]}")
        if not arr.flags.c_contiguous:
            reasons.append("it is not C-contiguous")
        if not arr.flags.aligned:
            reasons.append("it is not aligned")
        if not arr.flags.writeable:
            reasons.append("it is read-only")
        if arr.size == 0:
            reasons.append("it is empty")
        raise errors.InvalidArgumentError(
            f"{what} cannot be wrapped without a copy: " + "; ".join(reasons)
            + " (pass copy=None to allow one conversion copy)")
    return np.array(arr, dtype=_NP_OF[code], order="C", copy=True)


def tensor_code(arr: np.ndarray, dtype=None, what="array") -> int:
    """The mtl dtype code arr converts to, after checking it can become a tensor (1..4
    dimensions, integers within int32)."""
    code = _target_code(arr, dtype)
    if not 1 <= arr.ndim <= MAX_DIMS:
        raise errors.InvalidArgumentError(
            f"{what} has {arr.ndim} dimensions; mtl tensors have 1..{MAX_DIMS}")
    if code == INT32 and arr.dtype.kind in "iu" and arr.size and arr.dtype.itemsize > 4:
        lo, hi = arr.min(), arr.max()
        if lo < -2**31 or hi >= 2**31:
            raise errors.RangeError(f"{what}: values {lo}..{hi} do not fit int32")
    return code


class Tensor(HandleBase):
    """An mtl tensor handle. Create one with ``Tensor(shape, dtype)`` (owned, zero-filled) or
    :meth:`Tensor.from_numpy` (wrapping numpy memory)."""

    _kind = "tensor"

    def __init__(self, shape, dtype="float32"):
        shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
        out = ctypes.c_void_p()
        C.mtl_tensor_create(ctypes.byref(out), dtype_code(dtype), len(shape),
                            _shape_array(shape))
        self._own(Resource(out.value, _free_tensor, "tensor"))

    @classmethod
    def _from_ptr(cls, ptr, keep=None) -> "Tensor":
        t = cls.__new__(cls)
        t._own(Resource(ptr, _free_tensor, "tensor", keep=keep))
        return t

    @classmethod
    def from_numpy(cls, data, dtype=None, copy=None) -> "Tensor":
        """Wrap a numpy array (zero-copy when it is C-contiguous, aligned, writeable float32
        or int32 with 1..4 dimensions; see the module docs for the one-copy fallback).

        dtype: force "float32" or "int32" (default: float32 for floating data, int32 for
        integer/bool data). copy: None = copy only if needed, False = never (raise), True =
        always copy."""
        arr = as_tensor_array(data, dtype, copy)
        code = dtype_code(arr.dtype)
        out = ctypes.c_void_p()
        C.mtl_tensor_wrap(ctypes.byref(out), code, arr.ctypes.data, arr.ndim,
                          _shape_array(arr.shape))
        return cls._from_ptr(out.value, keep=arr)

    # ---- properties ----
    @property
    def ndim(self) -> int:
        return C.mtl_tensor_ndim(self._ptr)

    @property
    def shape(self) -> tuple:
        ptr = self._ptr
        nd = C.mtl_tensor_ndim(ptr)
        buf = (ctypes.c_int64 * MAX_DIMS)()
        C.mtl_tensor_shape(ptr, buf, MAX_DIMS)
        return tuple(buf[i] for i in range(nd))

    def dim(self, i: int) -> int:
        """Size of dimension i (negative counts from the end); 0 when out of range."""
        return C.mtl_tensor_dim(self._ptr, int(i))

    @property
    def dtype(self) -> np.dtype:
        return _NP_OF[C.mtl_tensor_dtype(self._ptr)]

    @property
    def size(self) -> int:
        return C.mtl_tensor_numel(self._ptr)

    def __len__(self) -> int:
        return self.dim(0)

    @property
    def nbytes(self) -> int:
        return C.mtl_tensor_nbytes(self._ptr)

    @property
    def data_ptr(self) -> int:
        """Address of the elements (borrowed)."""
        return C.mtl_tensor_data(self._ptr) or 0

    @property
    def owns_data(self) -> bool:
        """False when the tensor wraps caller (numpy) memory."""
        return bool(C.mtl_tensor_is_owned(self._ptr))

    # ---- operations ----
    def clone(self) -> "Tensor":
        """An owned deep copy."""
        out = ctypes.c_void_p()
        C.mtl_tensor_clone(ctypes.byref(out), self._ptr)
        return Tensor._from_ptr(out.value)

    def copy_from(self, src) -> "Tensor":
        """Copy the elements of src (a Tensor or array-like of the same dtype and element
        count) into this tensor."""
        if isinstance(src, Tensor):
            C.mtl_tensor_copy(self._ptr, src._ptr)
        else:
            with Tensor.from_numpy(src, dtype=self.dtype) as t:
                C.mtl_tensor_copy(self._ptr, t._ptr)
        return self

    def fill(self, value: float) -> "Tensor":
        C.mtl_tensor_fill(self._ptr, float(value))
        return self

    def reshape_(self, *shape) -> "Tensor":
        """Change the shape in place (same element count)."""
        if len(shape) == 1 and not np.isscalar(shape[0]):
            shape = tuple(shape[0])
        C.mtl_tensor_reshape(self._ptr, len(shape), _shape_array(shape))
        return self

    def numpy(self) -> np.ndarray:
        """A numpy view of the tensor's memory (no copy). The view keeps the memory alive,
        even past close()."""
        res = self._res
        ptr = self._ptr
        dtype = self.dtype
        shape = self.shape
        addr = C.mtl_tensor_data_const(ptr)
        nbytes = C.mtl_tensor_nbytes(ptr)
        buf = (ctypes.c_char * nbytes).from_address(addr)
        res.acquire()
        # Every array derived from the view has this buffer object at the end of its base
        # chain, so the buffer dies with the last of them: that releases the memory.
        weakref.finalize(buf, res.release)
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def __reduce__(self):
        # pickled as its values; unpickling makes an owned copy
        return (_tensor_from_values, (np.array(self.numpy()),))

    def __array__(self, dtype=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def tolist(self):
        return self.numpy().tolist()

    def __repr__(self):
        if self.closed:
            return "<mtl.Tensor (closed)>"
        return f"<mtl.Tensor shape={self.shape} dtype={self.dtype}" + \
            ("" if self.owns_data else " wrapped") + ">"


def borrowed_view(ptr, owner) -> np.ndarray:
    """A numpy view (no copy) of a tensor another handle owns (a dataset's data, a loader's
    batch). ``owner`` is that handle's Resource: the view keeps it alive."""
    nd = C.mtl_tensor_ndim(ptr)
    buf = (ctypes.c_int64 * MAX_DIMS)()
    C.mtl_tensor_shape(ptr, buf, MAX_DIMS)
    shape = tuple(buf[i] for i in range(nd))
    dtype = _NP_OF[C.mtl_tensor_dtype(ptr)]
    nbytes = C.mtl_tensor_nbytes(ptr)
    addr = C.mtl_tensor_data_const(ptr)
    if not nbytes or not addr:
        return np.empty(shape, dtype)
    cbuf = (ctypes.c_char * nbytes).from_address(addr)
    owner.acquire()
    weakref.finalize(cbuf, owner.release)
    return np.frombuffer(cbuf, dtype=dtype).reshape(shape)


def _tensor_from_values(arr):
    t = Tensor(arr.shape, arr.dtype)
    t.copy_from(arr)
    return t


class TempTensors:
    """Context manager wrapping several arrays as short-lived tensors (internal helper)."""

    def __init__(self):
        self._items = []

    def wrap(self, data, dtype=None, what="array"):
        arr = as_tensor_array(data, dtype, None, what)
        out = ctypes.c_void_p()
        C.mtl_tensor_wrap(ctypes.byref(out), dtype_code(arr.dtype), arr.ctypes.data, arr.ndim,
                          _shape_array(arr.shape))
        self._items.append((out.value, arr))
        return out.value, arr

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        items, self._items = self._items, []
        for ptr, _ in items:
            C.mtl_tensor_free(ptr)
        return False
