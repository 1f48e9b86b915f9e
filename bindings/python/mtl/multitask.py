"""The Pythonic layer: :class:`MultiTaskModel` builds a model from a description, trains it
on numpy arrays and reports per-task metrics as dicts.

    model = mtl.MultiTaskModel(
        input_shape=(784,),
        trunk=[("linear", {"out": 256}), "relu"],
        heads={"digit": {"layers": [("linear", {"out": 10})], "loss": "cross_entropy"},
               "value": {"layers": [("linear", {"out": 1})], "loss": "mse"}},
        seed=0, max_batch=256)
    model.compile(optimizer="adam", lr=1e-3, weighting="ew")
    history = model.fit(X, {"digit": y1, "value": y2}, epochs=5, batch_size=64)
    metrics = model.evaluate(X, {"digit": y1, "value": y2})
    outputs = model.predict(X, probabilities=True)

Layer specs: ``"relu"``, ``("linear", {"out": 10})``, or ``{"type": "linear", "out": 10}``.
Head specs: a dict with ``layers``, ``loss`` (default "mse"), optional ``loss_options``
(label_smoothing, delta) and ``class_weights``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np

from . import errors
from .core import Model, Optimizer, Weighting
from .tensor import Tensor

__all__ = ["MultiTaskModel", "CLASSIFICATION_LOSSES"]

CLASSIFICATION_LOSSES = ("cross_entropy", "ce")
_INDEX_LOSSES = CLASSIFICATION_LOSSES
_FORMAT_VERSION = 1


def _layer_spec(spec, where):
    if isinstance(spec, str):
        return [spec, {}]
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("type", None) or spec.pop("kind", None)
        if not kind:
            raise errors.InvalidArgumentError(f"{where}: layer dict needs a 'type' key: {spec}")
        return [kind, spec]
    if isinstance(spec, (list, tuple)) and len(spec) in (1, 2) and isinstance(spec[0], str):
        opts = spec[1] if len(spec) == 2 else {}
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise errors.InvalidArgumentError(
                f"{where}: layer options must be a dict, got {opts!r}")
        return [spec[0], dict(opts)]
    raise errors.InvalidArgumentError(
        f"{where}: cannot read layer spec {spec!r} (use 'relu', ('linear', {{'out': 8}}) "
        "or {'type': 'linear', 'out': 8})")


def _head_spec(task, spec):
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise errors.InvalidArgumentError(f"head {task!r}: spec must be a dict, got {spec!r}")
    unknown = set(spec) - {"layers", "loss", "loss_options", "class_weights"}
    if unknown:
        raise errors.InvalidArgumentError(
            f"head {task!r}: unknown key(s) {sorted(unknown)} (layers, loss, loss_options, "
            "class_weights)")
    out = {"layers": [_layer_spec(s, f"head {task!r} layer {i}")
                      for i, s in enumerate(spec.get("layers", []))],
           "loss": spec.get("loss", "mse"),
           "loss_options": dict(spec.get("loss_options") or {})}
    if spec.get("class_weights") is not None:
        out["class_weights"] = [float(w) for w in np.asarray(spec["class_weights"]).ravel()]
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class MultiTaskModel:
    """A built multi-task model with optional optimizer and weighting (see module docs)."""

    def __init__(self, input_shape, trunk=(), heads=None, *, input_dtype="float32", seed=0,
                 max_batch=256, l2_trunk=0.0, l2_heads=0.0):
        if not heads:
            raise errors.InvalidArgumentError("MultiTaskModel: at least one head is needed")
        shape = [int(input_shape)] if np.isscalar(input_shape) else [int(s) for s in input_shape]
        self.config = _jsonable({
            "input_shape": shape,
            "input_dtype": str(np.dtype(input_dtype)),
            "trunk": [_layer_spec(s, f"trunk layer {i}") for i, s in enumerate(trunk)],
            "heads": OrderedDict((str(t), _head_spec(t, s)) for t, s in heads.items()),
            "seed": int(seed),
            "max_batch": int(max_batch),
            "l2_trunk": float(l2_trunk),
            "l2_heads": float(l2_heads),
        })
        self.model = Model(shape, input_dtype)
        try:
            self._build()
        except BaseException:
            self.model.close()
            raise
        self.optimizer: Optimizer | None = None
        self.weighting: Weighting | None = None
        self._compile_args = None
        self.history: dict = {}

    def _build(self):
        cfg, m = self.config, self.model
        if cfg["l2_trunk"]:
            m.set_double("l2_trunk", cfg["l2_trunk"])
        if cfg["l2_heads"]:
            m.set_double("l2_heads", cfg["l2_heads"])
        for kind, opts in cfg["trunk"]:
            m.trunk.add_layer(kind, **opts)
        for task, spec in cfg["heads"].items():
            h = m.add_head(task)
            for kind, opts in spec["layers"]:
                h.add_layer(kind, **opts)
            h.set_loss(spec["loss"], **spec["loss_options"])
            if "class_weights" in spec:
                h.set_class_weights(spec["class_weights"])
        m.build(cfg["max_batch"], cfg["seed"])
        self.tasks = m.task_names
        self.losses = {h.name: h.loss for h in m.heads}
        self.output_sizes = {h.name: h.output_size for h in m.heads}

    # ---- lifecycle ----
    def close(self):
        """Free the optimizer, weighting and model now."""
        for h in (self.optimizer, self.weighting, self.model):
            if h is not None:
                h.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def max_batch(self) -> int:
        return self.config["max_batch"]

    @property
    def num_params(self) -> int:
        return self.model.num_params

    def summary(self) -> str:
        lines = [f"MultiTaskModel: input {tuple(self.config['input_shape'])} "
                 f"{self.config['input_dtype']}, {self.model.num_params} parameters "
                 f"({self.model.num_shared_params} shared)"]
        for n in self.model.param_names():
            lines.append(f"  {n:<32} {self.model.param_shape(n)}")
        for t in self.tasks:
            lines.append(f"  head {t!r}: loss {self.losses[t]}, {self.output_sizes[t]} outputs")
        return "\n".join(lines)

    # ---- training setup ----
    def compile(self, optimizer="adam", lr=None, weighting="ew", weighting_options=None,
                lr_scales=None, **optimizer_options) -> "MultiTaskModel":
        """Choose the optimizer and the task weighting by name with keyword hyper-parameters
        (``compile(optimizer="sgd", lr=0.1, momentum=0.9, weighting="fixed",
        weighting_options={"weights": [1, 0.5]})``). lr_scales: {part: scale} per-part
        learning-rate multipliers ("trunk", a task name, "heads")."""
        opts = dict(optimizer_options)
        if lr is not None:
            opts["lr"] = lr
        new_opt = optimizer if isinstance(optimizer, Optimizer) else Optimizer(
            self.model, optimizer, **opts)
        try:
            new_w = weighting if isinstance(weighting, Weighting) or weighting is None else \
                Weighting(weighting, len(self.tasks), **(weighting_options or {}))
        except BaseException:
            if new_opt is not optimizer:
                new_opt.close()
            raise
        for part, scale in (lr_scales or {}).items():
            new_opt.set_lr_scale(part, scale)
        for old, new in ((self.optimizer, new_opt), (self.weighting, new_w)):
            if old is not None and old is not new:
                old.close()
        self.optimizer, self.weighting = new_opt, new_w
        if isinstance(optimizer, str) and (weighting is None or isinstance(weighting, str)):
            self._compile_args = _jsonable(dict(
                optimizer=optimizer, weighting=weighting,
                weighting_options=dict(weighting_options or {}),
                lr_scales=dict(lr_scales or {}), **opts))
        return self

    def _need_optimizer(self):
        if self.optimizer is None:
            raise errors.StateError("call compile(optimizer=..., ...) before training")

    # ---- data conversion ----
    def _x(self, X) -> np.ndarray:
        X = np.asarray(X)
        want = tuple(self.config["input_shape"])
        dt = np.dtype(self.config["input_dtype"])
        if X.ndim == len(want) and X.shape == want:
            raise errors.ShapeError(
                f"input has shape {X.shape}: a batch dimension is needed ({(1,) + want})")
        if X.shape[1:] != want:
            raise errors.ShapeError(
                f"input has shape {X.shape}, expected (N, {', '.join(map(str, want))})")
        if dt == np.int32 and X.dtype.kind == "f":
            raise errors.InvalidArgumentError("input must hold integer token ids")
        if X.dtype != dt or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=dt)  # one conversion copy
        return X

    def _y(self, task, y, n) -> np.ndarray:
        y = np.asarray(y)
        if len(y) != n:
            raise errors.ShapeError(f"targets for task {task!r} have {len(y)} rows, "
                                    f"the input has {n}")
        if self.losses[task] in _INDEX_LOSSES:
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.dtype.kind == "f":
                missing = np.isnan(y)
                if np.any(np.isfinite(y) & (y != np.round(y))):
                    raise errors.InvalidArgumentError(
                        f"targets for classification task {task!r} must be class ids "
                        "(integers; -1 or NaN for missing)")
                y = np.where(missing, -1, y)
            elif y.dtype.kind not in "iub":
                raise errors.InvalidArgumentError(
                    f"targets for classification task {task!r} must be integer class ids, "
                    f"got dtype {y.dtype}")
            return np.ascontiguousarray(y, dtype=np.int32)
        C = self.output_sizes[task]
        y = np.ascontiguousarray(y, dtype=np.float32)
        if y.ndim == 1 and C != 1:
            raise errors.ShapeError(
                f"targets for task {task!r} have shape {y.shape}, expected ({n}, {C})")
        return y

    def _ys(self, Y, n, what="targets") -> dict:
        if not isinstance(Y, dict):
            if len(self.tasks) == 1:
                Y = {self.tasks[0]: Y}
            else:
                raise errors.InvalidArgumentError(
                    f"{what} must be a dict by task name ({self.tasks})")
        unknown = [k for k in Y if k not in self.tasks]
        if unknown:
            raise errors.NotFoundError(
                f"{what}: unknown task(s) {unknown}; the model's tasks are {self.tasks}")
        return {t: self._y(t, Y[t], n) for t in self.tasks if Y.get(t) is not None}

    def _masks(self, masks, ys, n) -> dict:
        if masks is None:
            return {}
        out = {}
        for t, m in masks.items():
            if t not in self.tasks:
                raise errors.NotFoundError(f"masks: unknown task {t!r}")
            if m is None:
                continue
            if t not in ys:
                raise errors.InvalidArgumentError(f"masks: task {t!r} has a mask but no target")
            m = np.ascontiguousarray(m, dtype=np.float32).ravel()
            if m.size != n:
                raise errors.ShapeError(f"mask for task {t!r} has {m.size} entries, "
                                        f"expected {n}")
            out[t] = m
        return out

    def _valid_counts(self, ys, ms, idx=None) -> dict:
        counts = {}
        for t, y in ys.items():
            yy = y if idx is None else y[idx]
            if self.losses[t] in _INDEX_LOSSES:
                v = yy != -1
            else:
                v = ~np.isnan(yy)
                if v.ndim > 1:
                    v = v.reshape(len(v), -1)
            m = ms.get(t)
            if m is not None:
                mm = (m if idx is None else m[idx]) != 0
                v = v & (mm if v.ndim == 1 else mm[:, None])
            counts[t] = int(np.count_nonzero(v))
        return counts

    # ---- batches ----
    class _Batcher:
        """Preallocated batch buffers wrapped once as tensors (zero-copy)."""

        def __init__(self, X, ys, ms, tasks, size):
            self.tasks = tasks
            self.X, self.ys, self.ms = X, ys, ms
            self.bx = np.empty((size,) + X.shape[1:], X.dtype)
            self.by = {t: np.empty((size,) + y.shape[1:], y.dtype) for t, y in ys.items()}
            self.bm = {t: np.empty(size, np.float32) for t in ms}
            self.cache = {}

        def tensors(self, n):
            if n not in self.cache:
                x = Tensor.from_numpy(self.bx[:n], copy=False)
                tg = [Tensor.from_numpy(self.by[t][:n], copy=False) if t in self.by else None
                      for t in self.tasks]
                mk = [Tensor.from_numpy(self.bm[t][:n], copy=False) if t in self.bm else None
                      for t in self.tasks] if self.bm else None
                self.cache[n] = (x, tg, mk)
            return self.cache[n]

        def fill(self, idx):
            n = len(idx)
            np.take(self.X, idx, axis=0, out=self.bx[:n])
            for t, y in self.ys.items():
                np.take(y, idx, axis=0, out=self.by[t][:n])
            for t, m in self.ms.items():
                np.take(m, idx, axis=0, out=self.bm[t][:n])
            return self.tensors(n)

        def close(self):
            for x, tg, mk in self.cache.values():
                for t in [x] + list(tg) + list(mk or []):
                    if t is not None:
                        t.close()
            self.cache.clear()

    def _batch_size(self, batch_size):
        bs = self.max_batch if batch_size is None else int(batch_size)
        if bs < 1 or bs > self.max_batch:
            raise errors.InvalidArgumentError(
                f"batch_size is {bs}, expected 1..{self.max_batch} (the model's max_batch)")
        return bs

    # ---- training ----
    def train_step(self, X, Y, masks=None) -> dict:
        """One optimizer step on one batch (at most max_batch samples); returns the
        per-task losses (NaN for tasks without targets)."""
        self._need_optimizer()
        X = self._x(X)
        ys = self._ys(Y, len(X))
        ms = self._masks(masks, ys, len(X))
        losses = self.model.train_step(
            self.optimizer, X, {t: ys[t] for t in ys},
            {t: ms[t] for t in ms} if ms else None, self.weighting)
        return dict(zip(self.tasks, (float(v) for v in losses)))

    def fit(self, X, Y, epochs=1, batch_size=32, shuffle=True, seed=None, masks=None,
            validation_data=None, callback=None, verbose=False, log_path=None) -> dict:
        """Train for a number of epochs on numpy arrays.

        Y: {task: targets} (class ids for cross_entropy heads, -1/NaN = missing; float
        [N, C] or [N] for the others; tasks left out are not trained). masks: {task: [N]}
        (0 drops a sample for that task). validation_data: (X_val, Y_val) evaluated after
        each epoch. callback(epoch, logs) is called after each epoch with that epoch's logs;
        returning False stops training; an exception it raises ends fit and propagates.

        Returns the history: {"loss": [...], "<task>_loss": [...], "<task>_weight": [...],
        "lr": [...], and "val_..." entries}, one value per epoch (also kept in
        ``self.history``). log_path: append each epoch's logs to this file as one JSON object
        per line ({"epoch": 1, "loss": ..., ...}), the metrics log that
        ``python3 -m mtl.plot`` draws."""
        self._need_optimizer()
        X = self._x(X)
        n = len(X)
        if n == 0:
            raise errors.InvalidArgumentError("fit: no samples")
        ys = self._ys(Y, n)
        if not ys:
            raise errors.InvalidArgumentError("fit: no targets for any task")
        ms = self._masks(masks, ys, n)
        bs = min(self._batch_size(batch_size), n)
        rng = np.random.default_rng(self.config["seed"] if seed is None else seed)
        history = {"loss": [], "lr": []}
        for t in self.tasks:
            history[f"{t}_loss"] = []
            history[f"{t}_weight"] = []
        log = open(log_path, "a", encoding="utf-8") if log_path is not None else None
        batcher = self._Batcher(X, ys, ms, self.tasks, bs)
        opt, w = self.optimizer, self.weighting
        T = len(self.tasks)
        try:
            for epoch in range(int(epochs)):
                order = rng.permutation(n) if shuffle else np.arange(n)
                sums = np.zeros(T)
                counts = np.zeros(T)
                wsum = np.zeros(T)
                total, steps = 0.0, 0
                for start in range(0, n, bs):
                    idx = order[start:start + bs]
                    x, tg, mk = batcher.fill(idx)
                    losses = self.model.train_step(opt, x, tg, mk, w)
                    cnt = self._valid_counts(batcher.by, batcher.bm,
                                             slice(0, len(idx))) if ys else {}
                    weights = w.weights if w is not None else np.ones(T)
                    for i, t in enumerate(self.tasks):
                        c = cnt.get(t, 0)
                        if c:
                            sums[i] += float(losses[i]) * c
                            counts[i] += c
                    active = ~np.isnan(losses)
                    total += float(np.dot(weights[active], losses[active]))
                    wsum += weights
                    steps += 1
                logs = {"loss": total / steps, "lr": opt.lr}
                for i, t in enumerate(self.tasks):
                    logs[f"{t}_loss"] = sums[i] / counts[i] if counts[i] else float("nan")
                    logs[f"{t}_weight"] = wsum[i] / steps
                if validation_data is not None:
                    vx, vy = validation_data[0], validation_data[1]
                    vm = validation_data[2] if len(validation_data) > 2 else None
                    metrics = self.evaluate(vx, vy, masks=vm)
                    vl = 0.0
                    for t, d in metrics.items():
                        for k, v in d.items():
                            logs[f"val_{t}_{k}"] = v
                        vl += d["loss"]
                    logs["val_loss"] = vl
                for k, v in logs.items():
                    history.setdefault(k, []).append(v)
                if log is not None:
                    log.write(json.dumps({"epoch": epoch + 1, **{
                        k: (None if v != v else float(v)) for k, v in logs.items()}}) + "\n")
                    log.flush()
                if verbose:
                    print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                        f"{k}={v:.4g}" for k, v in logs.items()))
                if callback is not None and callback(epoch, dict(logs)) is False:
                    break
        finally:
            batcher.close()
            if log is not None:
                log.close()
        self.history = history
        return history

    # ---- inference ----
    def predict(self, X, probabilities=False, batch_size=None) -> dict:
        """Outputs of every head: {task: array [N, output_size]} (logits / regression values;
        with probabilities=True softmax for cross_entropy and sigmoid for bce heads)."""
        X = self._x(X)
        n = len(X)
        bs = self._batch_size(batch_size)
        out = {t: np.empty((n, self.output_sizes[t]), np.float32) for t in self.tasks}
        for start in range(0, n, bs):
            xb = X[start:start + bs]
            with Tensor.from_numpy(xb) as xt:
                self.model.predict_raw(xt)
            for i, t in enumerate(self.tasks):
                self.model.output(i, probabilities, out=out[t][start:start + bs])
        return out

    def predict_classes(self, X, batch_size=None) -> dict:
        """Class ids for cross_entropy heads (argmax), 0/1 for bce heads, values otherwise."""
        raw = self.predict(X, batch_size=batch_size)
        res = {}
        for t, o in raw.items():
            if self.losses[t] in _INDEX_LOSSES:
                res[t] = o.argmax(axis=1)
            elif self.losses[t] == "bce":
                res[t] = (o > 0).astype(np.int32)
            else:
                res[t] = o
        return res

    def evaluate(self, X, Y, masks=None, batch_size=None, metrics=None) -> dict:
        """Per-task metrics on the given data: {task: {"loss": mean loss, and "accuracy"
        (cross_entropy, bce) or "mse" and "mae" (regression losses)}}. Tasks left out of Y
        are left out of the result. Means are over valid (non-missing, unmasked) entries.

        metrics: more metrics computed by the library (names of :func:`mtl.metrics.names`,
        e.g. "f1_macro", "roc_auc", "r2"): a list applied to every task it fits
        (classification names to classification heads, regression names to the others), or
        {task: [names]}."""
        X = self._x(X)
        n = len(X)
        ys = self._ys(Y, n)
        ms = self._masks(masks, ys, n)
        bs = self._batch_size(batch_size)
        T = len(self.tasks)
        sums, counts = np.zeros(T), np.zeros(T)
        for start in range(0, n, bs):
            sl = slice(start, start + bs)
            losses = self.model.compute_losses(
                X[sl], {t: y[sl] for t, y in ys.items()},
                {t: m[sl] for t, m in ms.items()} if ms else None)
            cnt = self._valid_counts(ys, ms, sl)
            for i, t in enumerate(self.tasks):
                if cnt.get(t):
                    sums[i] += float(losses[i]) * cnt[t]
                    counts[i] += cnt[t]
        outputs = self.predict(X, batch_size=bs)
        result = {}
        for i, t in enumerate(self.tasks):
            if t not in ys:
                continue
            y, o, m = ys[t], outputs[t], ms.get(t)
            d = {"loss": sums[i] / counts[i] if counts[i] else float("nan")}
            if self.losses[t] in _INDEX_LOSSES:
                valid = y != -1
                if m is not None:
                    valid &= m != 0
                d["accuracy"] = float(np.mean(o.argmax(axis=1)[valid] == y[valid])) \
                    if valid.any() else float("nan")
            else:
                yy = y.reshape(n, -1)
                valid = ~np.isnan(yy)
                if m is not None:
                    valid &= (m != 0)[:, None]
                if self.losses[t] == "bce":
                    d["accuracy"] = float(np.mean((o[valid] > 0) == (yy[valid] > 0.5))) \
                        if valid.any() else float("nan")
                else:
                    diff = (o.astype(np.float64) - yy)[valid]
                    d["mse"] = float(np.mean(diff ** 2)) if diff.size else float("nan")
                    d["mae"] = float(np.mean(np.abs(diff))) if diff.size else float("nan")
            for name in self._metric_names(metrics, t):
                d[name] = self._library_metric(name, t, o, y, m)
            result[t] = d
        return result

    _REGRESSION_METRICS = ("mse", "rmse", "mae", "r2")

    def _metric_names(self, metrics, task):
        if metrics is None:
            return []
        if isinstance(metrics, dict):
            return list(metrics.get(task, []))
        classification = self.losses[task] in _INDEX_LOSSES or self.losses[task] == "bce"
        return [n for n in metrics if (n in self._REGRESSION_METRICS) != classification]

    def _library_metric(self, name, task, out, y, mask):
        from . import metrics as M

        loss = self.losses[task]
        regression = name in self._REGRESSION_METRICS
        if loss in _INDEX_LOSSES and not regression:
            labels = y if mask is None else np.where(mask != 0, y, -1)
            return M.compute(name, out, labels)
        if loss == "bce" and not regression:
            if out.shape[1] != 1:
                raise errors.UnsupportedError(
                    f"metric {name!r} on the multi-label head {task!r} ({out.shape[1]} "
                    "outputs): use it per column")
            yy = y.reshape(len(y), -1)[:, 0]
            labels = np.where(np.isnan(yy), -1, yy > 0.5).astype(np.int32)
            if mask is not None:
                labels[mask == 0] = -1
            if name == "roc_auc":
                return M.compute(name, out[:, 0], labels)
            return M.compute(name, (out[:, 0] > 0).astype(np.int32), labels)
        if not regression:
            raise errors.InvalidArgumentError(
                f"metric {name!r} is a classification metric; head {task!r} has loss {loss!r}")
        target = y.reshape(len(y), -1).astype(np.float32)
        if mask is not None:
            target = np.where((mask != 0)[:, None], target, np.nan).astype(np.float32)
        return M.compute(name, out, target)

    # ---- parameters ----
    def param_names(self) -> list:
        return self.model.param_names()

    def get_param(self, name) -> np.ndarray:
        return self.model.get_param(name)

    def set_param(self, name, value) -> None:
        self.model.set_param(name, value)

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state, strict=True) -> None:
        self.model.load_state_dict(state, strict)

    # ---- checkpoints ----
    # CHECKPOINT HOOK: when libmtl's checkpoint API (io/: atomic, checksummed files that also
    # carry the optimizer state) is declared in _lib.DECLARATIONS, save()/load() route
    # non-".npz" paths to it here. Until then both write/read a numpy .npz archive holding
    # the architecture (JSON) and every named parameter and state tensor; the optimizer's
    # moments are not saved, so training resumes with a fresh optimizer.
    def save(self, path) -> None:
        """Save architecture and weights to ``path`` (numpy .npz; written atomically)."""
        path = os.fspath(path)
        arrays = {"param/" + k: v for k, v in self.state_dict().items()}
        meta = {"format": "mtl-npz", "version": _FORMAT_VERSION, "config": self.config,
                "compile": self._compile_args}
        arrays["__meta__"] = np.array(json.dumps(meta))
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @staticmethod
    def _read_npz(path):
        try:
            with np.load(os.fspath(path), allow_pickle=False) as z:
                if "__meta__" not in z.files:
                    raise errors.FormatError(f"{path}: not an mtl checkpoint (no __meta__)")
                meta = json.loads(str(z["__meta__"]))
                state = OrderedDict((k[len("param/"):], z[k]) for k in z.files
                                    if k.startswith("param/"))
        except (ValueError, OSError) as exc:
            if isinstance(exc, errors.MtlError):
                raise
            if isinstance(exc, FileNotFoundError):
                raise errors.MtlIOError(f"{path}: {exc.strerror}") from exc
            raise errors.FormatError(f"{path}: cannot read checkpoint: {exc}") from exc
        if meta.get("format") != "mtl-npz" or meta.get("version", 0) > _FORMAT_VERSION:
            raise errors.FormatError(f"{path}: unsupported checkpoint format {meta.get('format')}"
                                     f" version {meta.get('version')}")
        return meta, state

    @classmethod
    def load(cls, path) -> "MultiTaskModel":
        """Rebuild a model saved with :meth:`save` (compiled again if it was compiled with
        named optimizer and weighting)."""
        meta, state = cls._read_npz(path)
        model = cls.from_config(meta["config"])
        model.load_state_dict(state)
        if meta.get("compile"):
            model.compile(**meta["compile"])
        return model

    def load_weights(self, path) -> None:
        """Load the weights of a checkpoint into this (same-architecture) model."""
        _, state = self._read_npz(path)
        self.load_state_dict(state)

    # ---- configuration ----
    @classmethod
    def from_config(cls, config) -> "MultiTaskModel":
        """Build from a dict, or from a YAML file path, with the constructor's keys
        (input_shape, input_dtype, trunk, heads, seed, max_batch, l2_trunk, l2_heads) and
        optional ``optimizer`` ({"kind": "adam", "lr": ...}) and ``weighting``
        ({"method": "ew", ...}) sections, which compile the model."""
        if isinstance(config, (str, os.PathLike)):
            import yaml  # Debian python3-yaml

            with open(config, encoding="utf-8") as f:
                config = yaml.safe_load(f)
        cfg = dict(config)
        opt = cfg.pop("optimizer", None)
        wcfg = cfg.pop("weighting", None)
        heads = cfg.pop("heads")
        model = cls(cfg.pop("input_shape"), cfg.pop("trunk", ()), heads, **cfg)
        if opt is not None:
            opt = dict(opt)
            kind = opt.pop("kind", None) or opt.pop("type", "adam")
            w_method, w_opts = "ew", {}
            if wcfg is not None:
                w_opts = dict(wcfg)
                w_method = w_opts.pop("method", None) or w_opts.pop("type", "ew")
            model.compile(optimizer=kind, weighting=w_method, weighting_options=w_opts, **opt)
        return model

    def get_config(self) -> dict:
        return json.loads(json.dumps(self.config))

    # ---- pickling (weights and architecture; the optimizer state is not kept) ----
    def __getstate__(self):
        return {"config": self.config, "state": self.state_dict(),
                "compile": self._compile_args, "history": self.history}

    def __setstate__(self, st):
        other = MultiTaskModel.from_config(st["config"])
        self.__dict__.update(other.__dict__)
        other.__dict__ = {}
        self.load_state_dict(st["state"])
        if st.get("compile"):
            self.compile(**st["compile"])
        self.history = st.get("history", {})

    def __repr__(self):
        return (f"<mtl.MultiTaskModel input={tuple(self.config['input_shape'])} "
                f"tasks={self.tasks} params={self.model.num_params}>")
