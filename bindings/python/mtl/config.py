"""YAML run configurations read by the library (``mtl_config``; docs/config.md).

    cfg = mtl.Config.load("examples/configs/default.yaml")
    cfg.set("training.epochs", 3)                 # as `mtl train --set training.epochs=3`
    model = mtl.MultiTaskModel.from_config(cfg)   # model, optimizer and weighting of the file
    trainer = cfg.build_trainer(model)            # with the file's data and training keys
    trainer.run()
    mtl.evaluate(model, cfg.build_dataset("test"), prefix="test")

The library validates the whole file (schema, then every setting through the public calls);
errors carry "FILE:LINE:COLUMN: " and the status of their kind (FormatError for YAML syntax
and types, InvalidArgumentError for unknown keys and names, NotFoundError for missing
required keys, RangeError, MtlIOError). A dict in this schema works too
(``Config.from_dict``): it is handed to the library's parser as JSON, which is YAML.

Ownership: datasets and trainers built from a Config read its data and keep it alive.
"""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import byref, c_char_p, c_double, c_int, c_int64, c_size_t, c_void_p

import numpy as np

from . import errors
from ._handle import HandleBase, Resource
from ._lib import C
from .core import Model, Optimizer, Weighting, _b, _free_optimizer, _free_weighting, _s
from .dataset import Dataset

__all__ = ["Config"]


def _path(p) -> bytes:
    return os.fsencode(p)


def _free_config(ptr):
    C.mtl_config_free(ptr)


def _yaml_value(value) -> str:
    """A Python value as the YAML text mtl_config_set reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    raise errors.InvalidArgumentError(
        f"config value {value!r} of type {type(value).__name__}: use str, bool, int, float, "
        "list or dict")


def _read_text(fn, *args) -> str:
    """A string from a (buf, cap, needed) call, growing the buffer when it is too small."""
    cap = 4096
    while True:
        buf = ctypes.create_string_buffer(cap)
        needed = c_size_t(0)
        try:
            fn(*args, buf, cap, byref(needed))
            return buf.value.decode("utf-8", "replace")
        except errors.RangeError:
            if needed.value <= cap:
                raise
            cap = needed.value


class Config(HandleBase):
    """A validated run configuration. Create with :meth:`load`, :meth:`parse` or
    :meth:`from_dict`."""

    _kind = "config"

    @classmethod
    def _wrap(cls, ptr, path=None) -> "Config":
        c = cls.__new__(cls)
        c._own(Resource(ptr, _free_config, "config"))
        c.path = path
        return c

    @classmethod
    def load(cls, path) -> "Config":
        """Read and validate a YAML file (relative data paths start at its directory)."""
        out = c_void_p()
        C.mtl_config_load(byref(out), _path(path))
        return cls._wrap(out.value, os.fspath(path))

    @classmethod
    def parse(cls, text, name=None, base_dir=None) -> "Config":
        """Validate YAML text; name stands for the file in messages, base_dir is where
        relative data paths start (None: the working directory)."""
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = c_void_p()
        C.mtl_config_parse(byref(out), raw, len(raw), None if name is None else _b(name),
                           None if base_dir is None else _path(base_dir))
        return cls._wrap(out.value)

    @classmethod
    def from_dict(cls, config: dict, name="<dict>", base_dir=None) -> "Config":
        """A configuration given as a dict of the file's schema (sections data, model, tasks,
        weighting, optimizer, training)."""
        if not isinstance(config, dict):
            raise errors.InvalidArgumentError(
                f"Config.from_dict: expected a dict, got {type(config).__name__}")
        try:
            text = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidArgumentError(f"Config.from_dict: {exc}") from None
        return cls.parse(text, name, base_dir)

    # ---- settings ----
    def set(self, key: str, value) -> "Config":
        """Override one setting (``--set KEY=VALUE``); the value may be a Python value or
        the YAML text. The whole configuration is validated again; nothing changes on an
        error."""
        C.mtl_config_set(self._ptr, _b(key), _b(_yaml_value(value)))
        return self

    def get_int(self, key: str) -> int:
        v = c_int64()
        C.mtl_config_get_int(self._ptr, _b(key), byref(v))
        return v.value

    def get_double(self, key: str) -> float:
        v = c_double()
        C.mtl_config_get_double(self._ptr, _b(key), byref(v))
        return v.value

    def get_string(self, key: str) -> str:
        v = c_char_p()
        C.mtl_config_get_string(self._ptr, _b(key), byref(v))
        return _s(v.value)

    def count(self, key: str) -> int:
        """Items of a list / keys of a mapping at key (1 for a value, 0 when absent)."""
        n = c_int(0)
        C.mtl_config_count(self._ptr, _b(key), byref(n))
        return n.value

    def get(self, key: str):
        """The effective single value at key, typed as the text reads: bool for true/false,
        int, float, else str. A list or mapping raises InvalidArgumentError (use
        :meth:`count` and item keys, or :meth:`to_dict`)."""
        text = self.get_string(key)
        if text in ("true", "false"):
            return text == "true"
        for getter in (self.get_int, self.get_double):
            try:
                return getter(key)
            except errors.InvalidArgumentError:
                pass
        return text

    def __getitem__(self, key: str):
        return self.get(key)

    def __setitem__(self, key: str, value) -> None:
        self.set(key, value)

    def data_path(self, key: str) -> str:
        """A data path setting resolved as the library opens it."""
        return _read_text(C.mtl_config_data_path, self._ptr, _b(key))

    @property
    def tasks(self) -> list:
        """Task names in head order."""
        ptr = self._ptr
        return [_s(C.mtl_config_task_name(ptr, i)) for i in range(C.mtl_config_num_tasks(ptr))]

    def dump(self) -> str:
        """The effective configuration as YAML (every default filled in)."""
        return _read_text(C.mtl_config_dump, self._ptr)

    def to_dict(self) -> dict:
        """The effective configuration as a dict (needs PyYAML)."""
        import yaml  # Debian python3-yaml

        return yaml.safe_load(self.dump())

    # ---- builders ----
    def build_model(self) -> Model:
        """The model of the file, built (a low-level :class:`mtl.Model`)."""
        out = c_void_p()
        C.mtl_config_build_model(self._ptr, byref(out))
        try:
            shape, dtype = self._input()
        except errors.MtlError:
            C.mtl_model_free(out.value)
            raise
        if shape is None:   # from the training data: ask the built model
            from .checkpoint import model_info

            try:
                info = model_info(out.value)
            except errors.MtlError:
                C.mtl_model_free(out.value)
                raise
            shape, dtype = info["input_shape"], info["input_dtype"]
        return Model._from_ptr(out.value, shape, dtype)

    def _input(self):
        """(shape, dtype) of model.input when the file gives it, else (None, None)."""
        n = self.count("model.input.shape")
        if n == 0:
            return None, None
        shape = [self.get_int(f"model.input.shape.{i}") for i in range(n)]
        try:
            dtype = self.get_string("model.input.dtype")
        except errors.NotFoundError:
            dtype = "float32"
        return shape, dtype

    def build_optimizer(self, model, steps_per_epoch: int = 0) -> Optimizer:
        """The optimizer of the file for a built model (steps_per_epoch 0: from the data
        when the schedule needs it)."""
        m = getattr(model, "model", model)
        out = c_void_p()
        C.mtl_config_build_optimizer(self._ptr, m._ptr, int(steps_per_epoch), byref(out))
        opt = Optimizer.__new__(Optimizer)
        opt._own(Resource(out.value, _free_optimizer, "optimizer", deps=(m._res,)))
        opt._model = m
        return opt

    def build_weighting(self) -> Weighting:
        out = c_void_p()
        C.mtl_config_build_weighting(self._ptr, byref(out))
        w = Weighting.__new__(Weighting)
        w._own(Resource(out.value, _free_weighting, "weighting"))
        return w

    def build_dataset(self, split: str = "train", task: str | None = None) -> Dataset:
        """A dataset over one split ("train", "validation", "test") of the file's data (a
        task's own data for multi-input problems). It keeps this configuration alive; from
        now on :meth:`set` refuses changes."""
        out = c_void_p()
        C.mtl_config_build_dataset(self._ptr, _b(split), None if task is None else _b(task),
                                   byref(out))
        return Dataset._wrap(out.value, None if task is not None else self.tasks,
                             deps=(self._res,))

    def build_trainer(self, model, optimizer=None, weighting=None):
        """A :class:`mtl.Trainer` with the file's training keys, metrics and data. model: a
        Model (then optimizer is needed) or a MultiTaskModel (its optimizer and weighting by
        default)."""
        from .train import Trainer, _model_parts

        m, mtm = _model_parts(model)
        if mtm is not None:
            optimizer = optimizer or mtm.optimizer
            weighting = weighting if weighting is not None else mtm.weighting
        if optimizer is None:
            raise errors.StateError("build_trainer: an optimizer is needed")
        out = c_void_p()
        C.mtl_config_build_trainer(self._ptr, m._ptr, optimizer._ptr,
                                   None if weighting is None else weighting._ptr, byref(out))
        return Trainer._wrap(out.value, m, optimizer, weighting, deps=(self._res,))

    def encode_csv(self, path) -> np.ndarray:
        """Encode a CSV file's feature columns as the model's input (the encoder fitted on
        the training table); a numpy array over the library's buffer."""
        out = c_void_p()
        C.mtl_config_encode_csv(self._ptr, _path(path), byref(out))
        from .data import _owned_array

        return _owned_array(out.value)

    def __repr__(self):
        if self.closed:
            return "<mtl.Config (closed)>"
        return f"<mtl.Config {self.path or '<text>'} tasks={self.tasks}>"

