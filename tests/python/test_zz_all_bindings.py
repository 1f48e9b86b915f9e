"""Every declared C function was called by this test run (through the bindings' classes or
directly). Runs last (file name order) and only when the whole directory was collected."""

import os

import pytest

from mtl import _lib

from conftest import CALLS

HERE = os.path.dirname(os.path.abspath(__file__))


def test_every_binding_exercised(request):
    collected = {os.path.basename(str(item.fspath)) for item in request.session.items}
    expected = {f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py")}
    if collected != expected:
        pytest.skip("only meaningful for a run of the whole tests/python directory")
    never = sorted(n for n in _lib.DECLARATIONS if CALLS[n] == 0)
    assert not never, f"declared functions no test called: {never}"
