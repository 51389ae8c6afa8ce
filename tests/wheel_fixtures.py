"""The built wheel, a wheelhouse of its dependencies, and a host python that has none of them.

Tests that install the product (deploy, the wheel on its own) must get every dependency from the wheel's
own requirements, never from whatever a machine's system python happens to have: ``bare_python`` is a
fresh venv of the base interpreter without system site-packages, and the fixture refuses to hand it out
if it can see any of the project's dependencies. ``wheelhouse`` is made once per test venv from this venv's
exact versions (pip's cache makes it a copy on the second run).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xintu.ops.deploy import wheel_requirements

ROOT = Path(__file__).resolve().parents[1]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def requirement_names(wheel: Path) -> set[str]:
    return {_canonical(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0]) for r in wheel_requirements(wheel)}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def visible_distributions(python: str) -> set[str]:
    out = subprocess.run([python, "-c", "import importlib.metadata as m, json; "
                          "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"],
                         check=True, capture_output=True, text=True).stdout
    return {_canonical(n) for n in json.loads(out) if n}


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # From a copy of the sources: setuptools builds in the tree (build/, *.egg-info), so two test workers
    # building the checkout itself would trip over each other.
    source = tmp_path_factory.mktemp("source") / "xintu"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "build", "dist", "instance", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True)
    return next(out.glob("xintu-*.whl"))


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory, built_wheel) -> str:
    """A host's python3 + pip with nothing of ours: what a fresh app host (or CI machine) has."""
    venv = tmp_path_factory.mktemp("bare-host") / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    borrowed = visible_distributions(python) & requirement_names(built_wheel)
    assert not borrowed, f"the bare host python can import project dependencies: {sorted(borrowed)}"
    return python


@pytest.fixture(scope="session")
def wheelhouse(built_wheel) -> Path:
    """Wheels of every runtime dependency at this venv's versions (the built wheel itself is not in it)."""
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout
    freeze = "\n".join(line for line in freeze.splitlines() if not line.lower().startswith("xintu"))
    key = hashlib.sha256((freeze + "\n".join(sorted(requirement_names(built_wheel)))).encode()).hexdigest()
    folder = Path(sys.prefix) / "wheelhouse" / key[:16]
    if not folder.is_dir():
        # Built beside it and renamed into place: complete or absent, even with parallel test workers.
        building = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        constraints = building / "constraints.txt"
        constraints.write_text(freeze + "\n")
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                                 "-w", str(building), "-c", str(constraints), str(built_wheel)],
                                capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        (building / built_wheel.name).unlink(missing_ok=True)
        try:
            building.rename(folder)
        except OSError:          # another worker got there first: its copy is as good
            shutil.rmtree(building, ignore_errors=True)
    return folder
