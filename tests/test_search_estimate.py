"""``enasa search`` without --supernet says up front how long its training will take."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from enasa_compiler._text import about
from enasa_compiler.cli import main
from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
from enasa_compiler.models.data import ImageDataset
from enasa_compiler.models.train import ESTIMATE_AFTER_STEPS, train_supernet


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny convolutions gain nothing from more threads on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_data(tmp_path):
    """40 random images: a training split of 32, so two steps of 16 per epoch."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, images=rng.standard_normal((40, 3, 32, 32), dtype=np.float32),
             labels=rng.integers(0, 4, 40).astype(np.int64))
    return path


@pytest.fixture
def no_search(monkeypatch):
    """Stop after training: the estimate is what is under test, not the search."""
    def search(*args, **kwargs):
        return SimpleNamespace(history=[], best=None, config={}, seconds=0.0)

    # The package re-exports search(), which hides the module of the same name.
    monkeypatch.setattr(importlib.import_module("enasa_compiler.search.loop"), "search",
                        search)


def _search(data, out, *extra):
    return main(["search", "--stage-repeats", "1,1,1,1", "--width", "0.25", "--epochs", "3",
                 "--data", str(data), "--generations", "1", "--group-size", "2",
                 "--out", str(out), *extra])


def test_search_announces_its_training_steps_and_time_in_one_line(tiny_data, tmp_path,
                                                                  no_search, capsys):
    assert _search(tiny_data, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("enasa search: no --supernet given; training a spos supernet")
    assert "4 choice layers" in err and "6 steps in 3 epochs, about " in err
    assert "train spos" not in err  # stderr is not a terminal: no progress bar


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_search_estimate_is_left_out_with_quiet_or_json(tiny_data, tmp_path, no_search,
                                                        capsys, flag):
    assert _search(tiny_data, tmp_path / "out", flag) == 0
    assert capsys.readouterr().err == ""


def test_training_reports_one_estimate_after_its_first_steps():
    config = SupernetConfig(space="spos", width_mult=0.25, input_size=32, num_classes=4,
                            stage_repeats=(1, 1, 1, 1))
    rng = np.random.default_rng(0)
    data = ImageDataset(torch.from_numpy(rng.standard_normal((64, 3, 32, 32),
                                                             dtype=np.float32)),
                        torch.from_numpy(rng.integers(0, 4, 64)), num_classes=4)
    estimates = []
    stats = train_supernet(build_supernet(config), data, epochs=2, batch_size=8,
                           on_estimate=estimates.append)
    assert len(estimates) == 1
    estimate = estimates[0]
    assert estimate.total_steps == stats.optimizer_steps == 16
    assert estimate.timed_steps == ESTIMATE_AFTER_STEPS
    assert 0 < estimate.seconds_per_step and estimate.elapsed_s <= stats.seconds
    assert estimate.total_s >= estimate.elapsed_s


def test_durations_are_rounded_as_a_person_would_say_them():
    assert about(0.2) == "about 1 s"
    assert about(42.4) == "about 42 s"
    assert about(7 * 60 + 20) == "about 7 min"
    assert about(2 * 3600 + 5 * 60) == "about 2 h 5 min"
    assert about(3600) == "about 1 h"
