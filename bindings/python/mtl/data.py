"""Loading data with the library's readers: NumPy .npy files, CSV tables and column
encoders (one class per C handle; arrays come back as numpy).

    X = mtl.data.load_npy("features.npy")            # float32 or int32, no extra copy
    table = mtl.data.CsvTable.read("adult.csv", header=1, na_values="?")
    enc = mtl.data.Encoder()
    enc.add_numeric(table, "age").add_onehot(table, "workclass").add_label(table, "income")
    X, y = enc.transform(table), enc.transform_label(table, 0)
"""

from __future__ import annotations

import os
from ctypes import byref, c_int, c_void_p

import numpy as np

from . import errors
from ._handle import HandleBase, Resource
from ._lib import C, make_error
from .core import _b, _s, set_option
from .tensor import Tensor

__all__ = ["load_npy", "save_npy", "CsvOptions", "CsvTable", "Encoder", "build_multifashion",
           "load_multifashion", "MULTIFASHION_SEED", "FASHION_MNIST_DIR"]

#: The seed of the published Multi-Fashion tables (MTL_MULTIFASHION_SEED).
MULTIFASHION_SEED = 2019
#: Where Debian's dataset-fashion-mnist package installs Fashion-MNIST.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
MULTIFASHION_FILES = ("train_x.npy", "train_y_left.npy", "train_y_right.npy", "test_x.npy",
                      "test_y_left.npy", "test_y_right.npy")


def _path(p) -> bytes:
    return os.fsencode(p)


def _owned_array(ptr) -> np.ndarray:
    """A numpy view of a tensor the library created (no copy); the view owns the tensor."""
    t = Tensor._from_ptr(ptr)
    arr = t.numpy()
    t.close()  # freed when the view goes
    return arr


def load_npy(path) -> np.ndarray:
    """Read an .npy file with the library's reader (floats as float32, integers as int32).
    The result views the library's buffer directly."""
    out = c_void_p()
    C.mtl_npy_load(byref(out), _path(path))
    return _owned_array(out.value)


def save_npy(path, array) -> None:
    """Write an array as .npy (float32 or int32; written atomically)."""
    with Tensor.from_numpy(array) as t:
        C.mtl_npy_save(t._ptr, _path(path))


class CsvOptions(HandleBase):
    """CSV reading options: header, delimiter, na_values, skip_rows, comment, trim,
    strip_suffix (see include/mtl/data.h)."""

    _kind = "CSV options"

    def __init__(self, **options):
        out = c_void_p()
        C.mtl_csv_options_create(byref(out))
        self._own(Resource(out.value, C.mtl_csv_options_free, "CSV options"))
        try:
            self.set(**options)
        except BaseException:
            self.close()
            raise

    def set(self, **options) -> "CsvOptions":
        ptr = self._ptr
        for key, value in options.items():
            set_option(key, value,
                       lambda k, v: C.mtl_csv_options_set_int(ptr, k, v),
                       lambda k, v: C.mtl_csv_options_set_int(ptr, k, int(v)),
                       lambda k, v: C.mtl_csv_options_set_string(ptr, k, v),
                       "CSV options")
        return self

    def set_int(self, key: str, value: int) -> None:
        C.mtl_csv_options_set_int(self._ptr, _b(key), int(value))

    def set_string(self, key: str, value: str) -> None:
        C.mtl_csv_options_set_string(self._ptr, _b(key), _b(value))


class CsvTable(HandleBase):
    """A CSV file read into text fields. ``CsvTable.read(path, **options)``."""

    _kind = "CSV table"

    @classmethod
    def read(cls, path, options: CsvOptions | None = None, **kw) -> "CsvTable":
        """Read a whole file; options as a CsvOptions or as keywords."""
        tmp = CsvOptions(**kw) if kw else None
        try:
            opts = options if options is not None else tmp
            if options is not None and kw:
                raise errors.InvalidArgumentError("pass options or keywords, not both")
            out = c_void_p()
            C.mtl_csv_read(byref(out), _path(path), None if opts is None else opts._ptr)
        finally:
            if tmp is not None:
                tmp.close()
        t = cls.__new__(cls)
        t._own(Resource(out.value, C.mtl_csv_free, "CSV table"))
        return t

    @property
    def num_rows(self) -> int:
        return C.mtl_csv_num_rows(self._ptr)

    @property
    def num_cols(self) -> int:
        return C.mtl_csv_num_cols(self._ptr)

    def __len__(self):
        return self.num_rows

    @property
    def columns(self) -> list:
        return [self.col_name(i) for i in range(self.num_cols)]

    def col_name(self, col: int) -> str:
        name = C.mtl_csv_col_name(self._ptr, int(col))
        if name is None:
            raise make_error(C.mtl_last_status() or 1, "mtl_csv_col_name")
        return _s(name)

    def col_index(self, name: str) -> int:
        idx = c_int(-1)
        C.mtl_csv_col_index(byref(idx), self._ptr, _b(name))
        return idx.value

    def _col(self, col) -> int:
        return self.col_index(col) if isinstance(col, str) else int(col)

    def is_numeric(self, col) -> bool:
        r = C.mtl_csv_col_is_numeric(self._ptr, self._col(col))
        if r < 0:
            raise make_error(C.mtl_last_status() or 1, "mtl_csv_col_is_numeric")
        return bool(r)

    def field(self, row: int, col) -> str | None:
        """The text of one field; None when missing."""
        c = self._col(col)
        if not (0 <= row < self.num_rows and 0 <= c < self.num_cols):
            raise errors.RangeError(f"field ({row}, {col}) is outside the table "
                                    f"({self.num_rows} rows, {self.num_cols} columns)")
        return _s(C.mtl_csv_field(self._ptr, int(row), c))

    def numeric(self, cols=None, standardize: bool = False) -> np.ndarray:
        """Numeric columns (names or indices; None = all) as float32 [rows, ncols]; missing
        values NaN (0 after standardizing)."""
        if cols is None:
            arr, n = None, 0
        else:
            idx = [self._col(c) for c in cols]
            n = len(idx)
            arr = (c_int * max(1, n))(*idx)
        out = c_void_p()
        C.mtl_csv_numeric(byref(out), self._ptr, arr, n, int(bool(standardize)))
        return _owned_array(out.value)

    def __repr__(self):
        if self.closed:
            return "<mtl.data.CsvTable (closed)>"
        return f"<mtl.data.CsvTable rows={self.num_rows} columns={self.columns}>"


class Encoder(HandleBase):
    """Column transforms fitted on one table and applied to others (features: numeric and
    one-hot; ids for embeddings; classification labels)."""

    _kind = "encoder"

    def __init__(self):
        out = c_void_p()
        C.mtl_encoder_create(byref(out))
        self._own(Resource(out.value, C.mtl_encoder_free, "encoder"))

    @classmethod
    def load(cls, path) -> "Encoder":
        out = c_void_p()
        C.mtl_encoder_load(byref(out), _path(path))
        e = cls.__new__(cls)
        e._own(Resource(out.value, C.mtl_encoder_free, "encoder"))
        return e

    def save(self, path) -> None:
        C.mtl_encoder_save(self._ptr, _path(path))

    def add_numeric(self, table: CsvTable, name: str, standardize: bool = True) -> "Encoder":
        C.mtl_encoder_add_numeric(self._ptr, table._ptr, _b(name), int(bool(standardize)))
        return self

    def add_onehot(self, table: CsvTable, name: str) -> "Encoder":
        C.mtl_encoder_add_onehot(self._ptr, table._ptr, _b(name))
        return self

    def add_ids(self, table: CsvTable, name: str) -> "Encoder":
        C.mtl_encoder_add_ids(self._ptr, table._ptr, _b(name))
        return self

    def add_label(self, table: CsvTable, name: str) -> "Encoder":
        C.mtl_encoder_add_label(self._ptr, table._ptr, _b(name))
        return self

    @property
    def num_features(self) -> int:
        return C.mtl_encoder_num_features(self._ptr)

    @property
    def num_labels(self) -> int:
        return C.mtl_encoder_num_labels(self._ptr)

    @property
    def num_id_columns(self) -> int:
        return C.mtl_encoder_num_id_columns(self._ptr)

    def _count_or_raise(self, n, fn):
        if n == 0 and C.mtl_last_status():
            raise make_error(C.mtl_last_status(), fn)
        return n

    def num_classes(self, label_index: int = 0) -> int:
        C.mtl_clear_error()
        return self._count_or_raise(C.mtl_encoder_num_classes(self._ptr, int(label_index)),
                                    "mtl_encoder_num_classes")

    def class_names(self, label_index: int = 0) -> list:
        ptr = self._ptr
        return [_s(C.mtl_encoder_class_name(ptr, int(label_index), k))
                for k in range(self.num_classes(label_index))]

    def num_ids(self, ids_index: int = 0) -> int:
        C.mtl_clear_error()
        return self._count_or_raise(C.mtl_encoder_num_ids(self._ptr, int(ids_index)),
                                    "mtl_encoder_num_ids")

    def transform(self, table: CsvTable) -> np.ndarray:
        """Feature columns as float32 [rows, num_features]."""
        out = c_void_p()
        C.mtl_encoder_transform(byref(out), self._ptr, table._ptr)
        return _owned_array(out.value)

    def transform_label(self, table: CsvTable, label_index: int = 0) -> np.ndarray:
        """Class ids int32 [rows] (-1 missing)."""
        out = c_void_p()
        C.mtl_encoder_transform_label(byref(out), self._ptr, table._ptr, int(label_index))
        return _owned_array(out.value)

    def transform_ids(self, table: CsvTable, ids_index: int = 0) -> np.ndarray:
        """Ids int32 [rows] (0 for missing or unseen)."""
        out = c_void_p()
        C.mtl_encoder_transform_ids(byref(out), self._ptr, table._ptr, int(ids_index))
        return _owned_array(out.value)

    def __repr__(self):
        if self.closed:
            return "<mtl.data.Encoder (closed)>"
        return (f"<mtl.data.Encoder features={self.num_features} labels={self.num_labels} "
                f"ids={self.num_id_columns}>")


# ---- benchmark datasets ----------------------------------------------------------------------

def build_multifashion(out_dir, src_dir=None, seed=MULTIFASHION_SEED, limit=0) -> str:
    """Build Multi-Fashion (two 10-class tasks on 36x36 composites of Fashion-MNIST items,
    Lin et al. 2019) from the IDX files in src_dir (None: FASHION_MNIST_DIR) into out_dir
    (created if missing),
    as the six .npy files of :data:`MULTIFASHION_FILES` (train: 2 composites per source
    image, float32 [2n, 1, 36, 36] raw 0..255; labels int32). The same seed gives the same
    bytes everywhere. limit > 0 uses only the first `limit` images of each split. Returns
    out_dir."""
    C.mtl_multifashion_build(None if src_dir is None else _path(src_dir), _path(out_dir),
                             int(seed) & 0xFFFFFFFFFFFFFFFF, int(limit))
    return os.fspath(out_dir)


def load_multifashion(out_dir):
    """(train, test) :class:`mtl.Dataset` s over a built Multi-Fashion folder, with task
    slots "left" and "right" (the library reads the files itself, memory-mapped)."""
    from .dataset import Dataset

    out = []
    for split in ("train", "test"):
        d = os.fspath(out_dir)
        out.append(Dataset.from_npy(os.path.join(d, f"{split}_x.npy"),
                                    {"left": os.path.join(d, f"{split}_y_left.npy"),
                                     "right": os.path.join(d, f"{split}_y_right.npy")}))
    return tuple(out)
