"""The import contract of pyproject.toml holds, and its checker catches what it must."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / ".ci/check_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_projects_layers_hold():
    assert _checker().check(ROOT) == []


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.setuptools]
        package-dir = { "enasa_compiler" = "pkg", "enasa_compiler.low" = "side" }
        packages = ["enasa_compiler", "enasa_compiler.app", "enasa_compiler.low"]
        [tool.enasa.imports]
        layers = ["enasa_compiler.app", "enasa_compiler.mid | enasa_compiler.other",
                  "enasa_compiler.low", "enasa_compiler"]
        [[tool.enasa.imports.forbidden]]
        why = "no shortcut"
        source = ["enasa_compiler.mid"]
        targets = ["enasa_compiler.low.secret"]
    '''))
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_upward_sideways_forbidden_and_unplaced_imports_are_reported(tmp_path):
    root = _project(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/mid.py": """
            from enasa_compiler.low import base
            from enasa_compiler.low.secret import key
        """,
        "pkg/other.py": "import enasa_compiler.mid\n",
        "pkg/app/__init__.py": "from enasa_compiler import mid\n",
        "pkg/stray.py": "",
        "side/__init__.py": "",
        "side/base.py": """
            def later():
                from enasa_compiler.app import thing  # a lazy import counts too
        """,
        "side/secret.py": "from . import base\n",
    })
    problems = _checker().check(root)
    assert any("side/base.py:3" in p and "a higher layer" in p for p in problems)
    assert any("pkg/other.py:1" in p and "independent" in p for p in problems)
    assert any("pkg/mid.py:3" in p and "no shortcut" in p for p in problems)
    assert any("enasa_compiler.stray is in no layer" in p for p in problems)
    # downward and same-package imports are fine
    assert not any("pkg/app/__init__.py" in p or "side/secret.py" in p or "pkg/mid.py:2" in p
                   for p in problems)
    assert len(problems) == 4
