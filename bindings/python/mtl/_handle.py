"""Ownership of C handles.

A :class:`Resource` owns one C pointer and frees it exactly once. It frees when its owner
closed it AND nothing still depends on it: numpy views of a tensor's memory and handles that
need it (an optimizer needs its model) hold references that defer the free until they are
gone. Python wrappers close their resource in ``close()`` / ``__exit__`` and, as a safety
net, through ``weakref.finalize`` when they are garbage-collected; the finalizer object
makes the close happen at most once.
"""

from __future__ import annotations

import threading
import weakref

from . import errors


class Resource:
    __slots__ = ("ptr", "kind", "_free", "_deps", "_keep", "_refs", "_closing", "_lock",
                 "__weakref__")

    def __init__(self, ptr: int, free, kind: str, deps=(), keep=None):
        if not ptr:
            raise errors.InternalError(f"{kind}: NULL handle from a successful call")
        self.ptr = ptr
        self.kind = kind
        self._free = free
        self._keep = keep          # Python objects the C side points into (numpy arrays)
        self._refs = 0
        self._closing = False
        # Re-entrant: a finalizer may run (through the garbage collector) on this thread
        # while it holds the lock.
        self._lock = threading.RLock()
        self._deps = tuple(deps)
        for d in self._deps:
            d.acquire()

    @property
    def alive(self) -> bool:
        return self.ptr is not None

    def acquire(self) -> None:
        with self._lock:
            if self.ptr is None:
                raise errors.StateError(f"{self.kind} was already freed")
            self._refs += 1

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            destroy = self._closing and self._refs == 0
        if destroy:
            self._destroy()

    def add_dep(self, dep: "Resource") -> None:
        """Keep dep alive until this resource is freed (for handles that start borrowing
        another one after creation: a dataset's targets, a trainer's datasets)."""
        dep.acquire()
        with self._lock:
            if self.ptr is None:
                destroyed = True
            else:
                destroyed = False
                self._deps = self._deps + (dep,)
        if destroyed:
            dep.release()
            raise errors.StateError(f"{self.kind} was already freed")

    def detach(self) -> None:
        """The C side took ownership of the pointer (an adopt call): forget it without
        freeing. Views still holding references see the memory through its new owner."""
        with self._lock:
            self.ptr = None
            self._keep = None
            deps, self._deps = self._deps, ()
        for d in deps:
            d.release()

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            destroy = self._refs == 0
        if destroy:
            self._destroy()

    def _destroy(self) -> None:
        with self._lock:
            ptr, self.ptr = self.ptr, None
        if ptr is None:
            return
        self._free(ptr)
        self._keep = None
        deps, self._deps = self._deps, ()
        for d in deps:
            d.release()


class HandleBase:
    """Base of the owning wrappers: ``close()``, context manager, finalizer."""

    _kind = "handle"
    _res = None

    def _own(self, res: Resource) -> None:
        self._res = res
        self._finalizer = weakref.finalize(self, res.close)

    @property
    def _ptr(self) -> int:
        res = self._res
        if res is None:
            raise errors.StateError(f"this {self._kind} is closed", errors.StateError.status)
        return res.ptr

    @property
    def closed(self) -> bool:
        """True once close() was called (the memory itself may live on while views or
        dependent handles still use it)."""
        return self._res is None

    def close(self) -> None:
        """Release the handle now. Safe to call more than once."""
        if getattr(self, "_res", None) is None:
            return
        self._res = None
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __reduce__(self):
        raise TypeError(f"a {self._kind} handle cannot be pickled (MultiTaskModel and "
                        "Tensor can; for a Model use state_dict())")
