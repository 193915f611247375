"""Outputs never clobber what is not theirs: inputs, devices, FIFOs, read-only files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from enasa_compiler.cli import main


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_compile_refuses_to_write_over_its_input_model(group4_files, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(group4_files[0].read_bytes())
    before = model.read_bytes()
    assert main(["compile", str(model), "-o", str(model)]) == 2
    assert "one of the command's inputs" in _one_line(capsys)
    assert model.read_bytes() == before


def test_report_refuses_to_write_over_its_plan(compiled_plan_path, tmp_path, capsys):
    plan = tmp_path / "p.json"
    plan.write_bytes(compiled_plan_path.read_bytes())
    assert main(["report", str(plan), "-o", str(plan)]) == 2
    assert "one of the command's inputs" in _one_line(capsys)
    assert plan.read_bytes() == compiled_plan_path.read_bytes()


def test_an_output_onto_a_fifo_is_refused_and_the_fifo_kept(group4_files, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["compile", str(group4_files[0]), "-o", str(fifo)]) == 2
    assert "not a regular file" in _one_line(capsys)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_read_only_output_needs_force(compiled_plan_path, tmp_path, capsys):
    page = tmp_path / "report.html"
    page.write_text("keep me")
    page.chmod(0o444)
    assert main(["report", str(compiled_plan_path), "-o", str(page)]) == 2
    assert "read-only" in _one_line(capsys) and page.read_text() == "keep me"
    assert main(["report", str(compiled_plan_path), "-o", str(page), "--force", "-q"]) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_train_supernet_checks_its_output_before_training(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "s.pt").mkdir()  # a folder where the checkpoint file should go
    assert main(["train-supernet", "--epochs", "1", "-o", str(folder / "s.pt")]) == 2
    assert "not a regular file" in _one_line(capsys)


def test_search_out_must_be_a_folder(tmp_path: Path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["search", "--out", str(out), "--generations", "1"]) == 2
    assert "not a folder" in _one_line(capsys)
