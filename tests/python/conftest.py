"""Shared set-up of the Python tests.

Run from the repository root:
    MTL_LIBRARY=build/libmtl/libmtl.so.1 PYTHONPATH=bindings/python /usr/bin/python3 -m pytest tests/python

Every call into the library goes through a counting wrapper installed here, so that
test_zz_all_bindings.py can check that the test run called every declared C function, and
the leak tests can compare handle creations with frees.
"""

import collections
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if not any(os.path.isdir(os.path.join(p, "mtl")) for p in sys.path if p):
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
if os.environ.get("MTL_LIBRARY"):
    # absolute, so that subprocesses started elsewhere load the same file
    os.environ["MTL_LIBRARY"] = os.path.abspath(os.environ["MTL_LIBRARY"])
else:
    default = os.path.join(ROOT, "build", "libmtl", "libmtl.so.1")
    if os.path.exists(default):
        os.environ["MTL_LIBRARY"] = default

import mtl  # noqa: E402
from mtl import _lib  # noqa: E402

CALLS = collections.Counter()       # every call
SUCCEEDED = collections.Counter()   # calls that returned without raising


def _counting(name, fn):
    def wrapper(*args):
        CALLS[name] += 1
        res = fn(*args)
        SUCCEEDED[name] += 1
        return res

    wrapper.__name__ = name
    wrapper.__wrapped__ = fn
    return wrapper


for _name in _lib.DECLARATIONS:
    _fn = getattr(_lib.C, _name)
    if not hasattr(_fn, "__wrapped__"):
        setattr(_lib.C, _name, _counting(_name, _fn))


@pytest.fixture
def calls():
    """Successful calls so far, by function name."""
    return SUCCEEDED


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def make_model(input_dim=6, hidden=8, classes=3, reg_out=2, seed=3, max_batch=16):
    """A small built two-task model: trunk linear-relu, heads 'cls' (cross_entropy) and
    'reg' (mse)."""
    m = mtl.Model((input_dim,))
    m.trunk.add_layer("linear", out=hidden)
    m.trunk.add_layer("relu")
    m.add_head("cls", loss="cross_entropy", layers=[("linear", {"out": classes})])
    m.add_head("reg", loss="mse", layers=[("linear", {"out": reg_out})])
    m.build(max_batch, seed)
    return m


@pytest.fixture
def model():
    m = make_model()
    yield m
    m.close()


def pytest_report_header(config):
    return [f"libmtl {mtl.version_string()} from {mtl.library_path()}",
            f"{mtl.build_info()}"]
