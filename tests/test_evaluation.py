"""The evaluation: each row's definition re-derived from its pipelined plans, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from enasa_compiler.cli import main
from enasa_compiler.evaluation.host import measure_cpu
from enasa_compiler.evaluation.nasa import distinct_weight_bytes, model_nasa, nasa_figures
from enasa_compiler.evaluation.ranking import compare_ranking
from enasa_compiler.evaluation.systems import pipeline_cell_writes, run_flow, run_single
from enasa_compiler.evaluation.workload import (
    WorkloadSpec,
    build_workload_supernet,
    distinct_generations,
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
IMAGES = 50


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    supernet = build_workload_supernet(SPEC)
    groups = distinct_generations(generation_archs(supernet, SPEC))
    files = export_generations(supernet, groups, tmp_path_factory.mktemp("workload"))
    return supernet, groups, files


@pytest.fixture(scope="module")
def target():
    return load_target("neurosim-22nm")


@pytest.fixture(scope="module")
def enasa(workload, target):
    plans = []
    run = run_flow(workload[2], target, IMAGES, on_plan=lambda _, plan: plans.append(plan))
    return run, plans


def test_stagewise_generations_keep_the_best_half(workload):
    supernet, groups, _ = workload
    assert len(groups) == 2 and all(len(g) == 3 for g in groups)
    # Generation 1 children keep the fixed half of one parent of generation 0.
    fixed = list(fixed_half(supernet.num_layers, 1))
    kept = {tuple(child[i] for i in fixed) for child in groups[1]}
    assert len(kept) == 1
    assert kept.pop() in {tuple(parent[i] for i in fixed) for parent in groups[0]}


def test_workload_counts_each_architecture_once(workload):
    _, groups, _ = workload
    archs = [tuple(a) for g in groups for a in g]
    assert len(archs) == len(set(archs))


def test_distinct_generations_drops_repeats_within_and_across_generations():
    a, b, c = [0, 1], [1, 1], [2, 0]
    assert distinct_generations([[a, b, a], [b, c], [a]]) == [[a, b], [c]]


def test_uniform_workload_differs_and_is_seeded():
    supernet = build_workload_supernet(SPEC)
    spec = WorkloadSpec("spos", 2, 3, 32, 10, seed=1, stagewise=False)
    assert generation_archs(supernet, spec) == generation_archs(supernet, spec)
    assert generation_archs(supernet, spec) != generation_archs(supernet, SPEC)


def test_enasa_totals_are_the_sum_of_its_validated_pipelined_plans(workload, target, enasa):
    run, plans = enasa
    assert len(plans) == run.plans == 2
    assert all(validate(plan) == [] for plan in plans)
    pipes = [p.pipeline.totals for p in plans]
    assert all(t.images == IMAGES for t in pipes)
    assert run.time_s == pytest.approx(sum(t.makespan_ns for t in pipes) / 1e9)
    static_mw = static_power_mw(target)
    assert static_mw > 0
    assert run.energy_j == pytest.approx(
        sum(t.energy_pj + static_mw * t.makespan_ns for t in pipes) / 1e12)
    assert run.busy_crossbar_ns == sum(t.busy_crossbar_ns_per_image * IMAGES for t in pipes)
    assert run.allocated_steady_utilization == pytest.approx(
        run.busy_crossbar_ns / sum(t.crossbars_used * t.ii_ns * IMAGES for t in pipes))
    # Online mapping: generation 1 starts from generation 0's crossbars and writes less.
    assert plans[1].initial
    fresh = compile_detailed(workload[2][1], target, images=IMAGES).plan
    assert pipeline_cell_writes(plans[1]) < pipeline_cell_writes(fresh)
    assert run.cell_writes == sum(pipeline_cell_writes(p) for p in plans)
    assert run.dedup_ratio is not None and run.dedup_ratio > 1.0
    assert run.subnets == 6 and run.time_per_subnet_s == pytest.approx(run.time_s / 6)


def test_single_is_the_sum_of_per_subnet_pipelines_with_their_writes(workload, target):
    _, _, files = workload
    single = run_single(files, target, IMAGES)
    plans = [compile_detailed([f], target, images=IMAGES).plan for g in files for f in g]
    assert single.subnets == len(plans) == 6
    # Each subnet starts from an empty chip: its makespan begins with writing all its
    # tiles (pipeline.start_ns), then N images stream through.
    for plan in plans:
        assert plan.mode == "resident" and not plan.initial
        assert plan.pipeline.start_ns >= max(e.end_ns for e in plan.program) > 0
    assert single.time_s == pytest.approx(
        sum(p.pipeline.totals.makespan_ns for p in plans) / 1e9)
    assert single.cell_writes == sum(p.totals.cell_writes for p in plans)
    assert single.extra["write_j"] == pytest.approx(
        sum(p.pipeline.totals.write_energy_pj for p in plans) / 1e12)
    assert single.dedup_ratio == 1.0


def test_resident_without_sharing_computes_every_subnet(workload, target, enasa):
    run, _ = enasa
    resident = run_flow(workload[2], target, IMAGES, system="resident", label="(c)",
                        dedup_operators=False)
    assert resident.dedup_ratio == 1.0
    assert resident.macs_after == run.macs_before
    assert resident.energy_j is not None and run.energy_j is not None
    assert resident.energy_j > run.energy_j


def test_nasa_is_compute_or_dram_bound_per_generation(enasa):
    run, plans = enasa
    figures = nasa_figures()
    nasa = model_nasa(plans, run.subnets, IMAGES, figures)
    rate = figures["macs_per_cycle"] * figures["clock_ghz"] * 1e9 * figures["utilization"]
    batches = math.ceil(IMAGES / figures["batch_images"])
    expected = sum(
        max(p.dedup["macs_after"] * IMAGES / rate,
            distinct_weight_bytes(p, 8) * batches / (figures["dram_gb_per_s"] * 1e9))
        for p in plans)
    assert nasa.time_s == pytest.approx(expected)
    assert nasa.kind == "modeled" and "assumed" in nasa.label
    # Distinct weights count a duplicated matrix once.
    assert distinct_weight_bytes(plans[0], 8) <= sum(w.rows * w.cols for w in plans[0].weights)


def test_ranking_compares_ops_and_fcfs_on_a_segmented_chip(workload):
    files = workload[2][0]
    rows = compare_ranking(files, load_target("edge"), (2,), IMAGES)
    assert [row["group_size"] for row in rows] == [2]
    row = rows[0]
    assert row["ops"]["mode"] == row["fcfs"]["mode"] == "dynamic"
    assert row["fcfs_over_ops"]["makespan_ns"] == pytest.approx(
        row["fcfs"]["makespan_ns"] / row["ops"]["makespan_ns"])


def test_cpu_row_is_extrapolated_and_labelled_with_its_energy_source(workload):
    files = [workload[2][0][:2]]
    images = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    cpu = measure_cpu(files, images, 1000, batches=(1, 2), repeats=3, threads=1)
    low, mid, high = cpu.spread["time_s"]
    assert low <= mid <= high and cpu.time_s == mid
    assert cpu.kind == "estimated" and "extrapolated to 1,000" in cpu.label
    assert ("RAPL" in cpu.label) and cpu.extra["load_average_before"]
    assert cpu.subnets == 2


@pytest.mark.slow
def test_bench_cli_writes_table_json_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "-q", "--quick", "--out", str(out), "--spaces", "spos",
                 "--generations", "2", "--group-size", "2", "--images", "20",
                 "--input-size", "32", "--cpu-images", "2", "--cpu-batches", "1",
                 "--ranking-groups", "2"])
    assert code == 0
    assert capsys.readouterr().err == ""
    names = {p.name for p in out.iterdir()}
    assert {"results.json", "results.md", "speedup.png", "utilization.png"} <= names
    results = json.loads((out / "results.json").read_text())
    space = results["spaces"]["spos"]
    systems = {run["system"]: run for run in space["systems"]}
    assert {"enasa", "single", "resident", "cpu", "nasa", "gpu"} <= set(systems)
    assert systems["enasa"]["kind"] == "modeled" and systems["cpu"]["kind"] == "estimated"
    assert systems["gpu"]["kind"] == "not measured"
    assert systems["enasa"]["subnets"] == space["distinct_subnets"]
    ratio = space["ratios"]["single"]["speed_up"]
    assert ratio == pytest.approx(systems["single"]["time_s"] / systems["enasa"]["time_s"])
    assert len(space["ratios"]["cpu"]["speed_up_spread"]) == 3
    ablations = {a["system"]: a for a in space["ablations"]}
    assert list(ablations) == ["packed", "fcfs"]
    # Packing keeps the II and shares crossbars: never less busy than (a) unpacked.
    assert (ablations["packed"]["allocated_steady_utilization"]
            >= systems["enasa"]["allocated_steady_utilization"] - 1e-9)
    assert results["ranking"]["spos"]["rows"][0]["group_size"] == 2
    report = (out / "results.md").read_text()
    assert "| spos |" in report and "| paper |" in report
    assert "counted once" in report and "not measured on this machine" in report
    assert "reproduced" in report


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
