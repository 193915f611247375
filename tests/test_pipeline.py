"""End to end: a group of exported subnets compiles into a plan that validates."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from onnx_ir.passes import PassManager

import enasa_compiler
from enasa_compiler.cli.demo import group_model_max_error
from enasa_compiler.frontend import load_group
from enasa_compiler.passes import CanonicalizePass
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.testing import assert_plan_valid, compile_and_check


def test_compiled_plan_validates_and_covers_every_subnet(group4_result):
    plan = group4_result.plan
    assert_plan_valid(plan)
    assert plan.mode == "resident"
    assert {i for op in plan.operators for i in op.subnets} == {0, 1, 2, 3}
    # the four subnets share their first 10 layers: the stem and those layers' operators
    # are computed once and serve all four subnets
    shared = [op for op in plan.operators if op.subnets == (0, 1, 2, 3)]
    assert shared and plan.dedup["nodes_removed"] > 0
    # every conv's MACs are counted, depthwise ones run digitally included
    assert plan.dedup["macs_after"] == plan.totals.macs
    assert any(op.macs > 0 and op.kind.value == "digital" for op in plan.operators)


def test_group_model_computes_what_each_subnet_computes(group4_result, group4_files):
    # Against each canonicalized subnet, dedup and merging change no arithmetic.
    canonical = [PassManager([CanonicalizePass()])(s.model).model
                 for s in load_group(group4_files)]
    assert group_model_max_error(group4_result.group_model, canonical) <= 1e-5
    # Against the exported files, BatchNorm folding rounds differently in float32
    # (logits of the demo supernet reach ~8, so this is a 1e-5 relative bound).
    assert group_model_max_error(group4_result.group_model, group4_files) <= 1e-4


def test_same_inputs_give_a_byte_identical_plan(group4_files, group4_default):
    again = enasa_compiler.compile(group4_files, "neurosim-22nm")
    assert again.to_json() == group4_default.plan.to_json()


def test_api_accepts_model_protos_and_onnx_ir_models(group4_files, group4_result):
    protos = [onnx.load(p) for p in group4_files[:2]]
    models = [ir.load(p) for p in group4_files[2:]]
    plan = enasa_compiler.compile([*protos, *models], "neurosim-22nm")
    assert enasa_compiler.validate(plan) == []
    assert len(plan.operators) == len(group4_result.plan.operators)


def test_dynamic_mapping_on_a_small_chip_validates_and_pays_for_writes(group4_files,
                                                                     group4_result):
    resident = group4_result.plan
    data = load_target("neurosim-22nm").to_dict()
    largest = max(len(op.weights) and sum(len(w.tiles) for w in resident.weights
                                          if w.id in op.weights)
                  for op in resident.operators)
    data["chip"]["crossbars"] = max(largest, resident.totals.crossbars_used // 3)
    small = target_from_dict(data)
    plan = enasa_compiler.compile(group4_files, small, mode="dynamic")
    assert plan.mode == "dynamic"
    assert enasa_compiler.validate(plan) == []
    assert plan.totals.crossbars_used <= small.chip.crossbars
    # every tile is written at least once; writes now overlap computation instead of all
    # happening up front, so the crossbars are reused by later layers
    assert plan.totals.cell_writes >= resident.totals.cell_writes
    assert plan.totals.write_energy_pj >= resident.totals.write_energy_pj
    first_compute_end = min(e.end_ns for e in plan.compute)
    assert any(e.start_ns >= first_compute_end for e in plan.program)
    reused = {}
    for e in plan.program:
        reused[e.crossbar] = reused.get(e.crossbar, 0) + 1
    assert max(reused.values()) > 1


def _readme_blocks() -> list[str]:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


def test_readme_python_snippets_run_as_written(group4_files, tmp_path, capsys):
    shutil.copy(group4_files[0], tmp_path / "a.onnx")
    shutil.copy(group4_files[1], tmp_path / "b.onnx")
    blocks = _readme_blocks()
    assert len(blocks) == 2
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            namespace: dict[str, object] = {"__name__": "readme"}
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
    assert (tmp_path / "plan.json").exists()
    printed = capsys.readouterr().out.split("\n")
    nodes_removed, macs_removed, convs = (int(x) for x in printed[-2].split())
    assert nodes_removed > 0 and macs_removed > 0 and convs > 0


@pytest.mark.parametrize("batch", [2])
def test_batch_size_scales_vectors_not_weights(group4_files, group4_result, batch):
    plan = compile_and_check(group4_files[:1], "neurosim-22nm", batch=batch)
    assert plan.batch == batch and plan.input_shape[0] == batch


def test_validate_with_models_rederives_every_operator(group4_result, group4_files):
    plan = group4_result.plan
    assert_plan_valid(plan, models=group4_files)
    data = plan.to_dict()
    victim = data["operators"].pop(5)
    data["schedule"]["compute"] = [e for e in data["schedule"]["compute"]
                                   if e["op"] != victim["id"]]
    for op in data["operators"]:
        op["deps"] = [d for d in op["deps"] if d != victim["id"]]
    shared = next(op for op in data["operators"] if len(op["subnets"]) == 4)
    shared["subnets"] = [0, 1]
    messages = [str(v) for v in enasa_compiler.validate(data, models=group4_files)]
    # the validator walks each model on its own: the node the victim computed is missing
    # from every subnet (named as in its file: the plan's id less the merge prefix)
    node = victim["id"].removeprefix("s0/")
    for subnet in plan.subnets:
        assert (f"missing-op: subnet {subnet.index} ('{subnet.name}'): node '{node}' "
                f"({victim['op_type']}) of the model is not in the plan") in messages
    assert any(m.startswith(f"models: operator '{shared['id']}' serves subnets 0,1 in the "
                            "plan but 0,1,2,3") for m in messages)


@pytest.mark.slow
def test_subnets_from_the_dynamo_exporter_compile(demo_supernet, tmp_path):
    from enasa_compiler.models.export import export_subnet

    archs = [(0,) * 10 + (1,) * 10, (0,) * 10 + (2,) * 10]
    files = [export_subnet(demo_supernet, arch, tmp_path / f"d{i}.onnx", dynamo=True)
             for i, arch in enumerate(archs)]
    result = enasa_compiler.compile_detailed(files, "neurosim-22nm")
    assert enasa_compiler.validate(result.plan, models=files) == []
    # stem and the first 10 layers are shared: compute-shared operators serve both
    assert sum(op.subnets == (0, 1) for op in result.plan.operators) > 10
    assert result.plan.dedup["nodes_removed"] > 10
    assert group_model_max_error(result.group_model, files) <= 1e-4
    assert [s.arch for s in result.plan.subnets] == archs


def test_dedup_off_keeps_every_operator_but_stores_shared_weights_once(group4_files,
                                                                      group4_result):
    from enasa_compiler.pipeline import compile_detailed
    from enasa_compiler.validation.validator import validate

    off = compile_detailed(group4_files, dedup_operators=False, duplicate="off").plan
    on = group4_result.plan
    assert off.dedup["nodes_removed"] == 0
    assert off.dedup["macs_after"] == off.dedup["macs_before"] == on.dedup["macs_before"]
    assert on.dedup["macs_after"] < off.dedup["macs_after"]
    assert len(off.operators) > len(on.operators)
    assert {w.id for w in off.weights} == {w.id for w in on.weights}
    assert off.totals.energy_pj > on.totals.energy_pj
    assert validate(off) == []


def test_compile_reports_the_time_of_every_stage(group4_result):
    from enasa_compiler.pipeline import STAGES

    assert list(group4_result.stage_s) == list(STAGES)
    assert all(seconds >= 0 for seconds in group4_result.stage_s.values())
    assert group4_result.stage_s["frontend"] > 0 and group4_result.stage_s["passes"] > 0


def test_graph_passes_report_where_their_time_goes(group4_files):
    from enasa_compiler.pipeline import build_group_model

    timings: dict[str, float] = {}
    untimed, stats = build_group_model(load_group(group4_files))
    timed, timed_stats = build_group_model(load_group(group4_files), timings=timings)
    assert list(timings) == ["canonicalize_merge", "dedup", "fold_batchnorm", "digest",
                            "weight_share"]
    assert all(seconds >= 0 for seconds in timings.values())
    assert timings["canonicalize_merge"] > 0 and timings["dedup"] > 0
    # Timing changes nothing the passes produce.
    assert timed_stats == stats
    assert len(list(timed.graph)) == len(list(untimed.graph))
