"""Exceptions raised by libmtl's Python bindings.

Every failing C call returns an ``mtl_status``; the bindings turn a non-zero status into an
instance of the matching :class:`MtlError` subclass whose message is ``mtl_last_error()``
(the library's detail message, which names the argument and values involved).

Each subclass also derives from the closest built-in exception, so generic ``except
ValueError`` / ``except MemoryError`` / ``except OSError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "MtlError",
    "InvalidArgumentError",
    "ShapeError",
    "OutOfMemoryError",
    "MtlIOError",
    "FormatError",
    "NumericError",
    "StateError",
    "UnsupportedError",
    "RangeError",
    "NotFoundError",
    "InternalError",
    "error_class",
]


class MtlError(Exception):
    """Base class of every libmtl error.

    Attributes:
        status: the numeric ``mtl_status`` (0 never appears here).
        message: the detail message (``mtl_last_error()`` for errors from the library).
        function: the C function that failed, or ``None`` for checks done in Python.
    """

    status = -1

    def __init__(self, message: str, status: int | None = None, function: str | None = None):
        # Exception.__init__ only (OSError's constructor would reinterpret the arguments).
        Exception.__init__(self, message)
        self.message = message
        if status is not None:
            self.status = status
        self.function = function

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.status, self.function))


class InvalidArgumentError(MtlError, ValueError):
    """A NULL handle, a bad size, an unknown name or key (MTL_ERR_INVALID_ARGUMENT)."""

    status = 1


class ShapeError(MtlError, ValueError):
    """Tensor shapes or dtypes do not fit together (MTL_ERR_SHAPE)."""

    status = 2


class OutOfMemoryError(MtlError, MemoryError):
    """An allocation failed; nothing was changed or leaked (MTL_ERR_OUT_OF_MEMORY)."""

    status = 3


class MtlIOError(MtlError, OSError):
    """A file could not be opened, read, written or renamed (MTL_ERR_IO)."""

    status = 4


class FormatError(MtlError, ValueError):
    """A file or text is malformed, truncated or corrupted (MTL_ERR_FORMAT)."""

    status = 5


class NumericError(MtlError, ArithmeticError):
    """NaN/Inf in a loss or gradient, or a solver failed (MTL_ERR_NUMERIC)."""

    status = 6


class StateError(MtlError, RuntimeError):
    """The call is not valid in the object's current state (MTL_ERR_STATE); also raised for
    calls on a closed handle."""

    status = 7


class UnsupportedError(MtlError, NotImplementedError):
    """A valid request this build or object does not support (MTL_ERR_UNSUPPORTED)."""

    status = 8


class RangeError(MtlError, ValueError):
    """A value is outside its allowed range (MTL_ERR_RANGE)."""

    status = 9


class NotFoundError(MtlError, LookupError):
    """A named item (task, parameter, key) does not exist (MTL_ERR_NOT_FOUND)."""

    status = 10


class InternalError(MtlError, RuntimeError):
    """A broken invariant inside the library (MTL_ERR_INTERNAL); please report it."""

    status = 11


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        ShapeError,
        OutOfMemoryError,
        MtlIOError,
        FormatError,
        NumericError,
        StateError,
        UnsupportedError,
        RangeError,
        NotFoundError,
        InternalError,
    )
}


def error_class(status: int) -> type:
    """The exception class for a status value (:class:`MtlError` for unknown values, which a
    newer library may return)."""
    return _BY_STATUS.get(int(status), MtlError)
