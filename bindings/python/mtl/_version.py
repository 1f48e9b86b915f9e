"""Version of the Python package. Its major number must equal the loaded library's
(``mtl_version() // 10000``): the bindings are checked against that ABI at import."""

__version__ = "1.0.0"
EXPECTED_MAJOR = 1
