"""Python callables invoked from C.

C cannot propagate a Python exception. :class:`CallbackBridge` wraps a Python callable in a
ctypes function pointer whose C-side result tells the library to stop (a non-zero return),
stores any exception the callable raised, and re-raises it once the C call returns:

    bridge = CallbackBridge(PROGRESS_FN, user_callable, error_result=1)
    with bridge:                 # re-raises a stored exception on exit
        C.mtl_something(..., bridge.pointer, None)

The prototype is declared with the C function that takes it (in _lib.DECLARATIONS).
"""

from __future__ import annotations

__all__ = ["CallbackBridge"]


class CallbackBridge:
    def __init__(self, prototype, func, error_result=1, convert=None):
        """prototype: a ctypes.CFUNCTYPE; func: the Python callable; error_result: what
        the C side receives when func raised; convert(args) -> the call's Python
        arguments (default: as ctypes passes them)."""
        self.func = func
        self.error: BaseException | None = None
        self.calls = 0

        def thunk(*args):
            if self.error is not None:
                return error_result  # an earlier call failed: keep asking C to stop
            self.calls += 1
            try:
                res = func(*(convert(args) if convert else args))
            except BaseException as exc:  # noqa: B902 - stored and re-raised after the call
                self.error = exc
                return error_result
            if res is None or res is True:
                return 0
            if res is False:
                return error_result
            return int(res)

        # The ctypes function object must outlive every call C makes through it.
        self.pointer = prototype(thunk)

    def reraise(self) -> None:
        err, self.error = self.error, None
        if err is not None:
            raise err

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.error is not None:
            err, self.error = self.error, None
            if exc is None:
                raise err
            raise err from exc
        return False

