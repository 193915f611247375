"""What every benchmark script does with its figures: record the command, write them.

Results are written atomically (a run cut short leaves the previous file whole), and
the command is rebuilt from the parsed arguments, defaults included, so the file says
exactly what reproduces it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from enasa_compiler.atomic import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def command_line(script: str, args: argparse.Namespace) -> str:
    """``python bench/<script> --option value ...`` for every parsed option."""
    options = []
    for key, value in vars(args).items():
        shown = " ".join(map(str, value)) if isinstance(value, list | tuple) else value
        options.append(f"--{key.replace('_', '-')} {shown}")
    return " ".join(["python", f"bench/{Path(script).name}", *options])


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``bench/results/<name>`` (JSON, atomically) and say so."""
    out = RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out}")
    return out
