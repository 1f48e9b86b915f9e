"""Evaluation metrics computed by the library, defined as scikit-learn defines them (see
include/mtl/metrics.h). Inputs are numpy arrays: class ids (int) or scores (float [N, C])
as predictions, int class ids as labels (-1 = missing), float targets for regression
(NaN = missing).

    mtl.metrics.accuracy(pred_ids, labels)
    mtl.metrics.f1(scores, labels, average="macro")
    mtl.metrics.compute("r2", pred, target)
"""

from __future__ import annotations

import ctypes
from ctypes import c_double, c_int, c_int64

import numpy as np

from ._lib import C
from .core import _b, _s
from .tensor import TempTensors

__all__ = ["accuracy", "precision", "recall", "f1", "per_class", "confusion", "roc_auc",
           "mse", "mae", "r2", "delta_m", "entity_f1", "compute", "lower_is_better", "names"]


def _pred(tmp, pred):
    a = np.asarray(pred)
    return tmp.wrap(a, dtype=np.float32 if a.dtype.kind == "f" else np.int32,
                    what="predictions")[0]


def _labels(tmp, labels):
    a = np.asarray(labels)
    if a.dtype.kind == "f":
        a = np.where(np.isnan(a), -1, a)
    return tmp.wrap(a, dtype=np.int32, what="labels")[0]


def _target(tmp, target):
    return tmp.wrap(target, dtype=np.float32, what="targets")[0]


def _call(fn, pred, labels, kind, *extra):
    out = c_double()
    with TempTensors() as tmp:
        p = _pred(tmp, pred) if kind != "regression" else _target(tmp, pred)
        t = _labels(tmp, labels) if kind != "regression" else _target(tmp, labels)
        fn(ctypes.byref(out), p, t, *extra)
    return out.value


def accuracy(pred, labels) -> float:
    return _call(C.mtl_metric_accuracy, pred, labels, "classification")


def precision(pred, labels, average: str = "macro") -> float:
    return _call(C.mtl_metric_precision, pred, labels, "classification", _b(average))


def recall(pred, labels, average: str = "macro") -> float:
    return _call(C.mtl_metric_recall, pred, labels, "classification", _b(average))


def f1(pred, labels, average: str = "macro") -> float:
    return _call(C.mtl_metric_f1, pred, labels, "classification", _b(average))


def roc_auc(scores, labels) -> float:
    return _call(C.mtl_metric_roc_auc, np.asarray(scores, np.float32), labels,
                 "classification")


def entity_f1(pred_tags, true_tags, tag_names) -> float:
    """Entity-level F1 of BIO (or IOBES) tag sequences, as conlleval counts it: an entity is
    correct when its type and span both match. pred_tags: int tag ids [B, L] or float scores
    [B, L, ntags]; true_tags: int [B, L] with -1 at padding; tag_names: e.g. ["O", "B-PER",
    "I-PER"]."""
    names = [_b(n) for n in tag_names]
    arr = (ctypes.c_char_p * len(names))(*names)
    out = c_double()
    with TempTensors() as tmp:
        p = _pred(tmp, pred_tags)
        t = _labels(tmp, true_tags)
        C.mtl_metric_entity_f1(ctypes.byref(out), p, t, arr, len(names))
    return out.value


def mse(pred, target) -> float:
    return _call(C.mtl_metric_mse, pred, target, "regression")


def mae(pred, target) -> float:
    return _call(C.mtl_metric_mae, pred, target, "regression")


def r2(pred, target) -> float:
    return _call(C.mtl_metric_r2, pred, target, "regression")


def per_class(pred, labels, num_classes: int) -> dict:
    """{"precision", "recall", "f1": float64 [K], "support": int64 [K]}."""
    K = int(num_classes)
    res = {k: np.zeros(K, np.float64) for k in ("precision", "recall", "f1")}
    res["support"] = np.zeros(K, np.int64)
    dp = ctypes.POINTER(c_double)
    with TempTensors() as tmp:
        C.mtl_metric_per_class(res["precision"].ctypes.data_as(dp),
                               res["recall"].ctypes.data_as(dp), res["f1"].ctypes.data_as(dp),
                               res["support"].ctypes.data_as(ctypes.POINTER(c_int64)), K,
                               _pred(tmp, pred), _labels(tmp, labels))
    return res


def confusion(pred, labels, num_classes: int) -> np.ndarray:
    """Confusion matrix [K, K]: row = label, column = prediction (scikit-learn's layout)."""
    K = int(num_classes)
    out = np.zeros((K, K), np.int64)
    with TempTensors() as tmp:
        C.mtl_metric_confusion(out.ctypes.data_as(ctypes.POINTER(c_int64)), K,
                               _pred(tmp, pred), _labels(tmp, labels))
    return out


def delta_m(values, baselines, lower_is_better=None) -> float:
    """Multi-task improvement over a baseline in percent (positive = better)."""
    v = np.ascontiguousarray(values, np.float64).ravel()
    b = np.ascontiguousarray(baselines, np.float64).ravel()
    low = None if lower_is_better is None else np.ascontiguousarray(
        lower_is_better, np.intc).ravel()
    T = v.size
    if b.size != T or (low is not None and low.size != T):
        from .errors import ShapeError
        raise ShapeError(f"delta_m: {T} values, {b.size} baselines"
                         + ("" if low is None else f", {low.size} lower_is_better flags"))
    out = c_double()
    dp = ctypes.POINTER(c_double)
    C.mtl_metric_delta_m(ctypes.byref(out), v.ctypes.data_as(dp), b.ctypes.data_as(dp),
                         None if low is None else low.ctypes.data_as(ctypes.POINTER(c_int)), T)
    return out.value


def compute(name: str, pred, target) -> float:
    """A metric by its configuration name (see :func:`names`)."""
    kind = "regression" if lower_is_better(name) or name == "r2" else "classification"
    if kind == "classification" and name == "roc_auc":
        pred = np.asarray(pred, np.float32)
    return _call(lambda out, p, t: C.mtl_metric_compute(out, _b(name), p, t), pred, target,
                 kind)


def lower_is_better(name: str) -> bool:
    r = C.mtl_metric_lower_is_better(_b(name))
    if r < 0:
        from ._lib import make_error
        raise make_error(C.mtl_last_status() or 10, "mtl_metric_lower_is_better")
    return bool(r)


def names() -> list:
    out, i = [], 0
    while True:
        n = C.mtl_metric_name(i)
        if n is None:
            return out
        out.append(_s(n))
        i += 1
