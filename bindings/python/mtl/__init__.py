"""libmtl — multi-task learning in C, from Python (ctypes + numpy).

Quick start::

    import mtl
    model = mtl.MultiTaskModel(
        input_shape=(20,),
        trunk=[("linear", {"out": 64}), "relu"],
        heads={"label": {"layers": [("linear", {"out": 3})], "loss": "cross_entropy"},
               "score": {"layers": [("linear", {"out": 1})], "loss": "mse"}},
        seed=0, max_batch=128)
    model.compile(optimizer="adam", lr=1e-3)
    model.fit(X, {"label": y, "score": s}, epochs=10, batch_size=32)
    print(model.evaluate(X, {"label": y, "score": s}))

Low-level handles mirror the C API one-to-one: :class:`Tensor`, :class:`Model` (with
:class:`Trunk` and :class:`Head`), :class:`Optimizer`, :class:`Weighting`; :class:`Dataset`, :class:`Loader` and
:class:`Trainer` run the library's own data pipeline and training loop, :func:`evaluate` its
evaluation; :class:`Config` reads YAML run configurations; :mod:`mtl.checkpoint` saves and
restores the training state. Errors are
:class:`MtlError` subclasses. The library is located through ``MTL_LIBRARY``, the package
folder, then the system (see :mod:`mtl._lib`).
"""

from ._version import __version__, EXPECTED_MAJOR
from ._lib import C as _C, load_library, library_path

load_library()

from .errors import (  # noqa: E402
    FormatError,
    InternalError,
    InvalidArgumentError,
    MtlError,
    MtlIOError,
    NotFoundError,
    NumericError,
    OutOfMemoryError,
    RangeError,
    ShapeError,
    StateError,
    UnsupportedError,
)
from .tensor import Tensor  # noqa: E402
from .core import Head, Model, Optimizer, Trunk, Weighting  # noqa: E402
from .multitask import MultiTaskModel  # noqa: E402
from .dataset import Batch, Dataset, Loader  # noqa: E402
from .train import Trainer, evaluate  # noqa: E402
from .checkpoint import (  # noqa: E402
    checkpoint_info,
    describe_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .config import Config  # noqa: E402
from . import data, metrics  # noqa: E402

__all__ = [
    "__version__", "EXPECTED_MAJOR", "version", "version_string", "library_version", "library_path",
    "set_num_threads", "get_num_threads", "build_info", "blas_kernels",
    "status_string", "last_error", "last_status", "clear_error",
    "data", "metrics", "Dataset", "Loader", "Batch", "Trainer", "evaluate",
    "save_checkpoint", "load_checkpoint", "describe_checkpoint", "checkpoint_info", "Config",
    "Tensor", "Model", "Trunk", "Head", "Optimizer", "Weighting", "MultiTaskModel",
    "MtlError", "InvalidArgumentError", "ShapeError", "OutOfMemoryError", "MtlIOError",
    "FormatError", "NumericError", "StateError", "UnsupportedError", "RangeError",
    "NotFoundError", "InternalError",
]


def _str(b):
    return b.decode("utf-8", "replace")


def version() -> int:
    """The loaded library's version number (major*10000 + minor*100 + patch)."""
    return _C.mtl_version()


def version_string() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _str(_C.mtl_version_string())


def library_version() -> tuple:
    v = version()
    return (v // 10000, (v // 100) % 100, v % 100)


def set_num_threads(n: int) -> None:
    """Threads used by matrix products (process-wide; 1..1024)."""
    _C.mtl_set_num_threads(int(n))


def get_num_threads() -> int:
    return _C.mtl_get_num_threads()


def build_info() -> str:
    return _str(_C.mtl_build_info())


def blas_kernels() -> str:
    return _str(_C.mtl_blas_kernels())


def status_string(status: int) -> str:
    return _str(_C.mtl_status_string(int(status)))


def last_error() -> str:
    """The calling thread's last error message from the library ("" if none)."""
    return _str(_C.mtl_last_error())


def last_status() -> int:
    return _C.mtl_last_status()


def clear_error() -> None:
    _C.mtl_clear_error()
