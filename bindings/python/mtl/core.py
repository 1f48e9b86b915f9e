"""Handles for models (with their trunk and heads), optimizers and task weightings: one
class per C handle, one method per C function, errors raised as :mod:`mtl.errors`.

Ownership: :class:`Model`, :class:`Optimizer` and :class:`Weighting` own their handle
(``close()``, ``with``, or garbage collection frees it once). :class:`Trunk` and :class:`Head`
are borrowed from their model: they keep the Python model object alive and raise
:class:`~mtl.errors.StateError` after the model was closed. An optimizer needs its model's
memory: the model is freed only after its optimizers are.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from ctypes import byref, c_double, c_float, c_int, c_int64, c_void_p

import numpy as np

from . import errors
from ._handle import HandleBase, Resource
from ._lib import C
from .tensor import MAX_DIMS, Tensor, TempTensors, dtype_code

__all__ = ["Model", "Trunk", "Head", "Optimizer", "Weighting", "OUTPUT_RAW",
           "OUTPUT_PROBABILITIES"]

OUTPUT_RAW = 0
OUTPUT_PROBABILITIES = 1


def _b(s) -> bytes:
    if isinstance(s, bytes):
        return s
    if not isinstance(s, str):
        raise errors.InvalidArgumentError(f"expected a string, got {type(s).__name__}: {s!r}")
    return s.encode("utf-8")


def _s(b) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def set_option(key, value, set_int, set_double, set_string, what):
    """Dispatch a keyword option to the typed C setter by the Python value's type: str ->
    string; bool/int -> int; float -> double; a list/tuple of numbers -> comma-separated
    string (e.g. milestones). The library converts between int and double keys itself."""
    if isinstance(value, (str, bytes)):
        return set_string(_b(key), _b(value))
    if isinstance(value, (list, tuple)):
        return set_string(_b(key), _b(",".join(str(v) for v in value)))
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return set_int(_b(key), int(value))
    if isinstance(value, (float, np.floating)):
        return set_double(_b(key), float(value))
    raise errors.InvalidArgumentError(
        f"{what}: option {key!r} has unsupported type {type(value).__name__} ({value!r})")


def _tensor_array(items, n, what):
    """A C array of n tensor pointers from a sequence of Tensor/None."""
    arr = (c_void_p * n)()
    if items is None:
        return None
    if len(items) != n:
        raise errors.InvalidArgumentError(f"{what}: {len(items)} entries, expected {n}")
    for i, t in enumerate(items):
        arr[i] = None if t is None else t._ptr
    return arr


def _free_model(ptr):
    C.mtl_model_free(ptr)


def _free_optimizer(ptr):
    C.mtl_optimizer_free(ptr)


def _free_weighting(ptr):
    C.mtl_weighting_free(ptr)


class _Stack:
    """Common part of Trunk and Head (borrowed handles)."""

    _prefix = ""

    def __init__(self, model: "Model", ptr: int):
        self._model = model
        self._handle = ptr

    @property
    def _ptr(self) -> int:
        if self._model.closed:
            raise errors.StateError(f"the model of this {self._prefix} is closed")
        return self._handle

    def _fn(self, suffix):
        return getattr(C, f"mtl_{self._prefix}_{suffix}")

    def add_layer(self, kind: str, **options) -> int:
        """Append a layer of the named kind with options by key; returns its index."""
        idx = c_int(-1)
        self._fn("add_layer")(self._ptr, _b(kind), byref(idx))
        for key, value in options.items():
            self.set_option(idx.value, key, value)
        return idx.value

    def add_linear(self, out: int) -> None:
        self._fn("add_linear")(self._ptr, int(out))

    def set_int(self, layer: int, key: str, value: int) -> None:
        self._fn("set_int")(self._ptr, int(layer), _b(key), int(value))

    def set_double(self, layer: int, key: str, value: float) -> None:
        self._fn("set_double")(self._ptr, int(layer), _b(key), float(value))

    def set_string(self, layer: int, key: str, value: str) -> None:
        self._fn("set_string")(self._ptr, int(layer), _b(key), _b(value))

    def set_option(self, layer: int, key: str, value) -> None:
        """Set a layer option, choosing the typed setter from the value's type."""
        ptr = self._ptr
        set_option(key, value,
                   lambda k, v: self._fn("set_int")(ptr, int(layer), k, v),
                   lambda k, v: self._fn("set_double")(ptr, int(layer), k, v),
                   lambda k, v: self._fn("set_string")(ptr, int(layer), k, v),
                   f"{self._prefix} layer {layer}")

    @property
    def num_layers(self) -> int:
        return self._fn("num_layers")(self._ptr)

    def __len__(self):
        return self.num_layers


class Trunk(_Stack):
    """The model's shared trunk (borrowed from its Model)."""

    _prefix = "trunk"

    @property
    def output_size(self) -> int:
        """Features per sample the trunk outputs (0 before the model is built)."""
        return C.mtl_trunk_output_size(self._ptr)

    def __repr__(self):
        return f"<mtl.Trunk layers={self.num_layers}>"


class Head(_Stack):
    """One task head (borrowed from its Model)."""

    _prefix = "head"

    @property
    def name(self) -> str:
        return _s(C.mtl_head_name(self._ptr))

    @property
    def loss(self) -> str:
        return _s(C.mtl_head_loss(self._ptr))

    @loss.setter
    def loss(self, value: str) -> None:
        self.set_loss(value)

    def set_loss(self, loss: str, **options) -> None:
        """Choose the loss by name; options by key (label_smoothing, delta)."""
        C.mtl_head_set_loss(self._ptr, _b(loss))
        for key, value in options.items():
            self.set_loss_option(key, value)

    def set_loss_option(self, key: str, value: float) -> None:
        C.mtl_head_set_loss_double(self._ptr, _b(key), float(value))

    def set_class_weights(self, weights) -> None:
        w = np.ascontiguousarray(weights, dtype=np.float32).ravel()
        C.mtl_head_set_class_weights(self._ptr, w.ctypes.data_as(ctypes.POINTER(c_float)),
                                     int(w.size))

    @property
    def output_size(self) -> int:
        return C.mtl_head_output_size(self._ptr)

    @property
    def index(self) -> int:
        return self._model.head_index(self.name)

    def __repr__(self):
        return f"<mtl.Head {self.name!r} loss={self.loss!r} layers={self.num_layers}>"


class Model(HandleBase):
    """A multi-task model: a shared trunk and task heads (``mtl_model``).

    ``Model(input_shape, input_dtype="float32")`` creates an empty model; add layers to
    ``model.trunk`` and heads with :meth:`add_head`, then :meth:`build`.
    """

    _kind = "model"

    def __init__(self, input_shape, input_dtype="float32"):
        shape = (int(input_shape),) if np.isscalar(input_shape) else tuple(
            int(s) for s in input_shape)
        out = c_void_p()
        C.mtl_model_create(byref(out), dtype_code(input_dtype), len(shape),
                           (c_int64 * max(1, len(shape)))(*shape))
        self._own(Resource(out.value, _free_model, "model"))
        self._input_shape = shape
        self._input_dtype = np.dtype(np.int32 if dtype_code(input_dtype) else np.float32)
        self._trunk = None
        self._losses = None

    @classmethod
    def _from_ptr(cls, ptr, input_shape, input_dtype="float32") -> "Model":
        m = cls.__new__(cls)
        m._own(Resource(ptr, _free_model, "model"))
        m._input_shape = tuple(int(s) for s in input_shape)
        m._input_dtype = np.dtype(np.int32 if dtype_code(input_dtype) else np.float32)
        m._trunk = None
        m._losses = None
        return m

    # ---- files ----
    def save_checkpoint(self, path, optimizer: "Optimizer | None" = None,
                        weighting: "Weighting | None" = None) -> None:
        """Write this model (with the optimizer / weighting when given) as a libmtl
        checkpoint, atomically (see :mod:`mtl.checkpoint`)."""
        from .checkpoint import save_checkpoint
        save_checkpoint(path, self, optimizer, weighting)

    def load_checkpoint(self, path, optimizer: "Optimizer | None" = None,
                        weighting: "Weighting | None" = None) -> None:
        """Restore a checkpoint into this model (same architecture) and the optimizer /
        weighting when given; nothing changes on an error."""
        from .checkpoint import load_checkpoint_into
        load_checkpoint_into(path, self, optimizer, weighting)

    @classmethod
    def from_checkpoint(cls, path, optimizer=None, weighting=None):
        """(Model, Optimizer or None, Weighting or None) rebuilt from a checkpoint; see
        :func:`mtl.load_checkpoint`."""
        from .checkpoint import load_checkpoint
        return load_checkpoint(path, optimizer, weighting)

    def save_safetensors(self, path) -> None:
        """The named tensors as a safetensors file (readable by safetensors.torch)."""
        from .checkpoint import save_safetensors
        save_safetensors(path, self)

    def load_safetensors(self, path) -> None:
        from .checkpoint import load_safetensors
        load_safetensors(path, self)

    # ---- structure ----
    @property
    def input_shape(self) -> tuple:
        return self._input_shape

    @property
    def input_dtype(self) -> np.dtype:
        return self._input_dtype

    @property
    def trunk(self) -> Trunk:
        if self._trunk is None:
            self._trunk = Trunk(self, C.mtl_model_trunk(self._ptr))
        else:
            self._ptr  # raises when closed
        return self._trunk

    def add_head(self, task: str, loss: str | None = None, layers=None) -> Head:
        """Add a task head; optionally set its loss and add layers given as
        (kind, options) pairs."""
        out = c_void_p()
        C.mtl_model_add_head(self._ptr, byref(out), _b(task))
        head = Head(self, out.value)
        if loss is not None:
            head.set_loss(loss)
        for kind, opts in layers or ():
            head.add_layer(kind, **(opts or {}))
        return head

    @property
    def num_heads(self) -> int:
        return C.mtl_model_num_heads(self._ptr)

    def head(self, key) -> Head:
        """A head by task name or by position."""
        if isinstance(key, (int, np.integer)):
            return Head(self, C.mtl_model_head_at(self._ptr, int(key)))
        return Head(self, C.mtl_model_head(self._ptr, _b(key)))

    def head_index(self, task: str) -> int:
        idx = c_int(-1)
        C.mtl_model_head_index(self._ptr, _b(task), byref(idx))
        return idx.value

    @property
    def heads(self) -> list:
        return [self.head(i) for i in range(self.num_heads)]

    @property
    def task_names(self) -> list:
        return [h.name for h in self.heads]

    def set_double(self, key: str, value: float) -> None:
        C.mtl_model_set_double(self._ptr, _b(key), float(value))

    def get_double(self, key: str) -> float:
        v = c_double()
        C.mtl_model_get_double(self._ptr, _b(key), byref(v))
        return v.value

    def build(self, max_batch: int, seed: int = 0) -> "Model":
        C.mtl_model_build(self._ptr, int(max_batch), int(seed) & 0xFFFFFFFFFFFFFFFF)
        return self

    @property
    def is_built(self) -> bool:
        return bool(C.mtl_model_is_built(self._ptr))

    @property
    def max_batch(self) -> int:
        return C.mtl_model_max_batch(self._ptr)

    @property
    def num_params(self) -> int:
        return C.mtl_model_num_params(self._ptr)

    @property
    def num_shared_params(self) -> int:
        return C.mtl_model_num_shared_params(self._ptr)

    # ---- parameters ----
    def param_names(self) -> list:
        ptr = self._ptr
        n = C.mtl_model_param_count(ptr)
        return [_s(C.mtl_model_param_name(ptr, i)) for i in range(n)]

    def param_shape(self, name: str) -> tuple:
        shape = (c_int64 * MAX_DIMS)()
        nd = c_int(0)
        C.mtl_model_param_shape(self._ptr, _b(name), shape, MAX_DIMS, byref(nd))
        return tuple(shape[i] for i in range(nd.value))

    def _read(self, fn, name):
        arr = np.empty(self.param_shape(name), dtype=np.float32)
        with TempTensors() as tmp:
            ptr, _ = tmp.wrap(arr.reshape(-1))
            fn(self._ptr, _b(name), ptr)
        return arr

    def get_param(self, name: str) -> np.ndarray:
        """A copy of the named parameter (PyTorch layout: linear weight [out, in])."""
        return self._read(C.mtl_model_get_param, name)

    def get_grad(self, name: str) -> np.ndarray:
        """A copy of the named parameter's gradient from the last step/forward_backward."""
        return self._read(C.mtl_model_get_grad, name)

    def set_param(self, name: str, value) -> None:
        """Overwrite the named parameter (any array-like with its element count)."""
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.ndim > MAX_DIMS:
            arr = arr.reshape(-1)
        with TempTensors() as tmp:
            ptr, _ = tmp.wrap(arr, dtype=np.float32, what=f"parameter {name!r}")
            C.mtl_model_set_param(self._ptr, _b(name), ptr)

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Every named parameter and state tensor (copies), in the model's order."""
        return OrderedDict((n, self.get_param(n)) for n in self.param_names())

    def load_state_dict(self, state, strict: bool = True) -> None:
        names = self.param_names()
        if strict:
            missing = [n for n in names if n not in state]
            extra = [k for k in state if k not in names]
            if missing or extra:
                raise errors.NotFoundError(
                    "load_state_dict: " + "; ".join(
                        s for s in (f"missing {missing}" if missing else "",
                                    f"unexpected {extra}" if extra else "") if s))
        for n in names:
            if n in state:
                shape = self.param_shape(n)
                arr = np.asarray(state[n])
                if tuple(arr.shape) != tuple(shape):
                    raise errors.ShapeError(
                        f"load_state_dict: {n!r} has shape {tuple(arr.shape)}, "
                        f"expected {tuple(shape)}")
                self.set_param(n, arr)

    # ---- compute ----
    def _targets(self, targets, masks, tmp):
        """targets/masks: sequences in head order (or dicts by task) of arrays, Tensors or
        None. Returns the two C arrays."""
        T = self.num_heads
        names = None

        def seq(x, what):
            nonlocal names
            if x is None:
                return None
            if isinstance(x, dict):
                if names is None:
                    names = self.task_names
                unknown = [k for k in x if k not in names]
                if unknown:
                    raise errors.NotFoundError(
                        f"{what}: unknown task(s) {unknown}; the model's tasks are {names}")
                x = [x.get(n) for n in names]
            out = []
            for i, v in enumerate(x):
                if v is None or isinstance(v, Tensor):
                    out.append(v)
                else:
                    ptr, _ = tmp.wrap(v, what=f"{what}[{i}]")
                    out.append(_Ptr(ptr))
            return out

        return (_tensor_array(seq(targets, "targets"), T, "targets"),
                _tensor_array(seq(masks, "masks"), T, "masks"))

    def _input(self, x, tmp):
        if isinstance(x, Tensor):
            return x._ptr
        ptr, _ = tmp.wrap(x, dtype=self._input_dtype, what="input")
        return ptr

    def train_step(self, optimizer: "Optimizer", x, targets, masks=None,
                   weighting: "Weighting | None" = None) -> np.ndarray:
        """One training step; returns the per-task losses (NaN for skipped tasks)."""
        losses = np.empty(self.num_heads, dtype=np.float32)
        with TempTensors() as tmp:
            xt = self._input(x, tmp)
            tg, mk = self._targets(targets, masks, tmp)
            C.mtl_model_train_step(self._ptr, optimizer._ptr,
                                   None if weighting is None else weighting._ptr, xt, tg, mk,
                                   losses.ctypes.data_as(ctypes.POINTER(c_float)))
        return losses

    def forward_backward(self, x, targets, masks=None,
                         weighting: "Weighting | None" = None) -> np.ndarray:
        """Forward and backward (gradients overwritten, parameters unchanged); returns the
        per-task losses. Read gradients with :meth:`get_grad`."""
        losses = np.empty(self.num_heads, dtype=np.float32)
        with TempTensors() as tmp:
            xt = self._input(x, tmp)
            tg, mk = self._targets(targets, masks, tmp)
            C.mtl_model_forward_backward(self._ptr,
                                         None if weighting is None else weighting._ptr, xt,
                                         tg, mk, losses.ctypes.data_as(ctypes.POINTER(c_float)))
        return losses

    def _inputs(self, inputs, tmp):
        """Per-task inputs (dict by task or sequence in head order; None skips a task)."""
        T = self.num_heads
        if isinstance(inputs, dict):
            names = self.task_names
            unknown = [k for k in inputs if k not in names]
            if unknown:
                raise errors.NotFoundError(
                    f"inputs: unknown task(s) {unknown}; the model's tasks are {names}")
            inputs = [inputs.get(n) for n in names]
        items = [None if v is None else _Ptr(self._input(v, tmp)) for v in inputs]
        return _tensor_array(items, T, "inputs")

    def train_step_multi(self, optimizer: "Optimizer", inputs, targets, masks=None,
                         weighting: "Weighting | None" = None) -> np.ndarray:
        """One training step where each task brings its own batch: inputs, targets (and
        masks) by task; a task with neither input nor target is skipped."""
        losses = np.empty(self.num_heads, dtype=np.float32)
        with TempTensors() as tmp:
            xs = self._inputs(inputs, tmp)
            tg, mk = self._targets(targets, masks, tmp)
            C.mtl_model_train_step_multi(self._ptr, optimizer._ptr,
                                         None if weighting is None else weighting._ptr, xs,
                                         tg, mk, losses.ctypes.data_as(ctypes.POINTER(c_float)))
        return losses

    def forward_backward_multi(self, inputs, targets, masks=None,
                               weighting: "Weighting | None" = None) -> np.ndarray:
        """Forward and backward with per-task batches (see train_step_multi)."""
        losses = np.empty(self.num_heads, dtype=np.float32)
        with TempTensors() as tmp:
            xs = self._inputs(inputs, tmp)
            tg, mk = self._targets(targets, masks, tmp)
            C.mtl_model_forward_backward_multi(
                self._ptr, None if weighting is None else weighting._ptr, xs, tg, mk,
                losses.ctypes.data_as(ctypes.POINTER(c_float)))
        return losses

    def compute_losses(self, x, targets, masks=None) -> np.ndarray:
        """Per-task losses in evaluation mode (no state change)."""
        losses = np.empty(self.num_heads, dtype=np.float32)
        with TempTensors() as tmp:
            xt = self._input(x, tmp)
            tg, mk = self._targets(targets, masks, tmp)
            C.mtl_model_compute_losses(self._ptr, xt, tg, mk,
                                       losses.ctypes.data_as(ctypes.POINTER(c_float)))
        return losses

    def predict_raw(self, x) -> None:
        """Run inference; read the heads' outputs with :meth:`output`."""
        with TempTensors() as tmp:
            C.mtl_model_predict(self._ptr, self._input(x, tmp))

    def output(self, head, probabilities: bool = False, out=None) -> np.ndarray:
        """Outputs [B, output_size] of a head (index or name) from the last predict."""
        idx = head if isinstance(head, (int, np.integer)) else self.head_index(head)
        B = C.mtl_model_output_batch(self._ptr)
        if out is None:
            C_out = C.mtl_head_output_size(C.mtl_model_head_at(self._ptr, int(idx)))
            # B == 0: no valid predict; a 1-element buffer lets the library say so.
            out = np.empty((B, C_out) if B else (1,), dtype=np.float32)
        with TempTensors() as tmp:
            ptr, arr = tmp.wrap(out, dtype=np.float32, what="out")
            C.mtl_model_output(self._ptr, int(idx), ptr,
                               OUTPUT_PROBABILITIES if probabilities else OUTPUT_RAW)
        if arr is not out:
            out[...] = arr.reshape(out.shape)
        return out

    def predict(self, x, probabilities: bool = False) -> dict:
        """Outputs of every head for one batch (at most max_batch samples), by task."""
        self.predict_raw(x)
        return {h.name: self.output(i, probabilities) for i, h in enumerate(self.heads)}

    @property
    def output_batch(self) -> int:
        return C.mtl_model_output_batch(self._ptr)

    def reseed(self, seed: int) -> None:
        C.mtl_model_reseed(self._ptr, int(seed) & 0xFFFFFFFFFFFFFFFF)

    def __repr__(self):
        if self.closed:
            return "<mtl.Model (closed)>"
        return (f"<mtl.Model input={self._input_shape} heads={self.task_names} "
                f"built={self.is_built}>")


class _Ptr:
    """A raw tensor pointer standing in for a Tensor inside _tensor_array."""

    __slots__ = ("_ptr",)

    def __init__(self, ptr):
        self._ptr = ptr


class Optimizer(HandleBase):
    """An optimizer bound to a built model: ``Optimizer(model, "adam", lr=1e-3, ...)``."""

    _kind = "optimizer"

    def __init__(self, model: Model, kind: str = "adam", **options):
        out = c_void_p()
        C.mtl_optimizer_create(byref(out), model._ptr, _b(kind))
        self._own(Resource(out.value, _free_optimizer, "optimizer", deps=(model._res,)))
        self._model = model
        try:
            self.set(**options)
        except BaseException:
            self.close()
            raise

    @property
    def model(self) -> Model:
        return self._model

    def set(self, **options) -> "Optimizer":
        """Set hyper-parameters by key (typed setter chosen from each value's type)."""
        ptr = self._ptr
        for key, value in options.items():
            set_option(key, value,
                       lambda k, v: C.mtl_optimizer_set_int(ptr, k, v),
                       lambda k, v: C.mtl_optimizer_set_double(ptr, k, v),
                       lambda k, v: C.mtl_optimizer_set_string(ptr, k, v),
                       f"optimizer {self.kind!r}")
        return self

    def set_int(self, key: str, value: int) -> None:
        C.mtl_optimizer_set_int(self._ptr, _b(key), int(value))

    def set_double(self, key: str, value: float) -> None:
        C.mtl_optimizer_set_double(self._ptr, _b(key), float(value))

    def set_string(self, key: str, value: str) -> None:
        C.mtl_optimizer_set_string(self._ptr, _b(key), _b(value))

    def get(self, key: str) -> float:
        v = c_double()
        C.mtl_optimizer_get_double(self._ptr, _b(key), byref(v))
        return v.value

    def keys(self) -> list:
        ptr = self._ptr
        out, i = [], 0
        while True:
            k = C.mtl_optimizer_key_name(ptr, i)
            if k is None:
                return out
            out.append(_s(k))
            i += 1

    def default(self, key: str) -> float:
        v = c_double()
        C.mtl_optimizer_key_default(self._ptr, _b(key), byref(v))
        return v.value

    def set_lr_scale(self, part: str, scale: float) -> None:
        C.mtl_optimizer_set_lr_scale(self._ptr, _b(part), float(scale))

    @property
    def kind(self) -> str:
        return _s(C.mtl_optimizer_kind(self._ptr))

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return C.mtl_optimizer_current_lr(self._ptr)

    @property
    def step_count(self) -> int:
        return C.mtl_optimizer_step_count(self._ptr)

    def step(self) -> None:
        """One update from the model's current gradients."""
        C.mtl_optimizer_step(self._ptr)

    def reset(self) -> None:
        C.mtl_optimizer_reset(self._ptr)

    def __repr__(self):
        if self.closed:
            return "<mtl.Optimizer (closed)>"
        return f"<mtl.Optimizer {self.kind!r} lr={self.lr:g} steps={self.step_count}>"


class Weighting(HandleBase):
    """How task losses combine: ``Weighting("ew", num_tasks, reduction="mean")``."""

    _kind = "weighting"

    def __init__(self, method: str, num_tasks: int, **options):
        out = c_void_p()
        C.mtl_weighting_create(byref(out), _b(method), int(num_tasks))
        self._own(Resource(out.value, _free_weighting, "weighting"))
        try:
            self.set(**options)
        except BaseException:
            self.close()
            raise

    def set(self, **options) -> "Weighting":
        ptr = self._ptr
        for key, value in options.items():
            if key == "weights":
                self.weights = value
                continue
            set_option(key, value,
                       lambda k, v: C.mtl_weighting_set_int(ptr, k, v),
                       lambda k, v: C.mtl_weighting_set_double(ptr, k, v),
                       lambda k, v: C.mtl_weighting_set_string(ptr, k, v),
                       f"weighting {self.method!r}")
        return self

    def set_int(self, key: str, value: int) -> None:
        C.mtl_weighting_set_int(self._ptr, _b(key), int(value))

    def set_double(self, key: str, value: float) -> None:
        C.mtl_weighting_set_double(self._ptr, _b(key), float(value))

    def set_string(self, key: str, value: str) -> None:
        C.mtl_weighting_set_string(self._ptr, _b(key), _b(value))

    def keys(self) -> list:
        ptr = self._ptr
        out, i = [], 0
        while True:
            k = C.mtl_weighting_key_name(ptr, i)
            if k is None:
                return out
            out.append(_s(k))
            i += 1

    def get_double(self, key: str) -> float:
        v = c_double()
        C.mtl_weighting_get_double(self._ptr, _b(key), byref(v))
        return v.value

    def get_int(self, key: str) -> int:
        v = c_int64()
        C.mtl_weighting_get_int(self._ptr, _b(key), byref(v))
        return v.value

    def get_string(self, key: str) -> str:
        v = ctypes.c_char_p()
        C.mtl_weighting_get_string(self._ptr, _b(key), byref(v))
        return _s(v.value)

    def get(self, key: str):
        """The current value of a key: int, float or str after the key's type."""
        for getter in (self.get_int, self.get_double):
            try:
                return getter(key)
            except errors.InvalidArgumentError:
                pass
        return self.get_string(key)

    def options(self) -> dict:
        """Every key with its current value."""
        return {k: self.get(k) for k in self.keys()}

    def reset(self) -> None:
        """Forget learned weights and history (keys keep their values)."""
        C.mtl_weighting_reset(self._ptr)

    @staticmethod
    def available() -> list:
        """The method names this library provides."""
        out, i = [], 0
        while True:
            n = C.mtl_weighting_available(i)
            if n is None:
                return out
            out.append(_s(n))
            i += 1

    @property
    def weights(self) -> np.ndarray:
        """Task weights of the most recent step (before any: the initial weights)."""
        n = self.num_tasks
        w = np.empty(n, dtype=np.float64)
        C.mtl_weighting_get_weights(self._ptr, w.ctypes.data_as(ctypes.POINTER(c_double)), n)
        return w

    @weights.setter
    def weights(self, values) -> None:
        w = np.ascontiguousarray(values, dtype=np.float64).ravel()
        C.mtl_weighting_set_weights(self._ptr, w.ctypes.data_as(ctypes.POINTER(c_double)),
                                    int(w.size))

    @property
    def method(self) -> str:
        return _s(C.mtl_weighting_method(self._ptr))

    @property
    def num_tasks(self) -> int:
        return C.mtl_weighting_num_tasks(self._ptr)

    def __repr__(self):
        if self.closed:
            return "<mtl.Weighting (closed)>"
        return f"<mtl.Weighting {self.method!r} tasks={self.num_tasks}>"
