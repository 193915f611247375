"""Checkpoints and --resume: an interrupted search ends where an uninterrupted one does.

In process, on an untrained tiny SPOS supernet (five choice layers), groups of three
subnets scored on 60 images.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from enasa_compiler.cli import main
from enasa_compiler.errors import InputError
from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet, save_checkpoint
from enasa_compiler.models.data import load_digits_dataset, train_val_split
from enasa_compiler.search.executors import InProcessExecutor
from enasa_compiler.search.loop import SearchConfig, search
from enasa_compiler.search.state import (
    CHECKPOINT_FILE,
    random_state_from_json,
    random_state_to_json,
    read_checkpoint,
)

CONFIG = SearchConfig(strategy="evolution", generations=2, group_size=3, seed=4,
                      calib_batches=2, calib_batch_size=16, threads=1, online=True)


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def inputs():
    train, val = train_val_split(load_digits_dataset(32), 0.2, seed=0)
    supernet = build_supernet(SupernetConfig(stage_repeats=(1, 1, 2, 1), seed=0))
    return supernet, train.subset(np.arange(64)), val.subset(np.arange(60))


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    checkpoints = []

    def hook(generation: int, entries: list) -> None:
        checkpoints.append(read_checkpoint(out))
        assert not list(out.glob(".*.tmp"))  # written through a rename

    result = search(*inputs, CONFIG, out_dir=out, on_generation=hook)
    return result, out, checkpoints


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _stop_after(generation: int):
    def hook(done: int, entries: list) -> None:
        if done == generation:
            raise Interrupted
    return hook


@pytest.mark.slow
def test_interrupted_search_resumes_to_the_uninterrupted_result(
    inputs, uninterrupted, tmp_path
):
    expected, expected_out, _ = uninterrupted
    with pytest.raises(Interrupted):
        search(*inputs, CONFIG, out_dir=tmp_path, on_generation=_stop_after(0))
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint["generations_done"] == 1
    assert len(checkpoint["state"]["history"]) == CONFIG.group_size
    assert not (tmp_path / "gen_001").exists()

    resumed = search(*inputs, CONFIG, out_dir=tmp_path, resume=True)
    assert resumed.history == expected.history
    assert json.dumps(resumed.history) == json.dumps(expected.history)
    assert resumed.best == expected.best
    assert _files(tmp_path) == _files(expected_out)  # plans, subnets and checkpoint


def test_checkpoint_follows_every_generation(uninterrupted):
    result, _, checkpoints = uninterrupted
    assert [c["generations_done"] for c in checkpoints] == [1, 2]
    for done, checkpoint in enumerate(checkpoints, start=1):
        assert checkpoint["state"]["history"] == result.history[: done * CONFIG.group_size]
        assert checkpoint["plans"] == [f"gen_{done - 1:03d}/plan.json"]


def test_resuming_a_finished_search_evaluates_nothing(inputs, uninterrupted):
    expected, out, _ = uninterrupted
    before = _files(out)
    calls = []
    executor = InProcessExecutor(task_hook=calls.append)
    again = search(*inputs, CONFIG, out_dir=out, resume=True, executor=executor)
    assert calls == []
    assert again.history == expected.history and again.best == expected.best
    assert _files(out) == before


def test_resume_refuses_other_options_or_inputs(inputs, tmp_path):
    supernet, train, val = inputs
    config = SearchConfig(strategy="uniform", generations=1, group_size=2, seed=0,
                          calib_batches=1, calib_batch_size=8, threads=1)
    search(supernet, train, val, config, out_dir=tmp_path)
    other = SearchConfig(**{**config.__dict__, "seed": 1})
    with pytest.raises(InputError, match="seed"):
        search(supernet, train, val, other, out_dir=tmp_path, resume=True)
    with pytest.raises(InputError, match="data differ"):
        search(supernet, train, val.subset(np.arange(30)), config, out_dir=tmp_path,
               resume=True)
    with pytest.raises(InputError, match="no search_state.json"):
        search(supernet, train, val, config, out_dir=tmp_path / "empty", resume=True)
    (tmp_path / CHECKPOINT_FILE).write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        search(supernet, train, val, config, out_dir=tmp_path, resume=True)


def test_random_state_round_trips_through_json():
    rng = random.Random(7)
    rng.gauss(0.0, 1.0)  # leaves a cached Gaussian in the state
    text = json.dumps(random_state_to_json(rng))
    copy = random.Random()
    copy.setstate(random_state_from_json(json.loads(text)))
    assert [copy.random() for _ in range(5)] == [rng.random() for _ in range(5)]
    assert copy.gauss(0.0, 1.0) == rng.gauss(0.0, 1.0)
    with pytest.raises(InputError):
        random_state_from_json([3, ["x"], None])


@pytest.mark.slow
def test_cli_resume_extends_a_search_to_the_same_files(inputs, tmp_path):
    supernet, _, _ = inputs
    checkpoint = tmp_path / "supernet.pt"
    save_checkpoint(checkpoint, supernet, SupernetConfig(stage_repeats=(1, 1, 2, 1)))
    common = ["--supernet", str(checkpoint), "--strategy", "stagewise", "--group-size", "2",
              "--groups-per-generation", "2", "--online", "--seed", "3", "--threads", "1",
              "--no-progress", "-q"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["search", "--out", str(whole), "--generations", "2", *common]) == 0
    assert main(["search", "--out", str(part), "--generations", "1", *common]) == 0
    assert main(["search", "--resume", str(part), "--generations", "2", "--no-progress",
                 "-q"]) == 0
    # Options of the search being resumed may be repeated, not changed.
    assert main(["search", "--resume", str(part), "--seed", "3", "-q"]) == 0
    assert main(["search", "--resume", str(part), "--seed", "9", "-q"]) == 2
    for name in ("history.json", "best.json"):
        assert (part / name).read_bytes() == (whole / name).read_bytes()
    assert _files(part) == _files(whole)


@pytest.mark.slow
def test_cli_resume_reuses_the_supernet_the_search_trained(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, images=rng.standard_normal((40, 3, 32, 32), dtype=np.float32),
             labels=rng.integers(0, 4, 40).astype(np.int64))
    out = tmp_path / "out"
    assert main(["search", "--strategy", "uniform", "--generations", "1", "--group-size",
                 "2", "--epochs", "1", "--stage-repeats", "1,1,2,1", "--data", str(data),
                 "--threads", "1", "--out", str(out), "--no-progress", "-q"]) == 0
    first = json.loads((out / "history.json").read_text())["history"]
    assert (out / "supernet.pt").exists()
    assert main(["search", "--resume", str(out), "--generations", "2", "--no-progress",
                 "-q"]) == 0
    history = json.loads((out / "history.json").read_text())["history"]
    assert history[:2] == first and [e["generation"] for e in history] == [0, 0, 1, 1]
