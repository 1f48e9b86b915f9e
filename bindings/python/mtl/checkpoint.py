"""Checkpoints (the whole training state, libmtl's own format) and safetensors (weights).

    mtl.save_checkpoint("run.ckpt", model, optimizer, weighting)   # atomic, checksummed
    model.load_checkpoint("run.ckpt", optimizer, weighting)        # into existing handles
    model, optimizer, weighting = mtl.load_checkpoint("run.ckpt")  # new handles
    print(mtl.describe_checkpoint("run.ckpt"))
    model.save_safetensors("w.safetensors")                        # PyTorch-readable

A checkpoint holds the architecture, weights and state, the random generator state, and
optionally the optimizer (hyper-parameters, moments, step count) and the weighting: training
continued from it is bit-identical to training that never stopped. Loading validates the
whole file before anything changes (see include/mtl/io.h).
"""

from __future__ import annotations

import ctypes
import os
import re
from ctypes import byref, c_size_t, c_void_p

from . import errors
from ._handle import Resource
from ._lib import C
from .core import Model, Optimizer, Weighting, _free_optimizer, _free_weighting

__all__ = ["save_checkpoint", "load_checkpoint", "load_checkpoint_into",
           "describe_checkpoint", "checkpoint_info", "model_info", "save_safetensors",
           "load_safetensors"]


def _path(p) -> bytes:
    return os.fsencode(p)


def _ptr(h):
    return None if h is None else h._ptr


def save_checkpoint(path, model: Model, optimizer: Optimizer | None = None,
                    weighting: Weighting | None = None) -> None:
    """Write model (and optimizer / weighting when given) to path, atomically."""
    C.mtl_checkpoint_save(_path(path), model._ptr, _ptr(optimizer), _ptr(weighting))


def load_checkpoint_into(path, model: Model, optimizer: Optimizer | None = None,
                         weighting: Weighting | None = None) -> None:
    """Restore a checkpoint into existing handles of the same architecture (optimizer of the
    stored kind, weighting of the stored method); nothing changes on an error."""
    C.mtl_checkpoint_load_into(_path(path), model._ptr, _ptr(optimizer), _ptr(weighting))


def describe_checkpoint(path) -> str:
    """The library's human-readable summary of a checkpoint (validated like a load)."""
    p = _path(path)
    cap = 4096
    while True:
        buf = ctypes.create_string_buffer(cap)
        needed = c_size_t(0)
        try:
            C.mtl_checkpoint_describe(p, buf, cap, byref(needed))
            return buf.value.decode("utf-8", "replace")
        except errors.RangeError:
            if needed.value <= cap:
                raise
            cap = needed.value


_INPUT = re.compile(r"^input: (float32|int32) \[([0-9, ]*)\], max_batch (\d+), seed (\d+)$",
                    re.M)
_LAYER = re.compile(r"^\s+(\d+) (\w+)((?: \S+=\S+)*)$")
_HEAD = re.compile(r"^  (\S+): (\d+) layers, loss (\w+)((?: \w+=\S+)*)(?: \((\d+) class "
                   r"weights\))?$")


def _value(text):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip('"')


def checkpoint_info(path) -> dict:
    """What the summary says, as a dict: input_shape, input_dtype, max_batch, seed, trunk
    and heads (layer kinds with their non-default options, losses), l2_trunk, l2_heads,
    has_optimizer, has_weighting. Real-valued options are as printed (6 significant
    digits); the weights themselves are exact in the file."""
    text = describe_checkpoint(path)
    m = _INPUT.search(text)
    if m is None:
        raise errors.FormatError(f"{os.fspath(path)}: unexpected checkpoint summary:\n{text}")
    info = {"input_dtype": m.group(1),
            "input_shape": [int(s) for s in m.group(2).split(",") if s.strip()],
            "max_batch": int(m.group(3)), "seed": int(m.group(4)),
            "trunk": [], "heads": {}, "l2_trunk": 0.0, "l2_heads": 0.0}
    section, head = None, None
    for line in text.splitlines():
        if line.startswith("trunk:"):
            section = "trunk"
            continue
        if line.startswith("heads:"):
            section = "heads"
            continue
        if not line.startswith(" "):
            section = None
            lm = re.match(r"^l2: trunk (\S+), heads (\S+)$", line)
            if lm:
                info["l2_trunk"], info["l2_heads"] = float(lm.group(1)), float(lm.group(2))
            continue
        lm = _LAYER.match(line)
        if section == "trunk" and lm:
            info["trunk"].append([lm.group(2), _options(lm.group(3))])
        elif section == "heads":
            hm = _HEAD.match(line)
            if hm and not lm:
                head = {"layers": [], "loss": hm.group(3), "loss_options": _options(hm.group(4))}
                if hm.group(5):
                    head["num_class_weights"] = int(hm.group(5))
                info["heads"][hm.group(1)] = head
            elif lm and head is not None:
                head["layers"].append([lm.group(2), _options(lm.group(3))])
    info["has_optimizer"] = "\noptimizer: none" not in text
    info["has_weighting"] = "\nweighting: none" not in text
    return info


# The summary names some layer options after the stored fields; the layer API's keys:
_KEYS = {"weight_init": "init", "init_std": "std", "init_gain": "gain"}


def _options(text):
    out = {}
    for item in text.split():
        k, _, v = item.partition("=")
        if k == "gelu_tanh":
            out["approximate"] = "tanh" if _value(v) else "none"
            continue
        out[_KEYS.get(k, k)] = _value(v)
    return out


def load_checkpoint(path, optimizer=None, weighting=None):
    """New handles from a checkpoint: (Model, Optimizer or None, Weighting or None).
    optimizer / weighting: None = load it when the file has one, True = it must be there
    (NotFoundError otherwise), False = leave it out."""
    info = checkpoint_info(path)
    want_opt = info["has_optimizer"] if optimizer is None else bool(optimizer)
    want_w = info["has_weighting"] if weighting is None else bool(weighting)
    m, o, w = c_void_p(), c_void_p(), c_void_p()
    C.mtl_checkpoint_load(_path(path), byref(m), byref(o) if want_opt else None,
                          byref(w) if want_w else None)
    model = Model._from_ptr(m.value, info["input_shape"], info["input_dtype"])
    opt = wt = None
    if o.value:
        opt = Optimizer.__new__(Optimizer)
        opt._own(Resource(o.value, _free_optimizer, "optimizer", deps=(model._res,)))
        opt._model = model
    if w.value:
        wt = Weighting.__new__(Weighting)
        wt._own(Resource(w.value, _free_weighting, "weighting"))
    return model, opt, wt


def model_info(ptr) -> dict:
    """checkpoint_info of a model handle (written to a temporary checkpoint): what the
    library knows of a model it built itself (input shape and dtype, layers, losses)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "model.ckpt")
        C.mtl_checkpoint_save(_path(p), ptr, None, None)
        return checkpoint_info(p)


def save_safetensors(path, model: Model) -> None:
    """The model's named tensors (float32, PyTorch layouts) as safetensors, atomically."""
    C.mtl_model_save_safetensors(model._ptr, _path(path))


def load_safetensors(path, model: Model) -> None:
    """Read every named tensor of model from a safetensors file (exact names and shapes, no
    extra tensors); the model is unchanged on an error."""
    C.mtl_model_load_safetensors(model._ptr, _path(path))

