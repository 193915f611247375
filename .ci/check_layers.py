#!/usr/bin/env python3
"""Check the import contract declared in pyproject.toml (``[tool.enasa.imports]``).

The compiler's layers depend one way (docs/architecture.md). This script reads every
module of the package (following the ``package-dir`` mapping, which tools that walk
one folder cannot follow), collects every ``enasa_compiler`` import in it, lazy ones
inside functions included, and reports each import that breaks the contract:

- ``layers``: top to bottom; a module may import its own layer and layers below it.
  Entries of one layer separated by ``|`` are independent: they may not import each
  other; prefixes joined by ``+`` form one entry. A module belongs to the entry with
  the longest prefix of its name (the bare package name matches only itself).
- ``forbidden``: ``{source = [...], targets = [...]}`` tables; no module under a
  source prefix may import a module under a target prefix.

Exit 0 when the contract holds, 1 with one line per broken import otherwise.

Run:  python .ci/check_layers.py [--root DIR]
"""

from __future__ import annotations

import argparse
import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "enasa_compiler"


@dataclass(frozen=True)
class Import:
    """One import of a package module by another, with where it is written."""

    source: str
    target: str
    path: Path
    line: int


def _package_dir(package: str, package_dirs: dict[str, str]) -> str:
    """Return a package's folder: mapped in ``package-dir``, or under its parent's."""
    if package in package_dirs:
        return package_dirs[package]
    parent, _, last = package.rpartition(".")
    return f"{_package_dir(parent, package_dirs)}/{last}" if parent else package


def _module_files(root: Path, setuptools: dict) -> Iterator[tuple[str, Path]]:
    """Yield (module name, file) for every module of every package setuptools installs."""
    package_dirs = setuptools.get("package-dir", {})
    for package in sorted(setuptools["packages"]):
        directory = root / _package_dir(package, package_dirs)
        for path in sorted(directory.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            yield name, path


def _imports(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.stem == "__init__"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield Import(name, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                # ``from pkg import sub`` imports the submodule when there is one.
                yield Import(name, f"{module}.{alias.name}", path, node.lineno)


def _reexports(files: dict[str, Path]) -> dict[str, str]:
    """Map ``package.Name`` to the submodule a package's ``__init__`` imports it from.

    So ``from enasa_compiler.passes import DedupPass`` counts as an import of
    ``enasa_compiler.passes.dedup``, not of the package as a whole.
    """
    names: dict[str, str] = {}
    for module, path in files.items():
        if path.stem != "__init__":
            continue
        for found in _imports(module, path):
            origin = found.target.rpartition(".")[0]
            if origin in files and origin.startswith(module + "."):
                names[f"{module}.{found.target.rpartition('.')[2]}"] = origin
    return names


def _resolve(target: str, modules: set[str], reexports: dict[str, str]) -> str:
    """Return the longest known module ``target`` names (``pkg.mod.attr``: ``pkg.mod``)."""
    if target in reexports:
        return reexports[target]
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return target


def _owner(module: str, prefixes: dict[str, str]) -> str | None:
    """Return the entry of the longest prefix that covers ``module``."""
    best = None
    for prefix in prefixes:
        covers = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
        if covers and (best is None or len(prefix) > len(best)):
            best = prefix
    return prefixes[best] if best is not None else None


def check(root: Path) -> list[str]:
    """Return one message per import that breaks the contract (empty: it holds)."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    contract = config["tool"]["enasa"]["imports"]
    layers = [[e.strip() for e in layer.split("|")] for layer in contract["layers"]]
    level = {entry: i for i, layer in enumerate(layers) for entry in layer}
    entries = {prefix.strip(): entry for entry in level for prefix in entry.split("+")}
    files = dict(_module_files(root, config["tool"]["setuptools"]))
    modules = set(files)
    reexports = _reexports(files)
    problems = []
    for module in sorted(modules):
        if _owner(module, entries) is None:
            problems.append(f"{files[module]}: module {module} is in no layer of the "
                            "contract; add it to [tool.enasa.imports] layers")
    for module, path in sorted(files.items()):
        for found in _imports(module, path):
            target = _resolve(found.target, modules, reexports)
            where = f"{found.path.relative_to(root)}:{found.line}"
            source_entry, target_entry = _owner(module, entries), _owner(target, entries)
            if source_entry is None or target_entry is None or source_entry == target_entry:
                pass
            elif level[target_entry] < level[source_entry]:
                problems.append(f"{where}: {module} ({source_entry}) imports {target} "
                                f"({target_entry}), a higher layer")
            elif level[target_entry] == level[source_entry]:
                problems.append(f"{where}: {module} ({source_entry}) imports {target} "
                                f"({target_entry}); they are independent in one layer")
            for rule in contract.get("forbidden", []):
                if (any(module == s or module.startswith(s + ".") for s in rule["source"])
                        and any(target == t or target.startswith(t + ".")
                                for t in rule["targets"])):
                    problems.append(f"{where}: {module} imports {target}: "
                                    f"{rule.get('why', 'forbidden by the contract')}")
    return problems


def main() -> int:
    """Check the contract of the checkout this script lives in (or ``--root``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    problems = check(args.root)
    for problem in problems:
        print(problem)
    if not problems:
        print("import contract holds")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
