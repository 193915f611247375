"""Tests for the NAS-evidence pieces: shapes10, the small-input stem, deterministic
training with its thread count recorded, the warm-up plus cosine schedule, and a search
that evaluates every architecture once."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from enasa_compiler.cli import search as cli_search
from enasa_compiler.errors import InputError
from enasa_compiler.models.checkpoint import (
    SupernetConfig,
    build_supernet,
    load_checkpoint,
    save_checkpoint,
)
from enasa_compiler.models.data import (
    ImageDataset,
    load_builtin,
    load_shapes10_dataset,
    train_val_split,
)
from enasa_compiler.models.fairnas import FairnasSupernet
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.models.synthetic import SHAPES10_CLASSES, draw_shapes10
from enasa_compiler.models.train import lr_factor, train_supernet
from enasa_compiler.search.loop import SearchConfig, search
from enasa_compiler.search.state import SearchState

# --- shapes10 -----------------------------------------------------------------------------


def test_shapes10_is_seeded_balanced_and_standardised():
    images, labels = draw_shapes10(200, 32, seed=3)
    again, same_labels = draw_shapes10(200, 32, seed=3)
    assert images.dtype == np.float32 and images.shape == (200, 3, 32, 32)
    assert np.array_equal(images, again) and np.array_equal(labels, same_labels)
    assert not np.array_equal(images, draw_shapes10(200, 32, seed=4)[0])
    assert np.bincount(labels).tolist() == [20] * len(SHAPES10_CLASSES)
    assert np.allclose(images.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(images.std(axis=(0, 2, 3)), 1, atol=1e-3)


def test_a_linear_model_on_pixels_stays_far_below_a_cnn_target():
    from sklearn.linear_model import LogisticRegression

    # Small, to stay fast: a set made linearly easy again (a class told by its mean
    # colour or brightness, say) would still show here.
    images, labels = draw_shapes10(500, 32, seed=0)
    flat = images.reshape(len(images), -1)
    # Fitted to convergence (163 iterations): a model stopped early would understate
    # what a linear classifier reaches and let an easier set pass.
    model = LogisticRegression(C=0.01, max_iter=300).fit(flat[:400], labels[:400])
    assert model.n_iter_[0] < 300
    assert model.score(flat[400:], labels[400:]) < 0.5


def test_shapes10_loader_and_builtin_names():
    data = load_shapes10_dataset(32, count=50, seed=1)
    assert isinstance(data, ImageDataset) and len(data) == 50 and data.num_classes == 10
    assert load_builtin("digits").num_classes == 10
    assert len(load_builtin("shapes10")) == 6000
    with pytest.raises(InputError, match="unknown built-in"):
        load_builtin("cifar10")
    with pytest.raises(InputError):
        load_shapes10_dataset(30)


# --- small-input stem ---------------------------------------------------------------------


@pytest.mark.parametrize("space", ["spos", "fairnas"])
def test_small_input_stem_halves_the_stride_and_keeps_the_names(space):
    plain = build_supernet(SupernetConfig(space=space, width_mult=0.25))
    small = build_supernet(SupernetConfig(space=space, width_mult=0.25, small_input=True))
    assert plain.first_conv[0].stride == (2, 2) and small.first_conv[0].stride == (1, 1)
    assert plain.state_dict().keys() == small.state_dict().keys()
    assert plain.num_layers == small.num_layers
    x = torch.zeros(2, 3, 32, 32)
    arch = (0,) * plain.num_layers
    sizes = {}
    for name, net in (("plain", plain), ("small", small)):
        net.eval()
        hook_out = {}
        last = net.block(net.num_layers - 1, 0)
        handle = last.register_forward_hook(lambda m, i, o, d=hook_out: d.update(o=o))
        assert net(x, arch).shape == (2, 10)
        handle.remove()
        sizes[name] = hook_out["o"].shape[-1]
    assert (sizes["plain"], sizes["small"]) == (1, 2)


def test_small_input_is_off_by_default_and_the_default_config_json_is_unchanged():
    assert not SposSupernet(0.25, 10, 32).small_input
    assert not FairnasSupernet(0.25, 10, 32).small_input
    data = SupernetConfig().to_dict()
    assert "small_input" not in data and "threads" not in data
    assert SupernetConfig.from_dict(data) == SupernetConfig()
    config = SupernetConfig(small_input=True, threads=2)
    assert SupernetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InputError):
        SupernetConfig.from_dict({**config.to_dict(), "small_input": "yes"})
    with pytest.raises(InputError):
        SupernetConfig(threads=0)


# --- deterministic training ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data():
    train, val = train_val_split(load_shapes10_dataset(32, count=96, seed=0), 0.25, seed=0)
    return train, val


def _tiny_config(**changes):
    base = {"space": "spos", "width_mult": 0.25, "stage_repeats": (1, 1, 1, 1),
            "small_input": True, "seed": 5, "epochs": 2}
    return SupernetConfig(**{**base, **changes})


def _train(config, data, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        supernet = build_supernet(config)
        stats = train_supernet(supernet, data, epochs=config.epochs, seed=config.seed,
                               batch_size=24, lr=0.05, schedule="cosine",
                               warmup_epochs=1)
    finally:
        torch.set_num_threads(before)
    return supernet, stats


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_training_is_bitwise_reproducible_and_records_threads(tiny_data):
    train, _ = tiny_data
    first, stats = _train(_tiny_config(), train, threads=1)
    second, _ = _train(_tiny_config(), train, threads=1)
    assert stats.threads == 1
    assert _same_weights(first, second)
    other, _ = _train(_tiny_config(seed=6), train, threads=1)
    assert not _same_weights(first, other)
    assert not torch.are_deterministic_algorithms_enabled()  # restored afterwards


def test_checkpoint_keeps_the_thread_count_and_stem(tiny_data, tmp_path):
    train, _ = tiny_data
    config = _tiny_config(threads=1)
    supernet, _ = _train(config, train, threads=1)
    save_checkpoint(tmp_path / "s.pt", supernet, config)
    loaded, loaded_config = load_checkpoint(tmp_path / "s.pt")
    assert loaded_config.threads == 1 and loaded_config.small_input
    assert _same_weights(supernet, loaded)


def test_warmup_then_cosine_schedule():
    factors = [lr_factor(done, 100, 10, "cosine") for done in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5)
    assert factors[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    # Without warm-up the linear schedule is SPOS's, as before.
    assert [lr_factor(d, 8, 0, "linear") for d in range(9)] == [
        max(0.0, 1.0 - d / 8) for d in range(9)]


def test_bad_schedule_or_warmup_is_input_error(tiny_data):
    train, _ = tiny_data
    supernet = build_supernet(_tiny_config())
    with pytest.raises(InputError, match="schedule"):
        train_supernet(supernet, train, schedule="step")
    with pytest.raises(InputError, match="warm-up"):
        train_supernet(supernet, train, epochs=1, warmup_epochs=2)


# --- every architecture evaluated once ----------------------------------------------------


def test_search_state_caches_each_accuracy_and_refuses_a_second_evaluation():
    supernet = build_supernet(_tiny_config())
    state = SearchState(supernet, SearchConfig(group_size=2, seed=0))
    record = {"index": 0, "arch": [0, 1, 2, 3], "accuracy": 0.5, "latency_ns": 1.0,
              "feasible": True}
    state.record(0, [record])
    assert state.accuracy((0, 1, 2, 3)) == 0.5 and state.accuracy((0, 0, 0, 0)) is None
    assert not state.admissible((0, 1, 2, 3), [])
    with pytest.raises(ValueError, match="evaluated twice"):
        state.record(1, [record])


def test_a_search_never_evaluates_an_architecture_twice(tiny_data):
    # Four choice layers; stage-wise children share a fixed half with the best, which
    # leaves 16 architectures per generation to choose from, so repeats are frequent.
    train, val = tiny_data
    supernet = build_supernet(_tiny_config())
    config = SearchConfig(strategy="stagewise", generations=3, group_size=4, seed=1,
                          mutation_prob=0.0, calib_batches=1, calib_batch_size=8,
                          threads=1)
    result = search(supernet, train, val, config)
    archs = [tuple(entry["arch"]) for entry in result.history]
    assert len(archs) == 12 and len(archs) == len(set(archs))


# --- the CLI's --data ---------------------------------------------------------------------


def test_data_option_takes_builtin_names_and_files(tmp_path):
    assert cli_search._data_source(None) is None
    assert cli_search._data_source(argparse.Namespace(d="shapes10").d) == "shapes10"
    assert cli_search._data_inputs("shapes10") == []
    path = tmp_path / "d.npz"
    assert cli_search._data_source(path) == str(path.resolve())
    assert cli_search._data_inputs(path) == [path]
    assert set(cli_search.BUILTIN_DATA) == {"digits", "shapes10"}


def test_train_supernet_cli_on_shapes10_records_the_recipe(tmp_path, capsys, monkeypatch):
    from enasa_compiler.cli import main
    from enasa_compiler.models import data as data_module

    drawn = []

    def few_shapes(name, input_size=32):
        drawn.append(name)
        return load_shapes10_dataset(input_size, count=120)

    monkeypatch.setattr(data_module, "load_builtin", few_shapes)  # seconds, not a minute
    out = tmp_path / "s.pt"
    code = main(["train-supernet", "--data", "shapes10", "--small-input",
                 "--stage-repeats", "1,1,1,1", "--epochs", "1", "--batch-size", "128",
                 "--schedule", "cosine", "--warmup-epochs", "0.5", "--threads", "1",
                 "--no-progress", "--json", "-o", str(out)])
    assert code == 0 and drawn == ["shapes10"]
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["small_input"] is True and report["config"]["threads"] == 1
    _, config = load_checkpoint(out)
    assert config.small_input and config.threads == 1 and config.num_classes == 10
