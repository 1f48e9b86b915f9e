"""Evaluation and the library's trainer (``mtl_evaluate``, ``mtl_trainer``).

    ds = mtl.Dataset(X, {"label": y, "score": s}, tasks=model)
    train, val, _ = ds.split(val=0.2, seed=0)
    tr = mtl.Trainer(model, optimizer, weighting, train=train, val=val,
                     epochs=20, batch_size=64, early_stopping_patience=3)
    tr.run(callback=lambda event, epoch, step, values: None)
    print(tr.stop_reason, tr.eval_result)          # {"val.loss": ..., "val.label.accuracy": ...}
    mtl.evaluate(model, val, prefix="test")        # {"test.loss": ..., ...}

Trainer keys are the C library's (include/mtl/train.h), given as keyword arguments:
``epochs``, ``batch_size``, ``seed``, ``shuffle``, ``eval_every``, ``early_stopping_metric``,
``sampler``, ``log_path``, ``checkpoint_path``, ... and ``metrics={task: [names]}`` for the
``metrics.<task>`` keys.

Progress callback: ``fn(event, epoch, step, values)`` with event "step", "epoch" or "eval"
and values a dict: for "step" / "epoch" ``{"samples", "lr", "<task>.loss", ...}``, for
"eval" the evaluation's named values. Returning a true value (True, a non-zero number) stops
training after the current step; an exception raised inside stops it too and is re-raised
by :meth:`Trainer.run` once the library returns.
"""

from __future__ import annotations

import os
from ctypes import byref, c_char_p, c_double, c_int64, c_void_p

from . import errors
from ._handle import HandleBase, Resource
from ._lib import C, PROGRESS_FN
from .callbacks import CallbackBridge
from .core import Model, Optimizer, Weighting, _b, _s, set_option
from .dataset import Dataset

__all__ = ["evaluate", "Trainer", "eval_result_dict"]


def eval_result_dict(ptr) -> dict:
    """{name: value} of an mtl_eval_result (in the library's stable order)."""
    if not ptr:
        return {}
    n = C.mtl_eval_result_count(ptr)
    return {_s(C.mtl_eval_result_name(ptr, i)): C.mtl_eval_result_value(ptr, i)
            for i in range(n)}


def _model_parts(model):
    """(Model, MultiTaskModel or None) from either."""
    if isinstance(model, Model):
        return model, None
    inner = getattr(model, "model", None)
    if isinstance(inner, Model):
        return inner, model
    raise errors.InvalidArgumentError(
        f"expected an mtl.Model or mtl.MultiTaskModel, got {type(model).__name__}")


def _metric_string(value, what) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _b(value)
    try:
        return _b(",".join(str(v) for v in value))
    except TypeError:
        raise errors.InvalidArgumentError(
            f"{what}: a metric list (names or a comma-separated string), got {value!r}") from None


def _check_order(ds: Dataset, names, what):
    if ds.tasks is not None and list(ds.tasks) != list(names):
        raise errors.InvalidArgumentError(
            f"{what}: the dataset's task slots {ds.tasks} are not the model's heads {names} "
            "in order (slot t feeds head t)")


def evaluate(model, data, batch_size=None, prefix="val", metrics=None) -> dict:
    """Evaluate a built model (Model or MultiTaskModel) on a Dataset (every head reads its
    slot) or on one dataset per head (a list in head order or a dict by task; None skips a
    head). metrics: None for the defaults, a list/str applied to every head, or {task:
    list}. Returns {"<prefix>.loss": ..., "<prefix>.<task>.loss": ...,
    "<prefix>.<task>.<metric>": ...}. The model does not change."""
    m, _ = _model_parts(model)
    names = m.task_names
    T = len(names)
    if isinstance(data, Dataset):
        _check_order(data, names, "evaluate")
        items = [data]
    elif isinstance(data, dict):
        unknown = [k for k in data if k not in names]
        if unknown:
            raise errors.NotFoundError(f"evaluate: unknown task(s) {unknown}; the model's "
                                       f"tasks are {names}")
        items = [data.get(n) for n in names]
    else:
        items = list(data)
        if len(items) != T:
            raise errors.InvalidArgumentError(
                f"evaluate: {len(items)} datasets for {T} heads (pass one dataset, or one "
                "per head)")
    for d in items:
        if d is not None and not isinstance(d, Dataset):
            raise errors.InvalidArgumentError(
                f"evaluate: expected mtl.Dataset entries, got {type(d).__name__}")
    arr = (c_void_p * len(items))(*[None if d is None else d._ptr for d in items])
    mets = None
    if metrics is not None:
        if isinstance(metrics, dict):
            unknown = [k for k in metrics if k not in names]
            if unknown:
                raise errors.NotFoundError(f"evaluate: metrics for unknown task(s) {unknown}")
            per = [metrics.get(n) for n in names]
        else:
            per = [metrics] * T
        mets = (c_char_p * T)(*[_metric_string(v, "metrics") for v in per])
    bs = m.max_batch if batch_size is None else int(batch_size)
    out = c_void_p()
    C.mtl_evaluate(byref(out), m._ptr, arr, len(items), bs,
                   None if prefix is None else _b(prefix), mets)
    try:
        return eval_result_dict(out.value)
    finally:
        C.mtl_eval_result_free(out.value)


_NO_PROGRESS = PROGRESS_FN()  # a NULL function pointer (ctypes refuses None here)


def _free_trainer(ptr):
    C.mtl_trainer_free(ptr)


class Trainer(HandleBase):
    """The library's training loop over datasets (``mtl_trainer``).

    ``Trainer(model, optimizer=None, weighting=None, *, train=None, val=None,
    task_data=None, callback=None, **keys)``. model: a Model (then optimizer is required)
    or a compiled MultiTaskModel (its optimizer and weighting are the defaults).
    task_data: {task: train_dataset or (train, val)} for multi-input problems. The model,
    optimizer, weighting and datasets are kept alive as long as the trainer.
    """

    _kind = "trainer"

    def __init__(self, model, optimizer: Optimizer | None = None,
                 weighting: Weighting | None = None, *, train: Dataset | None = None,
                 val: Dataset | None = None, task_data=None, callback=None, **keys):
        m, mtm = _model_parts(model)
        if mtm is not None:
            optimizer = optimizer or mtm.optimizer
            weighting = weighting if weighting is not None else mtm.weighting
        if optimizer is None:
            raise errors.StateError("Trainer: an optimizer is needed (or compile the "
                                    "MultiTaskModel first)")
        out = c_void_p()
        C.mtl_trainer_create(byref(out), m._ptr, optimizer._ptr,
                             None if weighting is None else weighting._ptr)
        deps = [m._res, optimizer._res] + ([] if weighting is None else [weighting._res])
        self._own(Resource(out.value, _free_trainer, "trainer", deps=deps))
        self.model, self.optimizer, self.weighting = m, optimizer, weighting
        self.tasks = m.task_names
        self.callback = callback
        try:
            self.set(**keys)
            if train is not None:
                self.set_data(train, val)
            elif val is not None:
                raise errors.InvalidArgumentError("Trainer: val data without train data")
            for task, spec in (task_data or {}).items():
                tr, va = spec if isinstance(spec, (tuple, list)) else (spec, None)
                self.set_task_data(task, tr, va)
        except BaseException:
            self.close()
            raise

    @classmethod
    def _wrap(cls, ptr, model, optimizer, weighting, deps=()) -> "Trainer":
        """A trainer the library created (mtl_config_build_trainer)."""
        tr = cls.__new__(cls)
        own = [model._res, optimizer._res] + ([] if weighting is None else [weighting._res])
        tr._own(Resource(ptr, _free_trainer, "trainer", deps=own + list(deps)))
        tr.model, tr.optimizer, tr.weighting = model, optimizer, weighting
        tr.tasks = model.task_names
        tr.callback = None
        return tr

    # ---- data ----
    def _keep(self, *datasets):
        for d in datasets:
            if d is not None:
                if not isinstance(d, Dataset):
                    raise errors.InvalidArgumentError(
                        f"expected an mtl.Dataset, got {type(d).__name__}")
                self._res.add_dep(d._res)

    def set_data(self, train: Dataset, val: Dataset | None = None) -> "Trainer":
        """Single-input data: every head trains on its slot of train."""
        for d, what in ((train, "train"), (val, "val")):
            if isinstance(d, Dataset):
                _check_order(d, self.tasks, f"set_data ({what})")
        C.mtl_trainer_set_data(self._ptr, None if train is None else train._ptr,
                               None if val is None else val._ptr)
        self._keep(train, val)
        return self

    def set_task_data(self, task: str, train: Dataset | None,
                      val: Dataset | None = None) -> "Trainer":
        """Multi-input data for one task (its slot, or slot 0 of a one-slot dataset)."""
        C.mtl_trainer_set_task_data(self._ptr, _b(task), None if train is None else train._ptr,
                                    None if val is None else val._ptr)
        self._keep(train, val)
        return self

    # ---- keys ----
    def set(self, **keys) -> "Trainer":
        """Set keys by name (typed setter from the value's type); ``metrics={task: [...]}``
        sets the ``metrics.<task>`` keys."""
        ptr = self._ptr
        for key, value in keys.items():
            if key == "metrics":
                if not isinstance(value, dict):
                    raise errors.InvalidArgumentError(
                        "metrics: a dict {task: [metric names]} is needed")
                for task, names in value.items():
                    C.mtl_trainer_set_string(ptr, _b(f"metrics.{task}"),
                                             _metric_string(names, f"metrics[{task!r}]"))
                continue
            if value is None:
                value = ""   # string keys: "" = off / default
            set_option(key, value,
                       lambda k, v: C.mtl_trainer_set_int(ptr, k, v),
                       lambda k, v: C.mtl_trainer_set_double(ptr, k, v),
                       lambda k, v: C.mtl_trainer_set_string(ptr, k, v),
                       "trainer")
        return self

    def set_int(self, key: str, value: int) -> None:
        C.mtl_trainer_set_int(self._ptr, _b(key), int(value))

    def set_double(self, key: str, value: float) -> None:
        C.mtl_trainer_set_double(self._ptr, _b(key), float(value))

    def set_string(self, key: str, value: str) -> None:
        C.mtl_trainer_set_string(self._ptr, _b(key), _b(value))

    def get_int(self, key: str) -> int:
        v = c_int64()
        C.mtl_trainer_get_int(self._ptr, _b(key), byref(v))
        return v.value

    def get_double(self, key: str) -> float:
        v = c_double()
        C.mtl_trainer_get_double(self._ptr, _b(key), byref(v))
        return v.value

    def get_string(self, key: str) -> str:
        v = c_char_p()
        C.mtl_trainer_get_string(self._ptr, _b(key), byref(v))
        return _s(v.value)

    def get(self, key: str):
        """A key's value as int, float or str after its type."""
        try:
            return self.get_string(key)
        except errors.InvalidArgumentError:
            pass
        try:
            return self.get_int(key)
        except errors.InvalidArgumentError:
            return self.get_double(key)

    @staticmethod
    def keys() -> list:
        """The trainer's key names (``metrics.<task>`` not listed)."""
        out, i = [], 0
        while True:
            k = C.mtl_trainer_key_name(i)
            if k is None:
                return out
            out.append(_s(k))
            i += 1

    def options(self) -> dict:
        return {k: self.get(k) for k in self.keys()}

    # ---- running ----
    def _bridge(self, fn):
        T = len(self.tasks)
        step_names = ["samples", "lr"] + [f"{t}.loss" for t in self.tasks]
        res = self._res

        def convert(args):
            _user, event, epoch, step, values, nvalues = args
            ev = _s(event)
            if ev == "eval":
                ptr = C.mtl_trainer_eval_result(res.ptr)
                names = [_s(C.mtl_eval_result_name(ptr, i)) for i in range(nvalues)] \
                    if ptr else [str(i) for i in range(nvalues)]
            else:
                names = step_names if nvalues == 2 + T else [str(i) for i in range(nvalues)]
            vals = {names[i]: values[i] for i in range(nvalues)}
            return ev, int(epoch), int(step), vals

        def call(event, epoch, step, values):
            return 1 if fn(event, epoch, step, values) else 0

        return CallbackBridge(PROGRESS_FN, call, error_result=1, convert=convert)

    def run(self, callback=None) -> str:
        """Train (continuing from the trainer's position) until the epochs are done, early
        stopping triggers, max_steps is reached or the callback stops it. callback (or the
        constructor's): see the module docs. Returns the stop reason ("completed",
        "early_stopping", "max_steps", "callback")."""
        fn = callback if callback is not None else self.callback
        ptr = self._ptr
        if fn is None:
            C.mtl_trainer_set_progress(ptr, _NO_PROGRESS, None)
            C.mtl_trainer_run(ptr)
            return self.stop_reason
        bridge = self._bridge(fn)
        C.mtl_trainer_set_progress(ptr, bridge.pointer, None)
        try:
            with bridge:
                C.mtl_trainer_run(ptr)
        finally:
            C.mtl_trainer_set_progress(ptr, _NO_PROGRESS, None)
        return self.stop_reason

    def evaluate(self) -> dict:
        """One evaluation now (validation data and the training losses since the last)."""
        out = c_void_p()
        C.mtl_trainer_evaluate(self._ptr, byref(out))
        return eval_result_dict(out.value)

    @property
    def eval_result(self) -> dict | None:
        """The most recent evaluation, None before any."""
        ptr = C.mtl_trainer_eval_result(self._ptr)
        return eval_result_dict(ptr) if ptr else None

    def eval_value(self, name: str) -> float:
        """One value of the most recent evaluation by name."""
        ptr = C.mtl_trainer_eval_result(self._ptr)
        if not ptr:
            raise errors.StateError("no evaluation yet")
        v = c_double()
        C.mtl_eval_result_get(ptr, _b(name), byref(v))
        return v.value

    def resume(self, path) -> None:
        """Load a checkpoint (and "<path>.trainer", the position) written by this kind of
        trainer; the next run continues from there."""
        C.mtl_trainer_resume(self._ptr, os.fsencode(path))

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return C.mtl_trainer_epoch(self._ptr)

    @property
    def step(self) -> int:
        """Optimizer steps taken by this trainer."""
        return C.mtl_trainer_step(self._ptr)

    @property
    def steps_per_epoch(self) -> int:
        return C.mtl_trainer_steps_per_epoch(self._ptr)

    @property
    def stop_reason(self) -> str:
        """"" before a run, then "completed", "early_stopping", "max_steps", "callback"."""
        return _s(C.mtl_trainer_stop_reason(self._ptr))

    def best(self):
        """(value, epoch, step) of the best monitored value so far."""
        v, e, s = c_double(), c_int64(), c_int64()
        C.mtl_trainer_best(self._ptr, byref(v), byref(e), byref(s))
        return v.value, e.value, s.value

    def __repr__(self):
        if self.closed:
            return "<mtl.Trainer (closed)>"
        return (f"<mtl.Trainer epoch={self.epoch} step={self.step} "
                f"stop_reason={self.stop_reason!r}>")

