"""The enasa command line: exit codes, one-line errors, no partial output files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from enasa_compiler.cli import main


def _run(*args):
    """Run the installed console script the way a user does."""
    exe = shutil.which("enasa")
    command = [exe, *args] if exe else [sys.executable, "-m", "enasa_compiler.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _tiny_model(op_type: str = "Relu", opset: int = 17) -> onnx.ModelProto:
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node(op_type, ["c"], ["y"], name="act")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.fixture(scope="module")
def compiled_plan(group4_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "plan.json"
    result = _run("compile", *map(str, group4_files), "-t", "neurosim-22nm", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    return out


def test_compile_then_validate_exits_zero(compiled_plan):
    result = _run("validate", str(compiled_plan))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def _tamper(plan_path, tmp_path, edit):
    data = json.loads(plan_path.read_text())
    edit(data)
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(data))
    return out


def test_operator_moved_onto_a_busy_crossbar_is_rejected(compiled_plan, tmp_path):
    def move(data):
        mvm = [e for e in data["schedule"]["compute"] if e["placements"]]
        first, other = next((a, b) for i, a in enumerate(mvm) for b in mvm[i + 1:]
                            if b["start_ns"] < a["end_ns"] and a["start_ns"] < b["end_ns"])
        other["placements"][0]["crossbar"] = first["placements"][0]["crossbar"]

    result = _run("validate", str(_tamper(compiled_plan, tmp_path, move)))
    assert result.returncode == 1
    assert "double-booked" in result.stdout


def test_deleted_operator_is_rejected(compiled_plan, tmp_path):
    removed = {}

    def delete(data):
        event = data["schedule"]["compute"].pop(3)
        removed["op"] = event["op"]

    result = _run("validate", str(_tamper(compiled_plan, tmp_path, delete)))
    assert result.returncode == 1
    assert "missing-op" in result.stdout and removed["op"] in result.stdout


def test_not_onnx_gives_one_line_and_exit_2(tmp_path):
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("this is not a model\n")
    out = tmp_path / "plan.json"
    result = _run("compile", str(bogus), "-o", str(out))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not an ONNX model" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [bogus]


def test_unsupported_operator_gives_one_line_and_exit_2(tmp_path):
    path = tmp_path / "hardmax.onnx"
    onnx.save(_tiny_model("Hardmax"), path)
    out = tmp_path / "plan.json"
    result = _run("compile", str(path), "-o", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "enasa compile: error: hardmax: unsupported operator Hardmax (node 's0/act')")
    assert not out.exists()


def test_subnets_with_different_inputs_are_refused(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(_tiny_model(), a)
    other = _tiny_model()
    other.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 16
    onnx.save(other, b)
    code = main(["compile", str(a), str(b), "-o", str(tmp_path / "p.json"), "-q"])
    assert code == 2
    assert not (tmp_path / "p.json").exists()


def test_dynamic_input_dimension_is_refused(tmp_path, capsys):
    model = _tiny_model()
    dim = model.graph.input[0].type.tensor_type.shape.dim[3]
    dim.Clear()
    dim.dim_param = "width"
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    assert main(["compile", str(path), "-o", str(tmp_path / "p.json")]) == 2
    assert "dynamic dimension 3 ('width')" in capsys.readouterr().err


def test_bad_target_file_names_the_field(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(_tiny_model(), path)
    target = tmp_path / "t.json"
    from enasa_compiler.targets import load_target

    data = load_target("neurosim-22nm").to_dict()
    data["crossbar"]["cols"] = -5
    target.write_text(json.dumps(data))
    assert main(["compile", str(path), "-t", str(target), "-o", str(tmp_path / "p.json")]) == 2
    assert "field crossbar.cols" in capsys.readouterr().err


def test_simulate_json_reports_per_subnet_costs(compiled_plan, capsys):
    assert main(["simulate", str(compiled_plan), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["subnets"]) == 4
    total = report["totals"]["energy_pj"]
    attributed = sum(s["attributed_energy_pj"] for s in report["subnets"])
    assert attributed == pytest.approx(total, rel=1e-6)
    assert all(0 < s["latency_ns"] <= report["totals"]["makespan_ns"]
               for s in report["subnets"])


def test_targets_lists_the_presets(capsys):
    assert main(["targets", "--json"]) == 0
    names = [t["name"] for t in json.loads(capsys.readouterr().out)["targets"]]
    assert "neurosim-22nm" in names


def test_usage_error_exits_2():
    result = _run("compile")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_simulate_refuses_an_invalid_plan(compiled_plan, tmp_path, capsys):
    def shorten(data):
        event = next(e for e in data["schedule"]["compute"] if e["placements"])
        event["end_ns"] = event["start_ns"] + 1

    assert main(["simulate", str(_tamper(compiled_plan, tmp_path, shorten))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a valid plan" in err and "duration" in err


def _external_outside(model: onnx.ModelProto) -> onnx.ModelProto:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../outside.bin"
    return model


def _set_input_dim(axis: int, value: int):
    def edit(model: onnx.ModelProto) -> onnx.ModelProto:
        model.graph.input[0].type.tensor_type.shape.dim[axis].dim_value = value
        return model
    return edit


def _no_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    del model.graph.node[:]
    return model


def _old_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    model.opset_import[0].version = 11
    return model


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(_tiny_model().SerializeToString()[:60]), "not an ONNX model"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: onnx.save(_external_outside(_tiny_model()), p),
         "points to external data outside the model's folder (../outside.bin); refused"),
        (lambda p: onnx.save(_set_input_dim(2, 10**9)(_tiny_model()), p),
         "dimension 2 is 1000000000, outside 1..16777216"),
        (lambda p: onnx.save(_set_input_dim(1, 0)(_tiny_model()), p),
         "dimension 1 is 0, outside"),
        (lambda p: onnx.save(_no_nodes(_tiny_model()), p), "the graph has no nodes"),
        (lambda p: onnx.save(_old_opset(_tiny_model()), p), "opset 11 is older than 13"),
    ],
    ids=["truncated", "empty", "directory", "external-outside", "huge-dim", "zero-dim",
         "no-nodes", "old-opset"],
)
def test_bad_model_gives_one_line_exit_2_and_no_output(tmp_path, capsys, make, message):
    path = tmp_path / "model.onnx"
    make(path)
    out = tmp_path / "plan.json"
    assert main(["compile", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_plan_file_gets_the_usual_permissions(compiled_plan):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(compiled_plan.stat().st_mode) == 0o666 & ~umask


@pytest.mark.slow
def test_demo_runs_the_whole_flow(capsys):
    assert main(["demo", "--subnets", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] and result["violations"] == []
    assert len(result["archs"]) == 4
    # the four subnets share their bottom 10 layers: dedup removes them three times over
    assert result["nodes_after"] < result["nodes_before"]
    assert 1.3 < result["dedup_mac_ratio"] < 4
    assert result["group_model_max_abs_error"] < 1e-3
    # grouping beats one-subnet-at-a-time on the same chip
    assert result["one_at_a_time_makespan_ns"] > 2 * result["makespan_ns"]
    assert result["one_at_a_time_energy_pj"] > result["energy_pj"]


def test_output_path_that_is_a_folder_is_refused_cleanly(group4_files, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["compile", str(group4_files[0]), "-o", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file" in err
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "out"]


def test_internal_error_is_one_line_with_exit_3(monkeypatch, capsys):
    import enasa_compiler.cli as cli

    def broken(args):
        raise RuntimeError("scheduler lost track")

    monkeypatch.setitem(cli._COMMANDS, "targets", broken)
    assert main(["targets"]) == 3
    err = capsys.readouterr().err
    assert err == ("enasa targets: internal error: RuntimeError: scheduler lost track "
                   "(rerun with --debug for the traceback and report it)\n")
    with pytest.raises(RuntimeError):
        main(["targets", "--debug"])


def test_simulate_execute_compares_every_subnet_with_onnxruntime(compiled_plan, group4_files,
                                                                 tmp_path, capsys):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, images=rng.standard_normal((3, 3, 32, 32)).astype(np.float32),
             labels=rng.integers(0, 10, 3).astype(np.int64))
    models = [str(p) for p in group4_files]
    assert main(["simulate", str(compiled_plan), "--execute", "--models", *models,
                 "--inputs", str(inputs), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and len(report["subnets"]) == 4
    # float32 rounding from BN folding; the executor itself is exact to ~1e-13
    assert all(row["ideal_max_abs_error"] < 5e-4 for row in report["subnets"])
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in report["subnets"])
    # without the models it is a usage error; with the wrong models the plan is invalid
    assert main(["simulate", str(compiled_plan), "--execute", "--inputs", str(inputs)]) == 2
    assert main(["simulate", str(compiled_plan), "--execute", "--models", *models[::-1],
                 "--inputs", str(inputs)]) == 1
