"""Supernet training, checkpoints, BN recalibration, the npz loader, search and its CLI.

Everything runs on a tiny SPOS supernet (width 0.25, input 32, stage repeats 1,1,2,1:
five choice layers) trained once for the module on scikit-learn's digits.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from enasa_compiler.cli.search import add_search_parsers, run_search, run_train
from enasa_compiler.errors import InputError
from enasa_compiler.models.checkpoint import (
    SupernetConfig,
    build_supernet,
    load_checkpoint,
    save_checkpoint,
)
from enasa_compiler.models.data import load_digits_dataset, load_npz, train_val_split
from enasa_compiler.models.sampling import fixed_half, sample_uniform
from enasa_compiler.models.train import (
    evaluate_accuracy,
    fair_step,
    recalibrate_batchnorm,
    spos_step,
    train_supernet,
)
from enasa_compiler.search.loop import SearchConfig, search

TINY = (1, 1, 2, 1)
EPOCHS = 6
HISTORY_FIELDS = {
    "generation", "index", "arch", "accuracy", "macs", "latency_ns", "energy_pj",
    "attributed_energy_pj", "feasible", "group_dedup_node_ratio", "group_dedup_mac_ratio",
    "group_makespan_ns", "group_energy_pj", "group_crossbars_used",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny convolutions gain nothing from two threads, and on a shared machine OpenMP
    # spinning makes them many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    train, val = train_val_split(load_digits_dataset(32), 0.2, seed=0)
    return train, val.subset(np.arange(200))


@pytest.fixture(scope="module")
def trained(digits):
    train, _ = digits
    config = SupernetConfig(stage_repeats=TINY, seed=0, epochs=EPOCHS)
    supernet = build_supernet(config)
    stats = train_supernet(supernet, train, rule="spos", epochs=EPOCHS, seed=0)
    return supernet, config, stats


@pytest.fixture(scope="module")
def stagewise_runs(trained, digits):
    supernet, _, _ = trained
    train, val = digits
    config = SearchConfig(strategy="stagewise", generations=2, group_size=4, seed=3)
    return [search(supernet, train, val, config) for _ in range(2)]


def _arch_of(supernet, seed: int) -> tuple[int, ...]:
    return sample_uniform(supernet.num_layers, supernet.num_choices, random.Random(seed))


# --- training --------------------------------------------------------------------------


def test_training_lowers_loss_and_subnets_beat_chance(trained, digits):
    supernet, _, stats = trained
    train, val = digits
    assert stats.optimizer_steps == EPOCHS * -(-len(train) // 16)
    assert stats.epoch_losses[-1] < stats.epoch_losses[0] - 0.3
    accuracies = []
    for seed in range(4):
        arch = _arch_of(supernet, seed)
        recalibrate_batchnorm(supernet, arch, train)
        accuracies.append(evaluate_accuracy(supernet, arch, val))
    # Measured 0.48-0.60 (mean 0.54) for these four at 6 epochs; chance is 0.1.
    assert np.mean(accuracies) > 0.3, accuracies
    assert min(accuracies) > 0.2, accuracies


class _CountingSGD(torch.optim.SGD):
    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.steps = 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)


def _block_use_counter(supernet):
    used: dict[tuple[int, int], int] = {}
    handles = []
    for layer in range(supernet.num_layers):
        for choice in range(supernet.num_choices):
            def hook(*_args, key=(layer, choice)):
                used[key] = used.get(key, 0) + 1
            handles.append(supernet.block(layer, choice).register_forward_hook(hook))
    return used, handles


def test_fair_step_updates_once_and_uses_every_choice_once():
    supernet = build_supernet(SupernetConfig(stage_repeats=TINY))
    optimizer = _CountingSGD(supernet.parameters(), lr=0.01)
    used, handles = _block_use_counter(supernet)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = fair_step(supernet, optimizer, torch.nn.CrossEntropyLoss(), images, labels,
                     random.Random(0))
    for handle in handles:
        handle.remove()
    assert optimizer.steps == 1
    assert np.isfinite(loss)
    assert used == {(layer, choice): 1 for layer in range(supernet.num_layers)
                    for choice in range(supernet.num_choices)}
    # Every block got a gradient from the single accumulated update.
    assert all(p.grad is not None for p in supernet.features.parameters())


def test_fair_training_makes_one_update_per_batch(digits):
    train, _ = digits
    small = train.subset(np.arange(40))
    supernet = build_supernet(SupernetConfig(stage_repeats=TINY))
    optimizer = _CountingSGD(supernet.parameters(), lr=0.01)
    used, handles = _block_use_counter(supernet)
    stats = train_supernet(supernet, small, rule="fair", epochs=1, batch_size=16,
                           optimizer=optimizer)
    for handle in handles:
        handle.remove()
    assert optimizer.steps == stats.optimizer_steps == 3
    assert set(used.values()) == {3}


def test_spos_step_trains_one_path():
    supernet = build_supernet(SupernetConfig(stage_repeats=TINY))
    optimizer = _CountingSGD(supernet.parameters(), lr=0.01)
    used, handles = _block_use_counter(supernet)
    spos_step(supernet, optimizer, torch.nn.CrossEntropyLoss(), torch.randn(2, 3, 32, 32),
              torch.tensor([0, 1]), random.Random(0))
    for handle in handles:
        handle.remove()
    assert optimizer.steps == 1
    assert sorted(layer for layer, _ in used) == list(range(supernet.num_layers))


# --- BN recalibration --------------------------------------------------------------------


def test_bn_recalibration_is_a_cumulative_average_that_eval_uses(digits):
    train, _ = digits
    supernet = build_supernet(SupernetConfig(stage_repeats=TINY, seed=1))
    arch = (0, 1, 2, 3, 0)
    other_bn = supernet.block(0, 3).branch_main[1]
    other_before = other_bn.running_mean.clone()
    stem_conv, stem_bn = supernet.first_conv[0], supernet.first_conv[1]
    before = stem_bn.running_mean.clone(), stem_bn.running_var.clone()

    data = train.subset(np.arange(12))
    recalibrate_batchnorm(supernet, arch, data, num_batches=3, batch_size=4)

    with torch.no_grad():
        outputs = [stem_conv(images) for images, _ in data.batches(4)]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outputs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outputs]).mean(0)
    assert not torch.allclose(stem_bn.running_mean, before[0])
    assert not torch.allclose(stem_bn.running_var, before[1])
    torch.testing.assert_close(stem_bn.running_mean, mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stem_bn.running_var, var, atol=1e-5, rtol=1e-4)
    assert stem_bn.momentum == 0.1  # restored
    assert torch.equal(other_bn.running_mean, other_before)  # off the path: untouched
    assert not supernet.training
    # Evaluation normalises with the recalibrated statistics.
    images = data.images[:2]
    with torch.no_grad():
        normalised = supernet.first_conv[:2](images)
        expected = (stem_conv(images) - mean[None, :, None, None]) / torch.sqrt(
            var[None, :, None, None] + stem_bn.eps)
    torch.testing.assert_close(normalised, expected, atol=1e-4, rtol=1e-4)


# --- checkpoints -------------------------------------------------------------------------


def test_checkpoint_round_trip(trained, digits, tmp_path):
    supernet, config, _ = trained
    path = tmp_path / "supernet.pt"
    save_checkpoint(path, supernet, config)
    assert isinstance(torch.load(path, weights_only=True)["state_dict"], dict)
    loaded, loaded_config = load_checkpoint(path)
    assert loaded_config == config
    images = digits[1].images[:8]
    arch = _arch_of(supernet, 7)
    supernet.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, arch), supernet(images, arch),
                                   rtol=0, atol=0)


def test_random_bytes_checkpoint_is_input_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="not a loadable supernet checkpoint"):
        load_checkpoint(path)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_arbitrary_objects_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"format": "enasa-supernet/1", "payload": _Payload(marker)}, buffer)
    path.write_bytes(buffer.getvalue())
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    for bad in (path, plain):
        with pytest.raises(InputError) as info:
            load_checkpoint(bad)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_checkpoint_with_wrong_config_or_weights_is_input_error(trained, tmp_path):
    supernet, config, _ = trained
    state = supernet.state_dict()
    cases = {
        "bad width": {"format": "enasa-supernet/1", "state_dict": state,
                      "config": json.dumps({**config.to_dict(), "width_mult": 1000.0})},
        "mismatch": {"format": "enasa-supernet/1", "state_dict": state,
                     "config": json.dumps({**config.to_dict(),
                                           "stage_repeats": [1, 1, 1, 1]})},
        "format": {"format": "other", "state_dict": state, "config": "{}"},
    }
    for name, payload in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        with pytest.raises(InputError):
            load_checkpoint(path)


# --- npz loader --------------------------------------------------------------------------


def _save_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_loader_accepts_a_valid_file(tmp_path):
    images = np.random.default_rng(0).random((6, 1, 32, 32), dtype=np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    data = load_npz(_save_npz(tmp_path / "ok.npz", images=images, labels=labels))
    assert data.images.shape == (6, 3, 32, 32)  # one channel replicated
    assert data.num_classes == 3
    np.testing.assert_array_equal(data.images[:, 2].numpy(), images[:, 0])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((2, 3, 32, 32), np.float64), "labels": np.zeros(2, np.int64)},
         "'images' must be float32"),
        ({"images": np.zeros((2, 3, 32, 32), np.float32), "labels": np.zeros(3, np.int64)},
         "differ in length"),
        ({"images": np.zeros((2, 3, 32, 32), np.float32), "labels": np.zeros(2, np.int32)},
         "'labels' must be int64"),
        ({"images": np.zeros((2, 3, 32, 32), np.float32),
          "labels": np.array([0, {"x": 1}], dtype=object)},
         "'labels' is a pickled object array"),
        ({"images": np.zeros((2, 3, 30, 30), np.float32), "labels": np.zeros(2, np.int64)},
         "multiple of 32"),
        ({"labels": np.zeros(2, np.int64)}, "missing array 'images'"),
    ],
)
def test_npz_loader_names_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=message):
        load_npz(path)


def test_npz_loader_rejects_non_archives(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a .npz archive"):
        load_npz(path)
    with pytest.raises(InputError, match="cannot read"):
        load_npz(tmp_path / "missing.npz")


# --- search ------------------------------------------------------------------------------


def test_stagewise_search_history_is_complete_and_deterministic(stagewise_runs, trained):
    supernet, _, _ = trained
    first, second = stagewise_runs
    assert first.history == second.history
    assert len(first.history) == 8
    assert all(set(entry) == HISTORY_FIELDS for entry in first.history)
    assert [e["generation"] for e in first.history] == [0] * 4 + [1] * 4
    archs = [tuple(e["arch"]) for e in first.history]
    assert len(set(archs)) == 8
    best = max(first.history[:4], key=lambda e: e["accuracy"])
    for arch in archs[4:]:  # generation 1 takes the bottom half of the best so far
        for layer in fixed_half(supernet.num_layers, 0):
            assert arch[layer] == best["arch"][layer]
    assert first.best == max(first.history, key=lambda e: e["accuracy"])
    assert first.best_arch == tuple(first.best["arch"])


def test_stagewise_groups_share_work(stagewise_runs):
    history = stagewise_runs[0].history
    assert all(e["group_dedup_node_ratio"] > 1 for e in history)
    assert history[4]["group_dedup_mac_ratio"] > history[0]["group_dedup_mac_ratio"]
    for entry in history:
        assert 0 < entry["latency_ns"] <= entry["group_makespan_ns"]
        assert entry["energy_pj"] > 0 and entry["macs"] > 0


def test_search_accuracy_matches_torch_after_recalibration(stagewise_runs, trained, digits):
    supernet, _, _ = trained
    train, val = digits
    entry = stagewise_runs[0].history[5]
    recalibrate_batchnorm(supernet, entry["arch"], train)
    assert evaluate_accuracy(supernet, entry["arch"], val) == pytest.approx(
        entry["accuracy"], abs=1 / len(val))


def test_evolution_with_unmeetable_latency_has_no_best(trained, digits, tmp_path):
    supernet, _, _ = trained
    train, val = digits
    config = SearchConfig(strategy="evolution", generations=2, group_size=3, seed=1,
                          max_latency_ns=1.0)
    result = search(supernet, train, val, config, out_dir=tmp_path)
    assert result.best is None
    assert not any(e["feasible"] for e in result.history)
    assert len({tuple(e["arch"]) for e in result.history}) == 6
    assert (tmp_path / "gen_001" / "plan.json").exists()
    assert len(list((tmp_path / "gen_000").glob("subnet_*.onnx"))) == 3


def test_macs_limit_keeps_big_subnets_out(trained, digits):
    supernet, _, _ = trained
    train, val = digits
    small = SearchConfig(strategy="uniform", generations=1, group_size=3, seed=0)
    limit = int(np.median([e["macs"] for e in search(supernet, train, val, small).history]))
    limited = SearchConfig(strategy="fair", generations=1, group_size=3, seed=0,
                           max_macs=limit)
    assert all(e["macs"] <= limit for e in search(supernet, train, val, limited).history)


# --- CLI ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")

    parser = argparse.ArgumentParser(prog="enasa")
    add_search_parsers(parser.add_subparsers(dest="command", required=True), common)
    return parser


def test_search_cli_writes_history_and_best(trained, tmp_path):
    supernet, config, _ = trained
    checkpoint = tmp_path / "supernet.pt"
    save_checkpoint(checkpoint, supernet, config)
    out = tmp_path / "out"
    args = _parser().parse_args([
        "search", "--strategy", "stagewise", "--generations", "2", "--group-size", "2",
        "--seed", "1", "--out", str(out), "--supernet", str(checkpoint), "--no-progress",
        "-q"])
    assert run_search(args) == 0
    history = json.loads((out / "history.json").read_text())["history"]
    best = json.loads((out / "best.json").read_text())["best"]
    assert len(history) == 4 and all(set(e) == HISTORY_FIELDS for e in history)
    assert best == max(history, key=lambda e: e["accuracy"])


def test_search_cli_bad_space_exits_2(tmp_path):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["search", "--space", "resnet", "--out", str(tmp_path)])
    assert info.value.code == 2


def test_search_cli_checkpoint_mismatch_is_input_error(trained, tmp_path):
    supernet, config, _ = trained
    checkpoint = tmp_path / "supernet.pt"
    save_checkpoint(checkpoint, supernet, config)
    args = _parser().parse_args(["search", "--space", "fairnas", "--supernet",
                                 str(checkpoint), "--out", str(tmp_path / "o")])
    with pytest.raises(InputError, match="--space"):
        run_search(args)


def test_train_then_search_from_npz_without_checkpoint(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = _save_npz(tmp_path / "data.npz",
                     images=rng.standard_normal((40, 3, 32, 32), dtype=np.float32),
                     labels=rng.integers(0, 4, 40).astype(np.int64))
    checkpoint = tmp_path / "s.pt"
    args = _parser().parse_args([
        "train-supernet", "--epochs", "1", "--rule", "fair", "--stage-repeats", "1,1,2,1",
        "--data", str(data), "-o", str(checkpoint), "--no-progress", "--json"])
    assert run_train(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["num_classes"] == 4 and report["config"]["rule"] == "fair"
    assert load_checkpoint(checkpoint)[1].epochs == 1

    args = _parser().parse_args([
        "search", "--strategy", "uniform", "--generations", "1", "--group-size", "2",
        "--epochs", "1", "--stage-repeats", "1,1,2,1", "--data", str(data),
        "--out", str(tmp_path / "out"), "--no-progress", "-q"])
    assert run_search(args) == 0
    assert "training a spos supernet" not in capsys.readouterr().err  # -q: errors only
    assert len(json.loads((tmp_path / "out" / "history.json").read_text())["history"]) == 2


def test_train_supernet_takes_the_full_depth_recipe_options(tmp_path):
    rng = np.random.default_rng(0)
    data = _save_npz(tmp_path / "data.npz",
                     images=rng.standard_normal((24, 3, 32, 32), dtype=np.float32),
                     labels=rng.integers(0, 4, 24).astype(np.int64))
    common = ["train-supernet", "--epochs", "1", "--stage-repeats", "1,1,2,1",
              "--data", str(data), "--no-progress", "-q"]
    args = _parser().parse_args([*common, "--adaptive-clip", "0.1",
                                 "--path-warmup-epochs", "1", "-o", str(tmp_path / "a.pt")])
    assert run_train(args) == 0 and (tmp_path / "a.pt").exists()
    for extra, message in ((["--adaptive-clip", "0"], "clipping ratio must be positive"),
                           (["--rule", "fair", "--path-warmup-epochs", "1"],
                            "spos rule only")):
        args = _parser().parse_args([*common, *extra, "-o", str(tmp_path / "b.pt")])
        with pytest.raises(InputError, match=message):
            run_train(args)
        assert not (tmp_path / "b.pt").exists()
