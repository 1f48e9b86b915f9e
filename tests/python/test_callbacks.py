"""Python callables called from C: exceptions are stored and re-raised after the C call."""

import ctypes
import ctypes.util

import pytest

from mtl.callbacks import CallbackBridge

libc = ctypes.CDLL(ctypes.util.find_library("c"))
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
libc.qsort.restype = None
libc.qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, CMP]


def sort_with(bridge, values):
    arr = (ctypes.c_int * len(values))(*values)
    with bridge:
        libc.qsort(arr, len(values), ctypes.sizeof(ctypes.c_int), bridge.pointer)
    return list(arr)


def test_callback_called_from_c():
    # The comparator's integer result passes through; qsort is a real C caller.
    bridge = CallbackBridge(CMP, lambda a, b: a[0] - b[0], error_result=0)
    assert sort_with(bridge, [3, 1, 2]) == [1, 2, 3]
    assert bridge.calls > 0


def test_exception_in_callback_is_reraised_after_the_call():
    class Stop(Exception):
        pass

    def cmp(a, b):
        raise Stop("from the callback")

    bridge = CallbackBridge(CMP, cmp, error_result=0)
    with pytest.raises(Stop, match="from the callback"):
        sort_with(bridge, [3, 1, 2])
    assert bridge.calls == 1           # later calls short-circuit to error_result
    assert bridge.error is None        # consumed


def test_bool_results_and_reraise():
    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    b = CallbackBridge(proto, lambda i: i < 3, error_result=7,
                       convert=lambda args: (args[0] * 1,))
    fn = ctypes.cast(b.pointer, proto)
    assert fn(1) == 0 and fn(5) == 7
    b2 = CallbackBridge(proto, lambda i: 1 / 0, error_result=9)
    assert ctypes.cast(b2.pointer, proto)(1) == 9
    with pytest.raises(ZeroDivisionError):
        b2.reraise()
    b2.reraise()                        # nothing stored any more
