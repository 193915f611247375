"""``enasa check``: the verdict is compile's, with what runs where and why not."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import onnx
import pytest

from enasa_compiler.cli import main

ROOT = Path(__file__).resolve().parent
SCRIPT = ROOT / "corpus" / "make_corpus.py"


def _make_corpus():
    spec = importlib.util.spec_from_file_location("make_corpus_for_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_corpus = _make_corpus()
COMPILE_CASES = [case for case in make_corpus.cases() if case.argv[0] == "compile"]


@pytest.fixture(scope="module")
def corpus(corpus_run: tuple[Path, str]) -> Path:
    return corpus_run[0]


def _check_argv(compile_argv: list[str]) -> list[str]:
    """Turn a compile command line into the check of the same models and options."""
    argv, skip = ["check"], False
    for arg in compile_argv[1:]:
        if skip:
            skip = False
        elif arg in ("-o", "--output"):
            skip = True
        elif arg != "--force":
            argv.append(arg)
    return argv


@pytest.mark.parametrize("case", COMPILE_CASES, ids=[c.name for c in COMPILE_CASES])
def test_check_gives_compiles_verdict_on_every_corpus_input(case, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    compile_code = main(case.command(corpus / case.name, out))
    capsys.readouterr()
    check_code = main(_check_argv(case.command(corpus / case.name, out)))
    captured = capsys.readouterr()
    assert (check_code == 0) == (compile_code == 0), captured.err + captured.out
    assert check_code in (1, 2) and "Traceback" not in captured.err
    assert list(out.iterdir()) == []


def test_check_lists_every_unsupported_node_with_its_file(tmp_path, capsys):
    nodes = [onnx.helper.make_node("Relu", ["x"], ["a"], name="relu"),
             onnx.helper.make_node("Hardmax", ["a"], ["b"], name="first"),
             onnx.helper.make_node("TopK", ["b", "k"], ["y", "i"], name="second", axis=1)]
    k = onnx.numpy_helper.from_array(__import__("numpy").array([2], "int64"), "k")
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])], [k])
    path = tmp_path / "odd.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid("", 17)]), path)
    assert main(["check", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["compiles"] is False
    assert report["reasons"] == [
        f"{path}: node 'first': unsupported operator Hardmax",
        f"{path}: node 'second': unsupported operator TopK"]
    assert report["files"][0]["operators"]["digital"] == {"Relu": 1}


def test_check_says_a_good_group_compiles_and_what_runs_where(tmp_path, capsys):
    import numpy as np

    weight = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    zero = onnx.numpy_helper.from_array(np.zeros(4, np.float32), "b")
    nodes = [onnx.helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             onnx.helper.make_node("Identity", ["c"], ["d"], name="alias"),
             onnx.helper.make_node("Elu", ["d"], ["y"], name="act")]
    graph = onnx.helper.make_graph(
        nodes, "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 6, 6])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4, 4, 4])],
        [weight, zero])
    path = tmp_path / "good.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid("", 17)]), path)
    assert main(["check", str(path), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert entry["operators"] == {"crossbars": {"Conv": 1}, "digital": {"Elu": 1}}
    assert entry["dynamic_dimensions"] == ["x[0]=n"]
    assert entry["macs_per_batch"] == 4 * 27 * 16 and entry["crossbar_weights"] == 108
    assert entry["canonicalisation"]["op_count_changes"] == {"Identity": -1}
