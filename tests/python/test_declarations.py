"""The declaration table against the public headers: every MTL_API function of
include/mtl/*.h is declared, with the argument and return types its C prototype implies."""

import ctypes
import glob
import os
import re

import pytest

from mtl import _lib

from conftest import ROOT

HEADERS = sorted(glob.glob(os.path.join(ROOT, "include", "mtl", "*.h")))
ENUMS = {"mtl_status", "mtl_dtype", "mtl_output_kind"}
# Functions that return a status as a value (a query), not as the outcome of the call.
STATUS_QUERIES = {"mtl_last_status"}


def parse_headers():
    protos = {}
    for path in HEADERS:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", " ", text)
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # preprocessor lines
        for m in re.finditer(r"MTL_API\s+([^;(]*?)\b(mtl_\w+)\s*\(([^)]*)\)\s*;", text, re.S):
            ret, name, params = m.group(1), m.group(2), m.group(3)
            params = " ".join(params.split())
            args = [] if params in ("", "void") else [p.strip() for p in params.split(",")]
            protos[name] = (" ".join(ret.split()), args, os.path.basename(path))
    return protos


def ctype_of(decl, is_return=False):
    """The ctypes type a C declaration maps to under the table's conventions."""
    decl = re.sub(r"\bconst\b", " ", decl)
    decl = re.sub(r"\b(struct|enum)\b", " ", decl)
    stars = decl.count("*")
    words = decl.replace("*", " ").split()
    base = words[0]
    if stars == 0:
        if base in _lib.CALLBACK_TYPES:  # a function-pointer typedef
            return _lib.CALLBACK_TYPES[base]
        if is_return and base == "mtl_status":
            return _lib.STATUS
        if base in ENUMS:
            return ctypes.c_int
        return {"int": ctypes.c_int, "int64_t": ctypes.c_int64, "uint64_t": ctypes.c_uint64,
                "double": ctypes.c_double, "float": ctypes.c_float, "size_t": ctypes.c_size_t,
                "void": None}[base]
    if stars == 1:
        if base == "char":
            return ctypes.c_char_p
        if base == "void":
            return ctypes.c_void_p
        if base.startswith("mtl_"):  # an opaque handle
            return (_lib.HANDLE, _lib.CHECKED_PTR) if is_return else _lib.HANDLE
        return ctypes.POINTER({"int": ctypes.c_int, "int64_t": ctypes.c_int64,
                               "float": ctypes.c_float, "double": ctypes.c_double,
                               "size_t": ctypes.c_size_t}[base])
    if stars == 2 and base.startswith("mtl_"):
        return _lib.HANDLE_OUT
    if stars == 2 and base == "char":
        return _lib.STR_OUT
    raise AssertionError(f"no mapping for {decl!r}")


PROTOS = parse_headers()


def parse_callback_typedefs():
    """typedef RET (*name)(params); of the public headers -> {name: (ret, [params])}."""
    out = {}
    for path in HEADERS:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        for m in re.finditer(r"typedef\s+([^;()]*?)\(\s*\*\s*(mtl_\w+)\s*\)\s*\(([^)]*)\)\s*;",
                             text, re.S):
            params = " ".join(m.group(3).split())
            args = [] if params in ("", "void") else [p.strip() for p in params.split(",")]
            out[m.group(2)] = (" ".join(m.group(1).split()), args)
    return out


CALLBACKS = parse_callback_typedefs()


def test_callback_typedefs_match_prototypes():
    assert set(CALLBACKS) == set(_lib.CALLBACK_TYPES), \
        f"function-pointer typedefs {sorted(CALLBACKS)}, declared {sorted(_lib.CALLBACK_TYPES)}"
    for name, (ret, args) in CALLBACKS.items():
        proto = _lib.CALLBACK_TYPES[name]
        assert proto._restype_ == ctype_of(ret), f"{name}: return {ret!r}"
        assert len(proto._argtypes_) == len(args), f"{name}: {len(args)} parameters"
        for i, (decl, got) in enumerate(zip(args, proto._argtypes_)):
            assert got == ctype_of(decl), f"{name} parameter {i} {decl!r}: declared {got}"


def test_headers_found():
    assert len(HEADERS) >= 7
    assert "mtl_model_train_step" in PROTOS and "mtl_tensor_wrap" in PROTOS


def test_every_header_function_is_declared():
    missing = sorted(set(PROTOS) - set(_lib.DECLARATIONS))
    assert not missing, f"public functions without a binding: {missing}"


def test_every_declaration_exists_in_a_header():
    extra = sorted(set(_lib.DECLARATIONS) - set(PROTOS))
    assert not extra, f"declared but not in include/mtl: {extra}"


@pytest.mark.parametrize("name", sorted(PROTOS))
def test_declaration_matches_prototype(name):
    ret, args, header = PROTOS[name]
    restype, argtypes, since = _lib.DECLARATIONS[name]
    want_ret = ctype_of(ret, is_return=name not in STATUS_QUERIES)
    if isinstance(want_ret, tuple):
        assert restype in want_ret, f"{name} ({header}): return {ret!r} declared {restype}"
    else:
        assert restype == want_ret, f"{name} ({header}): return {ret!r} declared {restype}"
    assert len(argtypes) == len(args), f"{name}: {len(args)} parameters, declared {argtypes}"
    for i, (decl, got) in enumerate(zip(args, argtypes)):
        assert got == ctype_of(decl), f"{name} parameter {i} {decl!r}: declared {got}"
    assert re.fullmatch(r"\d+\.\d+", since)


def test_loaded_library_exports_every_declaration():
    assert _lib.C.missing == []
    for name in _lib.DECLARATIONS:
        assert hasattr(_lib.C._cdll, name)
