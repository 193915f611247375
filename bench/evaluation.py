"""Benchmark: the paper's comparison (``enasa bench``) at full settings.

Runs K=4 generations of G=16 full-size SPOS and FairNAS subnets on N=64 images
through the ENASA flow, the single-network CIM flow, the resident flow and
onnxruntime on this machine, plus the ablations and the scaling curves, and writes
results.json, results.md and the plots into ``bench/results/evaluation/``. Extra
arguments are passed to ``enasa bench`` (e.g. ``--images 16``).

Run:  python bench/evaluation.py [enasa bench options]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from enasa_compiler.cli import main

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation"

if __name__ == "__main__":
    sys.exit(main(["bench", "--out", os.path.relpath(RESULTS), *sys.argv[1:]]))
