"""Finding the library, the version handshake and the module-level functions."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import mtl
from mtl import _lib

from conftest import ROOT

PKG = os.path.join(ROOT, "bindings", "python")


def run_python(code, env_extra=None, cwd=None, drop_env=()):
    env = dict(os.environ)
    for k in drop_env:
        env.pop(k, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_version_handshake_matches():
    v = mtl.version()
    assert v // 10000 == mtl.EXPECTED_MAJOR
    assert mtl.library_version() == (v // 10000, (v // 100) % 100, v % 100)
    assert mtl.version_string() == "%d.%d.%d" % mtl.library_version()
    assert mtl.__version__.split(".")[0] == str(mtl.EXPECTED_MAJOR)


def test_library_loaded_from_mtl_library():
    assert os.environ.get("MTL_LIBRARY"), "tests run with MTL_LIBRARY set"
    assert mtl.library_path() == os.environ["MTL_LIBRARY"]
    assert "libmtl" in repr(_lib.C)
    assert _lib.load_library() is _lib.C._cdll  # idempotent


def test_runtime_functions():
    assert mtl.get_num_threads() >= 1
    old = mtl.get_num_threads()
    mtl.set_num_threads(2)
    assert mtl.get_num_threads() == 2
    mtl.set_num_threads(old)
    with pytest.raises(mtl.MtlError, match="mtl_set_num_threads") as e:
        mtl.set_num_threads(0)
    assert isinstance(e.value, ValueError)
    assert mtl.get_num_threads() == old
    assert "libmtl" in mtl.build_info()
    assert mtl.blas_kernels()


def _compile_fake(tmp_path, body, name="libfake.so"):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "fake.c"
    src.write_text(body)
    out = tmp_path / name
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return str(out)


def test_wrong_major_version_is_refused(tmp_path):
    fake = _compile_fake(tmp_path, "int mtl_version(void) { return 20304; }\n")
    r = run_python("import mtl", {"MTL_LIBRARY": fake, "PYTHONPATH": PKG})
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "libmtl 2.3.4" in r.stderr and "major version 1" in r.stderr


def test_library_without_mtl_version_is_refused(tmp_path):
    fake = _compile_fake(tmp_path, "int something(void) { return 1; }\n")
    r = run_python("import mtl", {"MTL_LIBRARY": fake, "PYTHONPATH": PKG})
    assert r.returncode != 0
    assert "is not libmtl" in r.stderr


def test_missing_symbol_of_current_release_is_refused(tmp_path):
    # Reports 1.0.0 but lacks every other function: a broken library, not an old one.
    fake = _compile_fake(tmp_path, "int mtl_version(void) { return 10000; }\n")
    r = run_python("import mtl", {"MTL_LIBRARY": fake, "PYTHONPATH": PKG})
    assert r.returncode != 0
    assert "lacks mtl_" in r.stderr


def test_bad_mtl_library_path_is_an_import_error():
    r = run_python("import mtl", {"MTL_LIBRARY": "/nonexistent/libmtl.so.1", "PYTHONPATH": PKG})
    assert r.returncode != 0
    assert "cannot load MTL_LIBRARY='/nonexistent/libmtl.so.1'" in r.stderr


def test_newer_function_missing_from_older_library_becomes_a_stub(monkeypatch):
    # A declaration from a later release than the loaded library: bound to a stub.
    ns = _lib._Namespace()
    monkeypatch.setattr(_lib, "C", ns)
    monkeypatch.setitem(_lib.DECLARATIONS, "mtl_from_the_future", (_lib.STATUS, [], "1.99"))
    import ctypes
    _lib._declare(ctypes.CDLL(os.environ["MTL_LIBRARY"]), mtl.version())
    assert "mtl_from_the_future" in ns.missing
    with pytest.raises(mtl.UnsupportedError, match="needs libmtl 1.99 or later"):
        ns.mtl_from_the_future()


def test_library_found_in_package_folder(tmp_path):
    # A self-contained copy: the package with libmtl.so.1 next to it, no MTL_LIBRARY.
    dst = tmp_path / "site"
    shutil.copytree(os.path.join(PKG, "mtl"), dst / "mtl",
                    ignore=shutil.ignore_patterns("__pycache__", "libmtl.so*"))
    shutil.copy(os.path.realpath(os.environ["MTL_LIBRARY"]), dst / "mtl" / "libmtl.so.1")
    r = run_python("import mtl; print(mtl.library_path())", {"PYTHONPATH": str(dst)},
                   cwd=str(tmp_path), drop_env=("MTL_LIBRARY",))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(dst / "mtl" / "libmtl.so.1")


def test_not_found_message_says_what_to_do(tmp_path):
    dst = tmp_path / "site"
    shutil.copytree(os.path.join(PKG, "mtl"), dst / "mtl",
                    ignore=shutil.ignore_patterns("__pycache__", "libmtl.so*"))
    code = """
        import ctypes.util, sys
        ctypes.util.find_library = lambda name: None   # no system copy
        import ctypes
        real = ctypes.CDLL
        class NoSoname(real):
            def __init__(self, name, *a, **k):
                if name == "libmtl.so.1":
                    raise OSError("not on the loader path")
                super().__init__(name, *a, **k)
        ctypes.CDLL = NoSoname
        try:
            import mtl
        except ImportError as e:
            print("IMPORTERROR", e)
    """
    r = run_python(code, {"PYTHONPATH": str(dst)}, cwd=str(tmp_path), drop_env=("MTL_LIBRARY",))
    assert "IMPORTERROR" in r.stdout, r.stderr
    assert "MTL_LIBRARY" in r.stdout and "meson setup build" in r.stdout
