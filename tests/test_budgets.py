"""Budgets before allocation (issue #16): sizes come from metadata and are checked first.

The corpus (``tests/corpus``) holds the hostile files; these tests pin down what the
corpus cannot: the speed of a refusal, raising a budget with its flag or variable,
reading only a tensor's own bytes from a huge sparse file, and that the fold-size
prediction equals what the evaluator would really produce.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.reference
import pytest
from onnx import TensorProto, helper, numpy_helper

from enasa_compiler import budgets
from enasa_compiler.atomic import json_text
from enasa_compiler.cli import main
from enasa_compiler.errors import InputError
from enasa_compiler.inputs import read_npz

CORPUS = Path(__file__).parent / "corpus"
sys.path.insert(0, str(CORPUS))
import make_corpus  # noqa: E402


def test_a_zip_bomb_is_refused_in_milliseconds(tmp_path: Path) -> None:
    bomb = tmp_path / "in.npz"
    bomb.write_bytes(make_corpus.zip_bomb(4 << 30))
    assert bomb.stat().st_size < 5 << 20
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"declares 4\.0 GiB, over the 1\.0 GiB budget"):
        read_npz(bomb)
    assert time.perf_counter() - started < 0.5


def test_raising_the_memory_budget_still_leaves_the_compression_ratio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = tmp_path / "in.npz"
    bomb.write_bytes(make_corpus.zip_bomb(4 << 30))
    monkeypatch.setenv("ENASA_MAX_MEMORY_MB", "8192")
    with pytest.raises(InputError, match=r"array 'images' has 10\d\d times compression, "
                       r"over the limit of 1000.*ENASA_MAX_COMPRESSION_RATIO"):
        read_npz(bomb)


def test_an_ordinary_npz_passes_its_checks(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    np.savez_compressed(path, images=np.zeros((4, 3, 8, 8), np.float32),
                        labels=np.arange(4, dtype=np.int64))
    images, labels = read_npz(path)
    assert images.shape == (4, 3, 8, 8) and labels is not None and list(labels) == [0, 1, 2, 3]


def test_bad_budget_variable_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENASA_MAX_PLAN_MB", "lots")
    with pytest.raises(InputError, match="ENASA_MAX_PLAN_MB must be a positive integer"):
        budgets.current()


def test_max_memory_flag_raises_the_budget(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "a.onnx"
    model.write_bytes(make_corpus._tile_bomb().SerializeToString())
    plan = tmp_path / "plan.json"
    assert main(["compile", str(model), "-o", str(plan), "-q"]) == 2
    assert "over the 1.0 GiB budget" in capsys.readouterr().err
    assert main(["compile", str(model), "-o", str(plan), "-q", "--max-memory", "4096"]) == 0
    assert budgets.current().max_memory_bytes == 1 << 30  # the override ended with main


def test_plan_values_are_counted_before_parsing(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "a.onnx"
    model.write_bytes(make_corpus.tiny_model().SerializeToString())
    plan = tmp_path / "plan.json"
    assert main(["compile", str(model), "-o", str(plan), "-q"]) == 0
    monkeypatch.setenv("ENASA_MAX_PLAN_ENTRIES", "50")
    for command in (["validate"], ["simulate"], ["report", "-o", str(tmp_path / "r.html")]):
        assert main([command[0], str(plan), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "JSON values, over the limit of 50" in err, err


def test_plan_bytes_are_checked_before_reading(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("{" + " " * (2 << 20) + "}")
    monkeypatch.setenv("ENASA_MAX_PLAN_MB", "1")
    assert main(["validate", str(plan)]) == 2
    assert "declares 2.0 MiB, over the 1.0 MiB budget" in capsys.readouterr().err


def test_external_data_reads_only_the_declared_bytes_of_a_sparse_4_gib_file(
        tmp_path: Path) -> None:
    """The weight's 432 bytes sit at the end of a sparse 4 GiB file; no length given.

    onnx's loader reads to the end of the file (12.7 GB RSS, 58 s); the frontend
    must read 432 bytes, so the whole compile stays far below 1 GiB of RSS.
    """
    values = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    offset = (4 << 30) - values.nbytes
    with (tmp_path / "w.bin").open("wb") as handle:
        handle.truncate(4 << 30)
        handle.seek(offset)
        handle.write(values.tobytes())
    model = make_corpus.tiny_model()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", str(offset))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "a.onnx").write_bytes(model.SerializeToString())
    script = ("import resource, sys\n"
              "from enasa_compiler.frontend import load_subnet\n"
              "from onnx_ir import convenience\n"
              "subnet = load_subnet(sys.argv[1])\n"
              "w = subnet.model.graph.initializers['w'].const_value.numpy()\n"
              "print(float(w.sum()), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.onnx")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    total, peak_kib = result.stdout.split()
    assert float(total) == pytest.approx(float(values.sum()), rel=1e-5)
    assert int(peak_kib) < 1 << 20  # KiB: under 1 GiB
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(("op_type", "inputs", "attributes"), [
    ("ConstantOfShape", [np.array([2, 3, 4], np.int64)], {}),
    ("Expand", [np.ones((3, 1), np.float32), np.array([2, 3, 5], np.int64)], {}),
    ("Tile", [np.ones((2, 3), np.float32), np.array([3, 2], np.int64)], {}),
    ("Range", [np.array(1, np.int64), np.array(20, np.int64), np.array(3, np.int64)], {}),
    ("Pad", [np.ones((2, 3), np.float32), np.array([1, 0, 2, 4], np.int64)], {}),
    ("MatMul", [np.ones((5, 1), np.float32), np.ones((1, 7), np.float32)], {}),
    ("Add", [np.ones((5, 1), np.float32), np.ones((1, 7), np.float32)], {}),
    ("Gather", [np.ones((4, 6), np.float32), np.array([[0, 1, 2]], np.int64)], {"axis": 1}),
    ("Concat", [np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)], {"axis": 0}),
])
def test_fold_prediction_equals_what_the_evaluator_produces(
        op_type: str, inputs: list[np.ndarray], attributes: dict[str, int]) -> None:
    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op_type, names, ["out"], **attributes)
    graph = helper.make_graph(
        [node], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs, strict=True)],
        [helper.make_empty_tensor_value_info("out")])
    evaluator = onnx.reference.ReferenceEvaluator(graph, opsets={"": 17})
    actual = evaluator.run(None, dict(zip(names, inputs,
                                         strict=True)))[0]
    assert budgets.fold_output_elements(op_type, inputs, attributes) == actual.size


def test_a_fold_bomb_is_refused_before_it_is_computed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "a.onnx"
    model.write_bytes(make_corpus._fold_bomb().SerializeToString())
    started = time.perf_counter()
    assert main(["compile", str(model), "-o", str(tmp_path / "p.json")]) == 2
    assert time.perf_counter() - started < 5  # evaluating it took 10 s and 12 GB
    assert "would produce 3.2e+09 elements when folded" in capsys.readouterr().err


def test_a_small_constant_computation_is_not_refused_by_the_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same graph with a size that fits passes the fold: only the size is refused."""
    model = make_corpus._fold_bomb()
    shape = model.graph.initializer[-1]
    shape.CopyFrom(numpy_helper.from_array(np.array([-1, -4, -8, -8], np.int64), "shape"))
    path = tmp_path / "a.onnx"
    path.write_bytes(model.SerializeToString())
    assert main(["compile", str(path), "-o", str(tmp_path / "p.json"), "-q"]) in (0, 2)
    # Exit 2 only for what comes after folding (the Add's shape), never the budget.
    assert "when folded" not in capsys.readouterr().err


def test_thread_counts_are_bounded_by_the_cores() -> None:
    cores = budgets.usable_cores()
    assert budgets.check_threads(None, "--threads") is None
    assert budgets.check_threads(cores, "--threads") == cores
    for bad in (0, cores + 1, 10**9):
        with pytest.raises(InputError, match=f"--threads must be between 1 and {cores}"):
            budgets.check_threads(bad, "--threads")


def test_json_is_never_written_with_nan() -> None:
    assert json_text({"a": 1.5}, "x") == json.dumps({"a": 1.5})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InputError, match="refusing to write the plan: it would hold NaN"):
            json_text({"totals": [bad]}, "the plan")


def test_library_warnings_go_to_the_log_not_stderr(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import warnings

    import enasa_compiler.cli as cli

    def noisy(args: object) -> int:
        warnings.warn("legacy checkpoint format", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setitem(cli._COMMANDS, "targets", noisy)
    with caplog.at_level("INFO", logger="py.warnings"):
        assert main(["targets", "--verbose"]) == 0
    assert capsys.readouterr().err == ""
    assert any("legacy checkpoint format" in r.getMessage() for r in caplog.records)
