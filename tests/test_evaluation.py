"""The evaluation: each system's totals re-derived from plans, the CLI end to end."""

from __future__ import annotations

import json
import math

import pytest

from enasa_compiler.cli import main
from enasa_compiler.evaluation.systems import run_enasa, run_single_and_resident
from enasa_compiler.evaluation.workload import (
    WorkloadSpec,
    build_workload_supernet,
    export_generations,
    generation_archs,
)
from enasa_compiler.models.sampling import fixed_half
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.targets import load_target
from enasa_compiler.targets.power import static_power_mw
from enasa_compiler.validation.validator import validate

SPEC = WorkloadSpec("spos", generations=2, group_size=3, input_size=32, num_classes=10,
                    seed=1)


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    supernet = build_workload_supernet(SPEC)
    groups = generation_archs(supernet, SPEC)
    files = export_generations(supernet, groups, tmp_path_factory.mktemp("workload"))
    return supernet, groups, files


def test_stagewise_generations_keep_the_best_half(workload):
    supernet, groups, _ = workload
    assert len(groups) == 2 and all(len(g) == 3 for g in groups)
    # Generation 1 children keep the fixed half of one parent of generation 0.
    fixed = list(fixed_half(supernet.num_layers, 1))
    kept = {tuple(child[i] for i in fixed) for child in groups[1]}
    assert len(kept) == 1
    assert kept.pop() in {tuple(parent[i] for i in fixed) for parent in groups[0]}


def test_uniform_workload_differs_and_is_seeded():
    supernet = build_workload_supernet(SPEC)
    spec = WorkloadSpec("spos", 2, 3, 32, 10, seed=1, stagewise=False)
    assert generation_archs(supernet, spec) == generation_archs(supernet, spec)
    assert generation_archs(supernet, spec) != generation_archs(supernet, SPEC)


def test_enasa_totals_are_the_sum_of_its_validated_plans(workload):
    _, _, files = workload
    target = load_target("neurosim-22nm")
    plans = []
    run = run_enasa(files, target, images=2, on_plan=lambda _, plan: plans.append(plan))
    assert len(plans) == run.plans == 2
    assert all(validate(plan) == [] for plan in plans)
    assert run.time_s == pytest.approx(sum(p.totals.makespan_ns for p in plans) / 1e9)
    static_mw = static_power_mw(target)
    assert static_mw > 0
    assert run.energy_j == pytest.approx(sum(p.totals.energy_pj + static_mw
                                             * p.totals.makespan_ns for p in plans) / 1e12)
    assert run.extra["leakage_j"] == pytest.approx(
        static_mw * sum(p.totals.makespan_ns for p in plans) / 1e12)
    assert run.cell_writes == sum(p.totals.cell_writes for p in plans)
    # Online mapping: generation 1 starts from generation 0's crossbars.
    assert plans[1].initial
    fresh = compile_detailed(files[1], target, batch=2).plan
    assert plans[1].totals.cell_writes < fresh.totals.cell_writes
    assert run.dedup_ratio is not None and run.dedup_ratio > 1.0
    assert run.subnets == 6 and run.time_per_subnet_s == pytest.approx(run.time_s / 6)


def test_single_and_resident_follow_their_definitions(workload):
    _, _, files = workload
    target = load_target("neurosim-22nm")
    single, resident = run_single_and_resident(files, target, images=2)
    plans = [compile_detailed([f], target, batch=2).plan for g in files for f in g]
    assert single.time_s == pytest.approx(sum(p.totals.makespan_ns for p in plans) / 1e9)
    assert single.cell_writes == sum(p.totals.cell_writes for p in plans)
    spans = [max(e.end_ns for e in p.compute) - min(e.start_ns for e in p.compute)
             for p in plans]
    # (c) runs no writes per subnet: only the computation, plus every distinct tile
    # written once (the subnets share some layers, so fewer cells than (b) writes).
    assert resident.time_s > sum(spans) / 1e9
    assert resident.time_s < single.time_s
    assert resident.cell_writes is not None and single.cell_writes is not None
    assert 0 < resident.cell_writes < single.cell_writes
    assert resident.energy_j is not None and single.energy_j is not None
    assert resident.energy_j < single.energy_j
    assert resident.extra["fits_resident"] is True
    assert single.dedup_ratio == resident.dedup_ratio == 1.0


@pytest.mark.slow
def test_bench_cli_writes_table_json_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "-q", "--quick", "--out", str(out), "--spaces", "spos",
                 "--generations", "2", "--group-size", "2", "--images", "2",
                 "--input-size", "32", "--scaling-groups", "1", "2"])
    assert code == 0
    assert capsys.readouterr().err == ""
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "results.md", "speedup.png", "scaling.png",
            "utilization.png"} <= names
    for png in ("speedup.png", "scaling.png", "utilization.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    space = results["spaces"]["spos"]
    systems = {run["system"]: run for run in space["systems"]}
    assert {"enasa", "single", "resident", "cpu"} <= set(systems)
    assert systems["cpu"]["kind"] == "measured" and systems["enasa"]["kind"] == "modeled"
    # A layer pipeline never takes longer than running the images layer by layer.
    assert systems["enasa"]["pipelined_time_s"] <= systems["enasa"]["time_s"]
    assert systems["enasa"]["pipelined_utilization"] >= systems["enasa"]["utilization"]
    ratio = space["ratios"]["single"]["speed_up"]
    assert ratio == pytest.approx(systems["single"]["time_s"] / systems["enasa"]["time_s"])
    assert {a["system"] for a in space["ablations"]} == {"no-stagewise", "no-dedup", "fcfs"}
    no_dedup = next(a for a in space["ablations"] if a["system"] == "no-dedup")
    assert no_dedup["dedup_ratio"] == 1.0
    assert no_dedup["energy_j"] > systems["enasa"]["energy_j"]
    assert [row["group_size"] for row in results["scaling"]["spos"]["group_size"]] == [1, 2]
    assert all(math.isfinite(row["compile_s"])
               for row in results["scaling"]["spos"]["group_size"])
    report = (out / "results.md").read_text()
    assert "| spos |" in report and "| paper |" in report
    assert "modeled" in report and "measured" in report


@pytest.mark.parametrize(("argv", "message"), [
    (["--generations", "0"], "--generations must be at least 1"),
    (["--input-size", "40"], "--input-size must be a multiple of 32"),
])
def test_bench_refuses_bad_settings_in_one_line(tmp_path, capsys, argv, message):
    code = main(["bench", "--quick", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
