"""The package's import structure (``benchmarks/structure.py``): no circle, no import up a layer, engines
import no other engine and no job, ``weights/`` imports no engine, no module takes another's private name."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _structure():
    spec = importlib.util.spec_from_file_location("structure", ROOT / "benchmarks" / "structure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_circle_and_no_rule_broken():
    report = _structure().report()
    assert report["circles"] == []
    assert report["breaks"] == []


def test_the_tool_sees_a_circle_and_the_breaks(tmp_path):
    """The checks are not vacuous: a made-up package with each fault is caught."""
    pkg = tmp_path / "universalner"
    (pkg / "engines").mkdir(parents=True)
    (pkg / "weights").mkdir()
    files = {
        "__init__.py": "",
        "a.py": "from .b import x\n",
        "b.py": "def f():\n    from .a import _hidden\n",
        "engines/__init__.py": "",
        "engines/base.py": "",
        "engines/one.py": "from .two import y\nfrom ..tune import z\n",
        "engines/two.py": "",
        "tune.py": "",
        "weights/__init__.py": "",
        "weights/w.py": "from ..engines.one import e\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    report = _structure().report(tmp_path)
    assert report["circles"] == [["universalner.a", "universalner.b"]]
    text = "\n".join(report["breaks"])
    for fault in ("private name _hidden", "another engine, universalner.engines.two",
                  "a job, universalner.tune", "weights/ imports an engine", "a higher layer"):  # fmt: skip
        assert fault in text, (fault, text)


def test_import_universalner_imports_no_torch():
    code = "import sys, universalner, universalner.weights, universalner.model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_every_module_says_what_it_is_for():
    import ast

    for path in sorted((ROOT / "src" / "universalner").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc and doc.strip().splitlines()[0].strip(), f"{path} has no docstring"
