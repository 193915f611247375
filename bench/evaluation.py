"""Benchmark: the paper's comparison (``enasa bench``) at full settings.

Runs the distinct subnets of K=4 generations of G=16 full-size SPOS and FairNAS
subnets on N=10,000 images each (pipelined plans) through the ENASA flow (a), the
pipelined single-network CIM flow (b), the resident flow without sharing (c),
onnxruntime on this machine's CPU (d, measured on 64 images per subnet and
extrapolated) and the NASA model (e), plus the FCFS ablation and OPS vs FCFS on the
capacity-limited ``edge`` target, and writes results.json, results.md and the plots
into ``bench/results/evaluation/``. Extra arguments are passed to ``enasa bench``
(the committed results used ``--generations 2 --group-size 16`` to finish in about
20 minutes on two shared cores). A GPU row comes from ``bench/gpu_baseline.py``.

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
