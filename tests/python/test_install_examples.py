"""Packaging and examples: an offline pip install into a fresh virtual environment made
with --system-site-packages (Debian 12 / PEP 668), and the examples run to completion."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

PKG = os.path.join(ROOT, "bindings", "python")
EXAMPLES = os.path.join(ROOT, "examples", "python")


def env_with(**extra):
    env = dict(os.environ)
    env.update(extra)
    return env


def test_pip_install_offline_in_venv(tmp_path):
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    venv = tmp_path / "venv"
    r = subprocess.run([python, "-m", "venv", "--system-site-packages", str(venv)],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {r.stderr.strip()[-200:]}")
    # Install from a copy so the source tree gets no build/ or egg-info folders.
    src = tmp_path / "src"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                            "__pycache__", "libmtl.so*"))
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    r = subprocess.run(pip + ["install", "--no-build-isolation", "--no-index", str(src)],
                       capture_output=True, text=True, timeout=300,
                       env=env_with(PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Successfully installed libmtl" in r.stdout
    env = env_with()
    env.pop("PYTHONPATH", None)
    code = ("import mtl, numpy; print(mtl.__file__); print(mtl.version_string()); "
            "m = mtl.Model(3); m.trunk.add_linear(2); m.add_head('a'); m.build(4); "
            "print(len(m.param_names()))")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                       text=True, cwd=str(tmp_path), env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0].startswith(str(venv)) and lines[1] == "1.0.0" and lines[2] == "2"
    r = subprocess.run(pip + ["show", "libmtl"], capture_output=True, text=True, env=env)
    assert "Version: 1.0.0" in r.stdout


@pytest.mark.parametrize("example", ["quickstart.py", "low_level.py", "sklearn_pipeline.py",
                                     "trainer.py", "config_run.py"])
def test_example_runs(example):
    if example == "sklearn_pipeline.py":
        pytest.importorskip("sklearn")
    env = env_with(PYTHONPATH=PKG + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, example)], capture_output=True,
                       text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    if example == "quickstart.py":
        assert "identical predictions: True" in r.stdout
    if example == "config_run.py":
        assert "resumed run identical: True" in r.stdout
    if example == "trainer.py":
        assert "stopped: " in r.stdout and "'test.label.accuracy'" in r.stdout
