"""Plans in users' CI: ``validate --junit``, the pre-commit hook, ``enasa_compiler.testing``.

Every test starts from one small compiled plan (a Conv + Relu model), so the file runs
in seconds; tampered copies are edited as JSON, the way a hand edit or a bad merge
would break a committed plan.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import enasa_compiler
from enasa_compiler import pipeline
from enasa_compiler.cli import _build_parser, main
from enasa_compiler.plan import Plan
from enasa_compiler.testing import assert_plan_valid, compile_and_check
from enasa_compiler.validation.junit import (
    LOAD_CASE,
    SUITE_NAME,
    PlanCheck,
    check_plan,
    junit_report,
)
from enasa_compiler.validation.validator import (
    KINDS,
    MISSING_OP,
    MODELS,
    SCHEMA,
    Violation,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKS = [kind for kind in KINDS if kind != MODELS]  # what runs without --models
# ... and the models case, skipped: it names what is not proven without the models
CASES = [*CHECKS, MODELS]


def _conv_relu(seed: int) -> onnx.ModelProto:
    weight = numpy_helper.from_array(
        np.random.default_rng(seed).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="act")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    """Two Conv + Relu models that differ only in their weights."""
    folder = tmp_path_factory.mktemp("models")
    paths = [folder / f"net{seed}.onnx" for seed in (0, 1)]
    for seed, path in enumerate(paths):
        onnx.save(_conv_relu(seed), path)
    return paths


@pytest.fixture(scope="module")
def plan(models) -> Plan:
    """The plan of the first model alone."""
    return enasa_compiler.compile(models[:1], "neurosim-22nm")


@pytest.fixture
def good_path(plan, tmp_path) -> Path:
    return plan.save(tmp_path / "good.plan.json")


def _drop_relu(data: dict[str, Any]) -> None:
    """Lose the digital operator's compute event: a missing-op, and wrong totals."""
    data["schedule"]["compute"] = [e for e in data["schedule"]["compute"]
                                   if e["op"] != "s0/act"]


def _tampered(plan: Plan, path: Path, edit=_drop_relu) -> Path:
    data = copy.deepcopy(plan.to_dict())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _cases(report: Path) -> list[ET.Element]:
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [SUITE_NAME]
    return suites[0].findall("testcase")


def _outcome(case: ET.Element) -> str:
    children = [child.tag for child in case]
    assert len(children) <= 1
    return children[0] if children else "passed"


# ---- enasa validate --junit ------------------------------------------------------------
def test_junit_has_one_passing_case_per_check_of_a_valid_plan(good_path, tmp_path):
    report = tmp_path / "reports" / "enasa.xml"
    assert main(["validate", str(good_path), "--junit", str(report)]) == 0
    cases = _cases(report)
    assert [c.get("name") for c in cases] == CASES
    assert {c.get("classname") for c in cases} == {str(good_path)}
    assert [_outcome(c) for c in cases] == ["passed"] * len(CHECKS) + ["skipped"]
    assert "not run: no --models; unchecked: " in cases[-1][0].get("message", "")
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        str(len(CASES)), "0", "1")
    assert list(report.parent.iterdir()) == [report]  # written atomically: no leftovers


def test_junit_adds_the_models_check_when_models_are_given(good_path, models, tmp_path):
    report = tmp_path / "enasa.xml"
    assert main(["validate", str(good_path), "--models", str(models[0]),
                 "--junit", str(report)]) == 0
    assert [c.get("name") for c in _cases(report)] == list(KINDS)
    assert main(["validate", str(good_path), "--models", str(models[1]),
                 "--junit", str(report)]) == 1
    failed = {c.get("name"): c[0] for c in _cases(report) if _outcome(c) == "failure"}
    assert list(failed) == [MODELS]
    assert "net1.onnx" in (failed[MODELS].text or "")


def test_junit_fails_exactly_the_checks_a_tampered_plan_breaks(plan, tmp_path, capsys):
    bad = _tampered(plan, tmp_path / "bad.plan.json")
    expected = validate(bad)
    report = tmp_path / "enasa.xml"
    assert main(["validate", str(bad), "--junit", str(report)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(v) for v in expected]  # one plan: lines as before --junit
    cases = _cases(report)
    assert [c.get("name") for c in cases] == CASES
    failures = {c.get("name"): c[0] for c in cases if _outcome(c) == "failure"}
    assert MISSING_OP in failures and len(failures) < len(CHECKS)
    assert set(failures) == {v.kind for v in expected}
    for kind, failure in failures.items():
        lines = [str(v) for v in expected if v.kind == kind]
        assert failure.get("type") == kind
        assert (failure.text or "").splitlines() == lines
        assert failure.get("message", "").startswith(f"{len(lines)} violation")
    assert "operator 's0/act' has no compute event" in (failures[MISSING_OP].text or "")
    passed = [c.get("name") for c in cases if _outcome(c) == "passed"]
    assert passed == [k for k in CHECKS if k not in failures]
    assert _outcome(cases[-1]) == "skipped"


def test_junit_skips_the_other_checks_of_a_plan_that_breaks_the_schema(plan, tmp_path):
    def break_schema(data):
        data["batch"] = "one"

    bad = _tampered(plan, tmp_path / "bad.plan.json", break_schema)
    report = tmp_path / "enasa.xml"
    assert main(["validate", str(bad), "--junit", str(report)]) == 1
    outcomes = {c.get("name"): _outcome(c) for c in _cases(report)}
    assert outcomes == {kind: "failure" if kind == SCHEMA else "skipped" for kind in CASES}


@pytest.mark.parametrize("content", [None, "{not json"], ids=["absent", "not-json"])
def test_junit_is_written_for_a_plan_that_does_not_load(tmp_path, capsys, content):
    plan_path = tmp_path / "broken.plan.json"
    if content is not None:
        plan_path.write_text(content)
    report = tmp_path / "enasa.xml"
    assert main(["validate", str(plan_path), "--junit", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(plan_path) in err
    cases = _cases(report)
    assert [(c.get("name"), _outcome(c)) for c in cases] == [(LOAD_CASE, "failure")]
    failure = cases[0][0]
    assert failure.get("type") == "bad-input"
    assert str(plan_path) in failure.get("message", "")
    assert failure.get("message") in err


def test_junit_reports_every_plan_and_the_worst_exit_code(plan, good_path, tmp_path, capsys):
    bad = _tampered(plan, tmp_path / "bad.plan.json")
    report = tmp_path / "enasa.xml"
    assert main(["validate", str(good_path), str(bad), "--junit", str(report)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good_path}: valid"
    assert out[1].startswith(f"{good_path}: not proven without --models: ")
    assert out[2:] and all(line.startswith(f"{bad}: ") for line in out[2:])
    by_plan: dict[str, list[str]] = {}
    for case in _cases(report):
        by_plan.setdefault(case.get("classname", ""), []).append(_outcome(case))
    assert by_plan[str(good_path)] == ["passed"] * len(CHECKS) + ["skipped"]
    assert "failure" in by_plan[str(bad)]
    absent = tmp_path / "absent.plan.json"
    assert main(["validate", str(good_path), str(absent), "--junit", str(report)]) == 2
    assert [c.get("name") for c in _cases(report)] == [*CASES, LOAD_CASE]


def test_junit_xml_holds_characters_xml_cannot(tmp_path):
    hostile = Violation(MISSING_OP, "operator 'a\x00b\x1b' has no compute event")
    root = ET.fromstring(junit_report([PlanCheck("p\x01.json", (hostile,))]))
    case = next(c for c in root.iter("testcase") if c.get("name") == MISSING_OP)
    assert case.get("classname") == "p\\x01.json"
    assert "a\\x00b\\x1b" in (case[0].text or "")


def test_a_toolchain_bug_is_an_error_case_and_is_raised(monkeypatch, good_path, tmp_path):
    def broken(plan, models=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr("enasa_compiler.validation.junit.validate", broken)
    check = check_plan(good_path)
    assert isinstance(check.error, RuntimeError) and not check.valid
    root = ET.fromstring(junit_report([check]))
    [case] = root.iter("testcase")
    assert (case.get("name"), case[0].tag, case[0].get("type")) == (
        LOAD_CASE, "error", "RuntimeError")
    report = tmp_path / "enasa.xml"
    assert main(["validate", str(good_path), "--junit", str(report)]) == 3
    assert report.exists()


# ---- the pre-commit hook ---------------------------------------------------------------
def _hook() -> dict[str, Any]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = [h for h in hooks if h["id"] == "enasa-validate"]
    return hook


def test_hook_selects_plan_files_by_the_documented_convention():
    hook = _hook()
    assert hook["language"] == "python"
    pattern = re.compile(hook["files"])
    chosen = ["plan.json", "plans/plan.json", "group1.plan.json", "plans/g1.plan.json"]
    others = ["myplan.json", "plan.json.bak", "targets/edge.json", "plans/plan.jsonl",
              "pyproject.toml"]
    # pre-commit matches ``files`` with re.search against paths relative to the repo
    assert [p for p in chosen + others if pattern.search(p)] == chosen
    assert "named `plan.json` or `*.plan.json`" in (ROOT / "docs" / "ci.md").read_text()


def _run_hook(repo: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the hook the way pre-commit does: entry, then args, then the staged files."""
    hook = _hook()
    pattern = re.compile(hook["files"])
    entry = shlex.split(hook["entry"])
    assert entry[0] == "enasa"
    command = [sys.executable, "-m", "enasa_compiler", *entry[1:], *hook.get("args", []),
               *(f for f in files if pattern.search(f))]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)


def test_hook_passes_valid_plans_and_fails_a_tampered_one(plan, tmp_path):
    (tmp_path / "plans").mkdir()
    plan.save(tmp_path / "plans" / "good.plan.json")
    _tampered(plan, tmp_path / "plans" / "bad.plan.json")
    (tmp_path / "README.md").write_text("not a plan\n")
    good = _run_hook(tmp_path, ["README.md", "plans/good.plan.json"])
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[0] == "plans/good.plan.json: valid"
    assert good.stdout.splitlines()[1].startswith(
        "plans/good.plan.json: not proven without --models: ")
    both = _run_hook(tmp_path, ["plans/good.plan.json", "README.md", "plans/bad.plan.json"])
    assert both.returncode == 1, both.stdout + both.stderr
    lines = both.stdout.splitlines()
    assert lines[0] == "plans/good.plan.json: valid"
    assert any(line.startswith("plans/bad.plan.json: missing-op: ") for line in lines)


# ---- docs/ci.md ------------------------------------------------------------------------
def _doc_blocks(language: str) -> list[str]:
    text = (ROOT / "docs" / "ci.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_ci_doc_yaml_parses_and_its_commands_are_accepted():
    blocks = [yaml.safe_load(block) for block in _doc_blocks("yaml")]
    workflow = next(b for b in blocks if isinstance(b, dict) and "jobs" in b)
    configs = [b for b in blocks if isinstance(b, dict) and "repos" in b]
    hook = _hook()
    used = [h for config in configs for repo in config["repos"] for h in repo["hooks"]]
    assert len(used) == 2 and {h["id"] for h in used} == {hook["id"]}
    for local in (h for h in used if "entry" in h):  # the local variant: same command
        assert (local["entry"], local["files"]) == (hook["entry"], hook["files"])
    commands = [line.strip().removeprefix("run: ")
                for job in workflow["jobs"].values() for step in job["steps"]
                for line in str(step.get("run", "")).splitlines()
                if line.strip().startswith("enasa ")]
    validate_lines = [c for c in commands if c.startswith("enasa validate")]
    assert validate_lines and all("--junit" in c for c in validate_lines)
    for command in commands:
        _build_parser().parse_args(shlex.split(command)[1:])  # exits 2 on a bad option


def test_ci_doc_python_example_is_valid_python():
    [example] = _doc_blocks("python")
    compile(example, "docs/ci.md", "exec")
    assert "enasa_compiler.testing" in example


# ---- enasa_compiler.testing ------------------------------------------------------------
def test_assert_plan_valid_passes_a_good_plan_as_object_or_file(plan, good_path, models):
    assert_plan_valid(plan)
    assert_plan_valid(good_path, models=models[:1])
    assert_plan_valid(str(good_path))


def test_assert_plan_valid_lists_every_violation_one_per_line(plan, tmp_path):
    bad = _tampered(plan, tmp_path / "bad.plan.json")
    expected = validate(bad)
    assert len(expected) > 1
    with pytest.raises(AssertionError) as info:
        assert_plan_valid(bad)
    message = str(info.value)
    first, *lines = message.splitlines()
    assert str(bad) in first and f"{len(expected)} violations" in first
    assert [line.strip() for line in lines] == [str(v) for v in expected]


def test_assert_plan_valid_checks_the_models_when_given(plan, models):
    with pytest.raises(AssertionError, match=r"against its models: 1 violation\n  models: "
                                             r"model 0 \(.*net1\.onnx\)"):
        assert_plan_valid(plan, models=models[1:])


def test_compile_and_check_returns_the_plan_compiled_with_the_options(models, plan):
    checked = compile_and_check(models[:1])
    assert checked.to_json() == plan.to_json()
    batched = compile_and_check(models[0], batch=2)
    assert batched.batch == 2 and batched.input_shape[0] == 2


def test_compile_and_check_fails_when_the_plan_is_not_the_models(models, monkeypatch):
    real = pipeline.compile

    def compiles_the_wrong_model(sources, target, **options):
        return real(models[1:], target, **options)

    monkeypatch.setattr(pipeline, "compile", compiles_the_wrong_model)
    with pytest.raises(AssertionError, match="against its models: .*\n  models: "):
        compile_and_check(models[:1])


def test_testing_helpers_do_not_import_pytest():
    code = "import sys, enasa_compiler.testing; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
