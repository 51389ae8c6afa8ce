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
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def requirement_names(wheel: Path) -> set[str]:
    import email.parser
    import zipfile
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(whl.read(name).decode("utf-8"))
    reqs = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    return {_canonical(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0]) for r in reqs}


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
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True)
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
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        constraints = folder / "constraints.txt"
        constraints.write_text(freeze + "\n")
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                                 "-w", str(folder), "-c", str(constraints), str(built_wheel)],
                                capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        (folder / built_wheel.name).unlink(missing_ok=True)
        (folder / ".complete").touch()
    return folder
