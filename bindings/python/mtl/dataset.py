"""Datasets and batch loaders (``mtl_dataset``, ``mtl_loader``).

A :class:`Dataset` holds N samples: inputs ``[N, ...]`` and, for each task slot, an optional
target ``[N, ...]`` and mask ``[N]``. Slot t feeds head t of the model (heads in the order
they were added); name the slots with ``tasks=`` to address them by task name.

    ds = mtl.Dataset(X, {"label": y, "score": s})          # zero-copy over numpy memory
    train, val, _ = ds.split(val=0.2, seed=0)
    for batch in mtl.Loader(train, batch_size=64, seed=1):
        ...                                                 # batch.input, batch.targets

Zero-copy rule (as :meth:`mtl.Tensor.from_numpy`): a C-contiguous, aligned, writeable
float32/int32 array is borrowed in place, and the dataset keeps the array alive. Anything
else is converted once into memory the dataset owns (``mtl_dataset_adopt*``); ``copy=False``
raises :class:`~mtl.errors.InvalidArgumentError` instead, ``copy=True`` always copies.
Target dtypes follow the heads' losses: int32 class ids ``[N]`` for cross_entropy, float32
``[N, C]`` (or ``[N]`` when C = 1) for bce and the regression losses (see
include/mtl/dataset.h).

Views (:meth:`Dataset.split`, :meth:`Dataset.subset`) and loaders keep their parent alive.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_char_p, c_int64, c_void_p

import numpy as np

from . import errors
from ._handle import HandleBase, Resource
from ._lib import C
from .core import _b, _tensor_array
from .tensor import Tensor, _wrappable, as_tensor_array, borrowed_view, tensor_code

__all__ = ["Dataset", "Loader", "Batch"]


def _path(p) -> bytes:
    return os.fsencode(p)


def _free_dataset(ptr):
    C.mtl_dataset_free(ptr)


def _free_loader(ptr):
    C.mtl_loader_free(ptr)


def _task_names(tasks):
    """A list of task names from a list, a Model or a MultiTaskModel (None stays None)."""
    if tasks is None:
        return None
    if hasattr(tasks, "task_names"):      # mtl.Model
        return list(tasks.task_names)
    if hasattr(tasks, "tasks") and hasattr(tasks, "model"):  # mtl.MultiTaskModel
        return list(tasks.tasks)
    names = [str(t) for t in tasks]
    if len(set(names)) != len(names):
        raise errors.InvalidArgumentError(f"tasks: duplicate task names in {names}")
    return names


def _prepare(data, copy, what):
    """(Tensor, borrowed) for one array: a tensor wrapping it in place (borrowed=True), or an
    owned tensor holding its values converted with one copy, to be adopted
    (borrowed=False)."""
    if isinstance(data, Tensor):
        raise errors.InvalidArgumentError(
            f"{what}: pass a numpy array (a Tensor's memory is not kept alive by a dataset)")
    arr = data if isinstance(data, np.ndarray) else np.asarray(data)
    code = tensor_code(arr, None, what)
    if copy is False:
        as_tensor_array(arr, None, False, what)  # raises, naming why, unless wrappable
    if copy is not True and _wrappable(arr, code):
        return Tensor.from_numpy(arr, copy=False), True
    if arr.size == 0:
        raise errors.InvalidArgumentError(f"{what} is empty (shape {arr.shape})")
    t = Tensor(arr.shape, code)
    try:
        view = t.numpy()
        view[...] = arr  # the one conversion copy
        del view
    except BaseException:
        t.close()
        raise
    return t, False


class Dataset(HandleBase):
    """A dataset over numpy arrays (see the module docs).

    ``Dataset(inputs, targets=None, masks=None, *, tasks=None, num_tasks=None, copy=None)``

    - targets: a dict {task: array} (slots named by ``tasks``, or the dict's order) or a
      sequence in slot order (None entries leave a slot unlabelled);
    - masks: the same form, 0 drops a sample from a task;
    - tasks: the slot names (a list, or a Model / MultiTaskModel for its heads' order);
    - num_tasks: the slot count when no names are given (default: len(targets), or 1).
    """

    _kind = "dataset"

    def __init__(self, inputs, targets=None, masks=None, *, tasks=None, num_tasks=None,
                 copy=None):
        tasks, n = self._slots(targets, tasks, num_tasks)
        t, borrowed = _prepare(inputs, copy, "inputs")
        out = c_void_p()
        try:
            if borrowed:
                C.mtl_dataset_create(byref(out), t._ptr, n)
            else:
                C.mtl_dataset_adopt(byref(out), t._ptr, n)
        except BaseException:
            t.close()
            raise
        if borrowed:
            self._own(Resource(out.value, _free_dataset, "dataset", deps=(t._res,)))
            t.close()  # freed once the dataset is
        else:
            t._res.detach()
            self._own(Resource(out.value, _free_dataset, "dataset"))
        self.tasks = tasks
        self._fill(targets, masks, copy)

    @staticmethod
    def _slots(targets, tasks, num_tasks):
        names = _task_names(tasks)
        if names is None and isinstance(targets, dict):
            names = [str(k) for k in targets]
        if names is not None:
            if num_tasks is not None and int(num_tasks) != len(names):
                raise errors.InvalidArgumentError(
                    f"num_tasks is {num_tasks} but {len(names)} task names are given")
            return names, len(names)
        if num_tasks is None:
            num_tasks = len(targets) if isinstance(targets, (list, tuple)) else 1
        return None, int(num_tasks)

    def _fill(self, targets, masks, copy):
        try:
            for what, items, setter in (("targets", targets, self.set_target),
                                        ("masks", masks, self.set_mask)):
                if items is None:
                    continue
                if isinstance(items, dict):
                    pairs = items.items()
                elif isinstance(items, (list, tuple)):
                    pairs = enumerate(items)
                elif self.num_tasks == 1:
                    pairs = [(0, items)]
                else:
                    raise errors.InvalidArgumentError(
                        f"{what}: a dict by task or a list in slot order is needed for "
                        f"{self.num_tasks} task slots")
                for task, value in pairs:
                    if value is not None:
                        setter(task, value, copy=copy)
        except BaseException:
            self.close()
            raise

    @classmethod
    def _wrap(cls, ptr, tasks, deps=()) -> "Dataset":
        ds = cls.__new__(cls)
        ds._own(Resource(ptr, _free_dataset, "dataset", deps=deps))
        ds.tasks = None if tasks is None else list(tasks)
        return ds

    # ---- other sources ----
    @classmethod
    def from_npy(cls, inputs_path, targets=None, masks=None, *, tasks=None,
                 num_tasks=None) -> "Dataset":
        """Inputs (and targets / masks: {task: path} or a list of paths) from .npy files,
        read by the library (large files are memory-mapped); the dataset owns them."""
        tasks, n = cls._slots(targets, tasks, num_tasks)
        out = c_void_p()
        C.mtl_dataset_create_npy(byref(out), _path(inputs_path), n)
        ds = cls._wrap(out.value, tasks)
        try:
            for items, load in ((targets, ds.load_target_npy), (masks, ds.load_mask_npy)):
                if items is None:
                    continue
                pairs = items.items() if isinstance(items, dict) else enumerate(items) \
                    if isinstance(items, (list, tuple)) else [(0, items)]
                for task, path in pairs:
                    if path is not None:
                        load(task, path)
        except BaseException:
            ds.close()
            raise
        return ds

    @classmethod
    def from_csv(cls, encoder, table, *, tasks=None, num_tasks=None, labels=None,
                 numeric=None) -> "Dataset":
        """Inputs from a CSV table through a fitted :class:`mtl.data.Encoder` (its feature
        transforms as float32, or else its id columns as int32). labels: {task:
        label_index or (label_index, as_float)} targets from the encoder's label transforms;
        numeric: {task: [column names]} float32 regression targets."""
        names = _task_names(tasks)
        if names is None and (labels or numeric):
            keys = list(labels or {}) + [k for k in (numeric or {}) if k not in (labels or {})]
            if all(isinstance(k, str) for k in keys):
                names = keys
        if names is not None:
            n = len(names)
        else:
            n = 1 if num_tasks is None else int(num_tasks)
        out = c_void_p()
        C.mtl_dataset_create_csv(byref(out), encoder._ptr, table._ptr, n)
        ds = cls._wrap(out.value, names)
        try:
            for task, spec in (labels or {}).items():
                index, as_float = spec if isinstance(spec, (tuple, list)) else (spec, False)
                ds.set_target_label(task, encoder, table, index, as_float)
            for task, cols in (numeric or {}).items():
                ds.set_target_numeric(task, table, cols)
        except BaseException:
            ds.close()
            raise
        return ds

    # ---- slots ----
    def slot(self, task) -> int:
        """The slot index of a task name (or an index, returned as is)."""
        if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
            return int(task)
        if self.tasks is None:
            raise errors.NotFoundError(
                f"task {task!r}: this dataset's slots have no names (pass tasks=... or use "
                "slot indices)")
        try:
            return self.tasks.index(str(task))
        except ValueError:
            raise errors.NotFoundError(
                f"unknown task {task!r}; the dataset's tasks are {self.tasks}") from None

    def _set(self, task, value, copy, borrow_fn, adopt_fn, what):
        slot = self.slot(task)
        if value is None:
            borrow_fn(self._ptr, slot, None)
            return
        t, borrowed = _prepare(value, copy, f"{what} of task {task!r}")
        try:
            (borrow_fn if borrowed else adopt_fn)(self._ptr, slot, t._ptr)
        except BaseException:
            t.close()
            raise
        if borrowed:
            self._res.add_dep(t._res)
            t.close()
        else:
            t._res.detach()

    def set_target(self, task, target, copy=None) -> "Dataset":
        """Set (None: clear) a slot's target: int32 class ids [N] for cross_entropy heads,
        float32 [N, C] for the others (zero-copy when possible)."""
        self._set(task, target, copy, C.mtl_dataset_set_target, C.mtl_dataset_adopt_target,
                  "target")
        return self

    def set_mask(self, task, mask, copy=None) -> "Dataset":
        """Set (None: clear) a slot's mask [N] (float32 or int32, booleans become int32; 0
        drops the sample)."""
        self._set(task, mask, copy, C.mtl_dataset_set_mask, C.mtl_dataset_adopt_mask, "mask")
        return self

    def load_target_npy(self, task, path) -> "Dataset":
        C.mtl_dataset_load_target_npy(self._ptr, self.slot(task), _path(path))
        return self

    def load_mask_npy(self, task, path) -> "Dataset":
        C.mtl_dataset_load_mask_npy(self._ptr, self.slot(task), _path(path))
        return self

    def set_target_label(self, task, encoder, table, label_index=0,
                         as_float=False) -> "Dataset":
        """A slot's target from the encoder's label transform label_index on table: int32
        class ids (as_float=False) or float32 [N, 1] 0/1 with NaN missing (for bce)."""
        C.mtl_dataset_set_target_label(self._ptr, self.slot(task), encoder._ptr, table._ptr,
                                       int(label_index), int(bool(as_float)))
        return self

    def set_target_numeric(self, task, table, columns) -> "Dataset":
        """A slot's target from numeric CSV columns (names): float32 [N, len(columns)]."""
        if isinstance(columns, str):
            columns = [columns]
        cols = (c_char_p * max(1, len(columns)))(*[_b(c) for c in columns])
        C.mtl_dataset_set_target_numeric(self._ptr, self.slot(task), table._ptr, cols,
                                         len(columns))
        return self

    # ---- queries ----
    def __len__(self) -> int:
        return C.mtl_dataset_size(self._ptr)

    @property
    def num_tasks(self) -> int:
        return C.mtl_dataset_num_tasks(self._ptr)

    def has_target(self, task) -> bool:
        return bool(C.mtl_dataset_has_target(self._ptr, self.slot(task)))

    def _view(self, ptr):
        return None if not ptr else borrowed_view(ptr, self._res)

    @property
    def inputs(self) -> np.ndarray:
        """The underlying inputs, a view without copy (a split's or subset's PARENT data:
        its rows are :meth:`indices`)."""
        return self._view(C.mtl_dataset_inputs(self._ptr))

    def target(self, task) -> np.ndarray | None:
        """The underlying target of a slot (view, no copy), None when unlabelled."""
        return self._view(C.mtl_dataset_target(self._ptr, self.slot(task)))

    def mask(self, task) -> np.ndarray | None:
        return self._view(C.mtl_dataset_mask(self._ptr, self.slot(task)))

    def index(self, i: int) -> int:
        """Row of the underlying data holding sample i (-1 when out of range)."""
        return C.mtl_dataset_index(self._ptr, int(i))

    def indices(self) -> np.ndarray:
        """Rows of the underlying data, one per sample (arange(N) unless a view)."""
        ptr = self._ptr
        return np.array([C.mtl_dataset_index(ptr, i) for i in range(len(self))], np.int64)

    # ---- views ----
    def split(self, val=0.0, test=0.0, seed=0):
        """(train, val, test) views from a seeded permutation; a fraction of 0 gives None.
        The views keep this dataset alive."""
        tr, va, te = c_void_p(), c_void_p(), c_void_p()
        C.mtl_dataset_split(self._ptr, byref(tr), byref(va), byref(te), float(val),
                            float(test), int(seed) & 0xFFFFFFFFFFFFFFFF)
        return tuple(None if not p.value else
                     Dataset._wrap(p.value, self.tasks, deps=(self._res,))
                     for p in (tr, va, te))

    def subset(self, indices) -> "Dataset":
        """A view of the given samples (may repeat); keeps this dataset alive."""
        idx = np.ascontiguousarray(indices, dtype=np.int64).ravel()
        out = c_void_p()
        C.mtl_dataset_subset(byref(out), self._ptr,
                             idx.ctypes.data_as(ctypes.POINTER(c_int64)), int(idx.size))
        return Dataset._wrap(out.value, self.tasks, deps=(self._res,))

    def gather(self, indices):
        """Copies of the given samples: (inputs, targets, masks) where targets and masks are
        lists by slot (None where a slot has no target; a missing mask reads as ones)."""
        idx = np.ascontiguousarray(indices, dtype=np.int64).ravel()
        n = int(idx.size)
        src = self.inputs
        x = np.empty((n,) + src.shape[1:], src.dtype)
        T = self.num_tasks
        ys, ms = [None] * T, [None] * T
        for t in range(T):
            y = self._view(C.mtl_dataset_target(self._ptr, t))
            if y is None:
                continue
            ys[t] = np.empty((n,) + y.shape[1:], y.dtype)
            m = self._view(C.mtl_dataset_mask(self._ptr, t))
            ms[t] = np.empty(n, np.float32) if m is None else np.empty((n,) + m.shape[1:],
                                                                        m.dtype)
        keep = []

        def wrap(a):
            if a is None or a.size == 0:
                return None
            tt = Tensor.from_numpy(a, copy=False)
            keep.append(tt)
            return tt

        try:
            xt = wrap(x)
            tg = _tensor_array([wrap(a) for a in ys], T, "targets")
            mk = _tensor_array([wrap(a) for a in ms], T, "masks")
            C.mtl_dataset_gather(self._ptr, idx.ctypes.data_as(ctypes.POINTER(c_int64)), n,
                                 None if xt is None else xt._ptr, tg, mk)
        finally:
            for tt in keep:
                tt.close()
        return x, ys, ms

    def __repr__(self):
        if self.closed:
            return "<mtl.Dataset (closed)>"
        return (f"<mtl.Dataset n={len(self)} tasks={self.tasks or self.num_tasks} "
                f"labelled={[self.has_target(t) for t in range(self.num_tasks)]}>")


class Batch:
    """One batch of a :class:`Loader`: ``input``, ``targets`` and ``masks`` (lists by slot,
    None where absent) are numpy views of the loader's buffers, valid until its next
    batch (copy them to keep them)."""

    __slots__ = ("input", "targets", "masks", "rows")

    def __init__(self, input, targets, masks, rows):
        self.input, self.targets, self.masks, self.rows = input, targets, masks, rows

    def __iter__(self):
        return iter((self.input, self.targets, self.masks))

    def __len__(self):
        return self.rows

    def __repr__(self):
        return f"<mtl.Batch rows={self.rows}>"


class Loader(HandleBase):
    """Batches over a dataset: ``Loader(dataset, batch_size, shuffle=True, seed=0,
    drop_last=False)``. Iterating gives the :class:`Batch` es of one pass (each pass is
    reshuffled, from (seed, pass) only). The loader keeps its dataset alive."""

    _kind = "loader"

    def __init__(self, dataset: Dataset, batch_size: int, shuffle=True, seed=0,
                 drop_last=False):
        out = c_void_p()
        C.mtl_loader_create(byref(out), dataset._ptr, int(batch_size), int(bool(shuffle)),
                            int(seed) & 0xFFFFFFFFFFFFFFFF, int(bool(drop_last)))
        self._own(Resource(out.value, _free_loader, "loader", deps=(dataset._res,)))
        self.dataset = dataset
        self._T = dataset.num_tasks
        self.rows = 0

    def next(self) -> int:
        """Gather the next batch; returns its rows (0 at the end of a pass, after which the
        loader is at the next pass)."""
        rows = c_int64(0)
        C.mtl_loader_next(self._ptr, byref(rows))
        self.rows = rows.value
        return self.rows

    def batch(self) -> Batch:
        """The current batch (views; see :class:`Batch`)."""
        ptr = self._ptr
        if not self.rows:
            raise errors.StateError("the loader has no current batch (call next() first)")
        x = borrowed_view(C.mtl_loader_input(ptr), self._res)
        tg, mk = C.mtl_loader_targets(ptr), C.mtl_loader_masks(ptr)
        ys = [None if not tg[t] else borrowed_view(tg[t], self._res) for t in range(self._T)]
        ms = [None if not mk[t] else borrowed_view(mk[t], self._res) for t in range(self._T)]
        return Batch(x, ys, ms, self.rows)

    def __iter__(self):
        """The remaining batches of the current pass."""
        while self.next():
            yield self.batch()

    def train_step(self, model, optimizer, weighting=None) -> np.ndarray:
        """One training step of model on the current batch, the loader's tensors passed to
        mtl_model_train_step as they are; returns the per-task losses."""
        ptr = self._ptr
        if not self.rows:
            raise errors.StateError("the loader has no current batch (call next() first)")
        if self._T != model.num_heads:
            raise errors.ShapeError(f"the dataset has {self._T} task slots, the model "
                                    f"{model.num_heads} heads")
        losses = np.empty(self._T, np.float32)
        C.mtl_model_train_step(model._ptr, optimizer._ptr,
                               None if weighting is None else weighting._ptr,
                               C.mtl_loader_input(ptr), C.mtl_loader_targets(ptr),
                               C.mtl_loader_masks(ptr),
                               losses.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return losses

    @property
    def num_batches(self) -> int:
        return C.mtl_loader_num_batches(self._ptr)

    def __len__(self):
        return self.num_batches

    @property
    def pass_index(self) -> int:
        """The current pass (0-based)."""
        return C.mtl_loader_pass(self._ptr)

    @property
    def position(self) -> int:
        """Batches already taken from the current pass."""
        return C.mtl_loader_position(self._ptr)

    def seek(self, pass_index: int, position: int = 0) -> None:
        """Move to batch ``position`` of pass ``pass_index`` (to resume)."""
        C.mtl_loader_seek(self._ptr, int(pass_index), int(position))
        self.rows = 0

    def __repr__(self):
        if self.closed:
            return "<mtl.Loader (closed)>"
        return (f"<mtl.Loader batches={self.num_batches} pass={self.pass_index} "
                f"position={self.position}>")
