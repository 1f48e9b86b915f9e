"""Statuses become typed exceptions carrying mtl_last_error()."""

import pickle

import numpy as np
import pytest

import mtl
from mtl import _lib, errors

C = _lib.C

EXPECTED = {
    1: (mtl.InvalidArgumentError, ValueError),
    2: (mtl.ShapeError, ValueError),
    3: (mtl.OutOfMemoryError, MemoryError),
    4: (mtl.MtlIOError, OSError),
    5: (mtl.FormatError, ValueError),
    6: (mtl.NumericError, ArithmeticError),
    7: (mtl.StateError, RuntimeError),
    8: (mtl.UnsupportedError, NotImplementedError),
    9: (mtl.RangeError, ValueError),
    10: (mtl.NotFoundError, LookupError),
    11: (mtl.InternalError, RuntimeError),
}


@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_one_class_per_status(status):
    cls, builtin = EXPECTED[status]
    assert errors.error_class(status) is cls
    assert issubclass(cls, mtl.MtlError) and issubclass(cls, builtin)
    e = cls("msg here", status, "mtl_fn")
    assert str(e) == "msg here" and e.status == status and e.function == "mtl_fn"
    assert cls.status == status
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is cls and e2.message == "msg here" and e2.status == status
    # the library's own description of the status
    assert mtl.status_string(status) and mtl.status_string(status) != mtl.status_string(0)


def test_unknown_status_maps_to_base_class():
    assert errors.error_class(99) is mtl.MtlError
    assert mtl.status_string(99)  # never NULL


def test_error_carries_last_error_message():
    with pytest.raises(mtl.InvalidArgumentError) as e:
        mtl.Tensor((2, -3))
    msg = "mtl_tensor_create: shape[1] is -3, expected a size >= 1"
    assert str(e.value) == msg
    assert e.value.function == "mtl_tensor_create"
    assert e.value.status == 1
    assert mtl.last_error() == msg
    assert mtl.last_status() == 1
    mtl.clear_error()
    assert mtl.last_error() == "" and mtl.last_status() == 0


def test_null_handles_are_errors_not_crashes():
    with pytest.raises(mtl.InvalidArgumentError, match=r"mtl_model_build: argument '\w+' is NULL"):
        C.mtl_model_build(None, 4, 0)
    with pytest.raises(mtl.InvalidArgumentError, match="NULL"):
        C.mtl_optimizer_step(None)
    with pytest.raises(mtl.InvalidArgumentError, match="NULL"):
        C.mtl_model_trunk(None)              # NULL pointer result -> exception
    with pytest.raises(mtl.InvalidArgumentError, match="NULL"):
        C.mtl_weighting_set_double(None, b"x", 1.0)
    assert C.mtl_tensor_ndim(None) == 0       # accessors: 0 and the last error set
    assert "NULL" in mtl.last_error()
    C.mtl_tensor_free(None)                   # every free accepts NULL
    C.mtl_model_free(None)
    C.mtl_optimizer_free(None)
    C.mtl_weighting_free(None)


def test_stale_message_is_not_reported(monkeypatch):
    # If a failing call did not set its own message, the status string is used instead of
    # an unrelated older message.
    mtl.clear_error()
    e = _lib.make_error(7, "mtl_fake")
    assert isinstance(e, mtl.StateError)
    assert str(e) == "mtl_fake: " + mtl.status_string(7)


def test_exceptions_from_bad_input_with_messages(model):
    x = np.zeros((4, 6), np.float32)
    y = {"cls": np.zeros(4, np.int32), "reg": np.zeros((4, 2), np.float32)}
    with pytest.raises(mtl.ShapeError, match="input dimension 1 is 5, expected 6"):
        model.compute_losses(np.zeros((4, 5), np.float32), y)
    with pytest.raises(mtl.ShapeError, match="exceeds max_batch 16"):
        model.compute_losses(np.zeros((17, 6), np.float32),
                             {"cls": np.zeros(17, np.int32)})
    with pytest.raises(mtl.MtlError, match="cls"):
        model.compute_losses(x, {"cls": np.full(4, 3, np.int32)})   # class id 3 of 3
    with pytest.raises(mtl.MtlError, match="reg"):
        model.compute_losses(x, {"reg": np.zeros((4, 3), np.float32)})
    with pytest.raises(mtl.NotFoundError, match=r"unknown task\(s\) \['nope'\]"):
        model.compute_losses(x, {"nope": y["cls"]})
    with pytest.raises(mtl.InvalidArgumentError, match="every target is NULL"):
        model.compute_losses(x, {})
    with pytest.raises(mtl.NotFoundError, match="nope"):
        model.get_param("nope")
    with pytest.raises(mtl.NotFoundError):
        model.head("nope")
    with pytest.raises(mtl.NotFoundError):
        model.head(5)
    with pytest.raises(mtl.MtlError, match="unknown .*'nosuchopt'"):
        mtl.Optimizer(model, "nosuchopt")
    with pytest.raises(mtl.MtlError, match="unknown weighting method 'nosuchweighting'"):
        mtl.Weighting("nosuchweighting", 2)
    with pytest.raises(mtl.InvalidArgumentError, match="targets: 1 entries, expected 2"):
        model.compute_losses(x, [y["cls"]])
    assert isinstance(mtl.ShapeError("m"), ValueError)


def test_error_messages_are_per_thread():
    # mtl_last_error is thread-local and ctypes releases the GIL during calls: concurrent
    # failures in several threads each report their own message.
    import threading

    failures = []

    def worker(k):
        for _ in range(300):
            try:
                mtl.Tensor((2, -k))
            except mtl.InvalidArgumentError as e:
                if f"shape[1] is -{k}," not in str(e):
                    failures.append(str(e))
            else:
                failures.append("no error")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
