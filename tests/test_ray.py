"""The search on a local Ray cluster: the same bytes as in process, and worker deaths retried.

One two-CPU cluster serves the whole module. The supernet is an untrained tiny SPOS one
(stage repeats 1,1,2,1: five choice layers) and every group is three subnets scored on
60 images, so a group takes well under a second and the cluster's start dominates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from enasa_compiler.errors import InputError
from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet, save_checkpoint
from enasa_compiler.models.data import load_digits_dataset, train_val_split
from enasa_compiler.search.executors import GroupTask, InProcessExecutor, RayExecutor
from enasa_compiler.search.loop import SearchConfig, search

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a local Ray cluster: CI runs these

CONFIG = SearchConfig(strategy="stagewise", generations=2, group_size=3,
                      groups_per_generation=2, online=True, seed=5, calib_batches=2,
                      calib_batch_size=16, threads=1)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Workers cannot import this test module; its hooks travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs():
    train, val = train_val_split(load_digits_dataset(32), 0.2, seed=0)
    supernet = build_supernet(SupernetConfig(stage_repeats=(1, 1, 2, 1), seed=0))
    return supernet, train.subset(np.arange(64)), val.subset(np.arange(60))


@pytest.fixture(scope="module")
def in_process(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("inprocess")
    return search(*inputs, CONFIG, out_dir=out), out


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ray_search_gives_the_in_process_bytes(cluster, inputs, in_process, tmp_path):
    expected, expected_out = in_process
    with RayExecutor() as executor:
        assert executor.workers == 2
        result = search(*inputs, CONFIG, out_dir=tmp_path, executor=executor)
    assert result.history == expected.history
    assert result.best == expected.best and result.best_arch is not None
    assert json.dumps(result.history) == json.dumps(expected.history)
    # Every plan, every exported subnet and the checkpoint, byte for byte.
    files = _files(tmp_path)
    assert files == _files(expected_out)
    plans = [name for name in files if name.endswith("plan.json")]
    assert len(plans) == CONFIG.generations * CONFIG.groups_per_generation
    # Online mapping: the second generation started from the first one's crossbars.
    plan = json.loads((tmp_path / "gen_001" / "group_01" / "plan.json").read_text())
    assert plan["initial_state"]


def _die_once(task: GroupTask, *, marker: Path, generation: int, group: int) -> None:
    """Kill the worker process the first time it starts the chosen group."""
    if (task.generation, task.group) == (generation, group) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)


def test_killed_worker_is_retried_without_lost_or_duplicate_entries(
    cluster, inputs, in_process, tmp_path
):
    expected, _ = in_process
    marker = tmp_path / "killed"
    hook = functools.partial(_die_once, marker=marker, generation=1, group=0)
    with RayExecutor(task_hook=hook, max_retries=2) as executor:
        result = search(*inputs, CONFIG, out_dir=tmp_path / "out", executor=executor)
    assert marker.exists()  # a worker did die
    keys = [(e["generation"], e["group"], e["index"]) for e in result.history]
    assert keys == [(g, k, i) for g in range(2) for k in range(2) for i in range(3)]
    archs = [tuple(e["arch"]) for e in result.history]
    assert len(set(archs)) == len(archs) == 12
    assert result.history == expected.history


def test_task_errors_reach_the_caller_as_themselves(cluster, inputs):
    config = SearchConfig(strategy="uniform", generations=1, group_size=1, seed=0,
                          calib_batches=1, calib_batch_size=8, threads=1,
                          target="no-such-target")
    with RayExecutor() as executor, pytest.raises(InputError, match="no-such-target"):
        search(*inputs, config, executor=executor)


def _square(task: int, offset: int) -> int:
    return task * task + offset


def test_executors_return_results_in_submission_order(cluster):
    seen: list[int] = []
    with RayExecutor() as executor:
        shared = executor.share(1000)
        assert executor.map(_square, range(6), [shared], on_result=seen.append) == [
            1000, 1001, 1004, 1009, 1016, 1025]
    assert sorted(seen) == list(range(6))
    local = InProcessExecutor()
    assert local.map(_square, [3], [local.share(1)]) == [10]


def test_cli_search_on_ray_writes_the_in_process_files(cluster, inputs, tmp_path):
    from enasa_compiler.cli import main

    supernet, _, _ = inputs
    checkpoint = tmp_path / "supernet.pt"
    save_checkpoint(checkpoint, supernet, SupernetConfig(stage_repeats=(1, 1, 2, 1)))
    outputs = {}
    for executor in ("inprocess", "ray"):
        out = tmp_path / executor
        argv = ["search", "--supernet", str(checkpoint), "--out", str(out),
                "--strategy", "evolution", "--generations", "2", "--group-size", "2",
                "--groups-per-generation", "2", "--seed", "1", "--threads", "1",
                "--executor", executor, "--no-progress", "-q"]
        assert main(argv) == 0
        outputs[executor] = out
    for name in ("history.json", "best.json"):
        assert (outputs["ray"] / name).read_bytes() == \
            (outputs["inprocess"] / name).read_bytes()
    assert _files(outputs["ray"]) == _files(outputs["inprocess"])
