"""Shared fixtures: a small exported group of SPOS-space subnets, built once per session."""

from __future__ import annotations

import random
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_supernet():
    from enasa_compiler.models.export import build_demo_supernet

    return build_demo_supernet(seed=0)


@pytest.fixture(scope="session")
def group4_files(demo_supernet, tmp_path_factory) -> list[Path]:
    """Four demo subnets sharing their first 10 of 20 layers (legacy exporter)."""
    from enasa_compiler.models.export import export_group
    from enasa_compiler.models.sampling import sample_shared_group

    archs = sample_shared_group(demo_supernet.num_layers, demo_supernet.num_choices, 4,
                                random.Random(1), shared_prefix_layers=10)
    return export_group(demo_supernet, archs, tmp_path_factory.mktemp("group4"))


@pytest.fixture(scope="session")
def group4_result(group4_files):
    """The group compiled without weight duplication: one copy of every matrix."""
    from enasa_compiler.pipeline import compile_detailed

    return compile_detailed(group4_files, "neurosim-22nm", duplicate="off")


@pytest.fixture(scope="session")
def group4_default(group4_files):
    """The group compiled with the default options (throughput duplication)."""
    from enasa_compiler.pipeline import compile_detailed

    return compile_detailed(group4_files, "neurosim-22nm")


@pytest.fixture(scope="session")
def compiled_plan_path(group4_result, tmp_path_factory) -> Path:
    """The four-subnet group's plan saved to a file, for tests of the commands."""
    return group4_result.plan.save(tmp_path_factory.mktemp("plan") / "plan.json")


@pytest.fixture(scope="session")
def corpus_run(tmp_path_factory) -> tuple[Path, str]:
    """The hostile corpus, generated once by running its script as a user would.

    Shared by the corpus and ``enasa check`` tests; no test may change it (the corpus
    test checks each case leaves its folder as it found it).
    """
    import subprocess
    import sys

    script = Path(__file__).parent / "corpus" / "make_corpus.py"
    root = tmp_path_factory.mktemp("corpus")
    result = subprocess.run([sys.executable, str(script), str(root)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return root, result.stdout
