"""Conventions a CI job relies on: --version, a closed stdout, JSON errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from enasa_compiler import __version__
from enasa_compiler.cli import main


def _command(*args: str) -> list[str]:
    exe = shutil.which("enasa")
    return [exe, *args] if exe else [sys.executable, "-m", "enasa_compiler", *args]


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"enasa {__version__}"


@pytest.mark.parametrize("args", [("targets", "--json"), ("targets",)])
def test_a_reader_that_closes_stdout_ends_the_command_quietly(args):
    process = subprocess.Popen(_command(*args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the command writes anything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, stderr
    assert stderr == ""


def test_a_closed_pipe_keeps_the_commands_own_exit_code(compiled_plan_path, tmp_path):
    data = json.loads(compiled_plan_path.read_text())
    data["operators"] = data["operators"][1:]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    process = subprocess.Popen(_command("validate", str(broken), "--json"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1, stderr
    assert "internal error" not in stderr


def test_simulate_json_through_head_exits_zero(compiled_plan_path):
    shell = f"{' '.join(_command('simulate', str(compiled_plan_path), '--json'))} | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{\n"
    assert result.stderr == ""


@pytest.mark.parametrize(("argv", "kind", "code"), [
    (["compile", "missing.onnx", "-o", "plan.json", "--json"], "bad-input", 2),
    (["compile", "--json"], "usage", 2),
    (["validate", "missing.json", "--json"], "bad-input", 2),
    (["compile", "x.onnx", "-o", "p.json", "--solver", "nope", "--json"], "usage", 2),
])
def test_json_errors_are_one_json_object_on_stdout(argv, kind, code, capsys, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        exit_code = main(argv)
    except SystemExit as exc:  # argparse's usage errors leave through exit()
        exit_code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert exit_code == code
    error = json.loads(captured.out)["error"]
    assert error["kind"] == kind
    assert error["exit_code"] == code
    assert error["message"]
    assert len(captured.err.strip().splitlines()) == 1


def test_json_error_for_an_invalid_plan_in_simulate(compiled_plan_path, tmp_path, capsys):
    data = json.loads(compiled_plan_path.read_text())
    data["operators"] = data["operators"][1:]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    assert main(["simulate", str(broken), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error == {"kind": "check-failed", "exit_code": 1, "message": error["message"]}
    assert "not a valid plan" in error["message"]


def test_help_imports_no_compiler_library():
    # `enasa --help` must answer at once: the compiler's libraries (numpy, onnx, onnx_ir
    # with sympy, ortools, torch) load only for the command that uses them.
    code = ("import sys\n"
            "from enasa_compiler.cli import main\n"
            "try:\n"
            "    main(['--help'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "heavy = ['numpy', 'onnx', 'onnx_ir', 'ortools', 'torch', 'sympy']\n"
            "print('loaded:', [m for m in heavy if m in sys.modules])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "loaded: []"
