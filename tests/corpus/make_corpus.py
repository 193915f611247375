"""Generate a corpus of broken or hostile inputs for the ``enasa`` command line.

Run it as a script (``python tests/corpus/make_corpus.py OUTDIR``) or import it and
call :func:`generate`. Every case gets its own folder ``OUTDIR/<case>/`` holding the
files it needs (a few KB each), and ``OUTDIR/manifest.json`` lists, for each case, the
command line to run, the exit code it must give and a regex its one-line message must
match. In a command line ``{case}`` stands for the case's folder and ``{out}`` for an
empty folder the command must leave empty: no plan, report or temporary file.

Models are built with ``onnx.helper`` (no torch); target files are built from the
``neurosim-22nm`` preset by finding the field to break *by key name*, wherever the
target format nests it; plans are compiled from a two-operator model by the
compiler's own Python API, then broken; checkpoints are written with ``torch.save``.

Exit codes follow ``enasa``: 2 for bad input, 1 for a plan that fails its checks.
Messages go to stderr as one line, except ``validate``'s violations, which it prints
to stdout (one line each, stderr empty): those cases say ``"stream": "stdout"``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MANIFEST", "MARKER", "PRESET", "Case", "cases", "find_parent", "generate",
           "load_manifest", "main", "tiny_model", "zip_bomb"]

MANIFEST = "manifest.json"
PRESET = "neurosim-22nm"
MARKER = "UNPICKLED"
"""The file the hostile pickles create in their case folder if anything unpickles them."""
_OPSET = 17
_INPUT_SHAPE: list[int | str] = [1, 3, 8, 8]
_DEEP = 50_000  # nesting depth of the deeply nested JSON cases (past any recursion limit)
_HUGE_INT = "9" * 5000  # more digits than Python converts by default (4300)


class Shared:
    """What several cases reuse, built once per corpus: the base model and its plan."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._plan: dict[str, Any] | None = None

    @property
    def model_bytes(self) -> bytes:
        """:func:`tiny_model`, serialized."""
        return tiny_model().SerializeToString()

    def plan(self) -> dict[str, Any]:
        """A valid plan of :func:`tiny_model` on the preset, as JSON data (a copy)."""
        if self._plan is None:
            from enasa_compiler.pipeline import compile as compile_group

            folder = self.root / "_base"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "a.onnx").write_bytes(self.model_bytes)
            self._plan = compile_group([folder / "a.onnx"], PRESET).to_dict()
        return copy.deepcopy(self._plan)


Builder = Callable[[Path, Shared], None]


@dataclass(frozen=True)
class Case:
    """One broken input and what ``enasa`` must answer.

    Attributes:
        name: the case's folder name, also its test id.
        argv: the command line after ``enasa``; ``{case}`` is the case's folder and
            ``{out}`` an empty folder the command must not write into.
        exit_code: 2 (bad input) or 1 (a plan that fails its checks).
        message: a regex the message must match (``re.search``), naming the problem.
        about: what the case breaks, in a few words.
        stream: where the message goes: ``stderr`` (one line) or ``stdout`` (the
            violations ``validate`` lists, one a line, with nothing on stderr).
        build: writes the case's files into its folder (not in the manifest).

    """

    name: str
    argv: tuple[str, ...]
    exit_code: int
    message: str
    about: str
    stream: str = "stderr"
    build: Builder | None = field(default=None, compare=False, repr=False)

    def command(self, case_dir: Path | str, out_dir: Path | str) -> list[str]:
        """The command line with ``{case}`` and ``{out}`` filled in."""
        return [a.format(case=os.fspath(case_dir), out=os.fspath(out_dir)) for a in self.argv]

    def to_json(self) -> dict[str, Any]:
        """The manifest entry (everything but the builder)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "build"}


# ---- models ------------------------------------------------------------------------
def _weight(name: str, shape: tuple[int, ...], seed: int = 0) -> TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def tiny_model(
    op_type: str = "Relu",
    *,
    opset: int = _OPSET,
    input_shape: list[int | str] | None = None,
    channels: int = 4,
) -> onnx.ModelProto:
    """A two-operator model, ``Conv(3 -> channels, 3x3)`` then ``op_type`` (~1 KB)."""
    shape = list(input_shape or _INPUT_SHAPE)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node(op_type, ["c"], ["y"], name="act")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])],
        [_weight("w", (channels, 3, 3, 3))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _two_conv_model() -> onnx.ModelProto:
    """Two convs with different weights: two weight tiles, so two crossbars resident."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "two_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, _INPUT_SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [_weight("w1", (4, 3, 3, 3), 1), _weight("w2", (4, 4, 3, 3), 2)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])


def _custom_domain_model() -> onnx.ModelProto:
    model = tiny_model()
    node = model.graph.node[1]
    node.op_type, node.domain = "Frobnicate", "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return model


def _nms_model() -> onnx.ModelProto:
    """Conv, then NonMaxSuppression on boxes and scores made from its output."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c"], ["s"], name="mean", axes=[2, 3],
                              keepdims=0),
             helper.make_node("Reshape", ["s", "sshape"], ["scores"], name="scores"),
             helper.make_node("Reshape", ["s", "bshape"], ["boxes"], name="boxes"),
             helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["y"], name="nms")]
    graph = helper.make_graph(
        nodes, "nms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, _INPUT_SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["n", 3])],
        [_weight("w", (16, 3, 3, 3)),
         numpy_helper.from_array(np.array([1, 1, 16], np.int64), "sshape"),
         numpy_helper.from_array(np.array([1, 4, 4], np.int64), "bshape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])


def _huge_initializer() -> onnx.ModelProto:
    """The conv weight declares 2**40 x 27 elements but holds 108."""
    model = tiny_model()
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([1 << 40, 3, 3, 3])
    return model


def _two_input_model() -> onnx.ModelProto:
    model = tiny_model()
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4]))
    return model


def _no_graph() -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.ir_version = 8
    return model


def _empty_graph() -> onnx.ModelProto:
    model = tiny_model()
    del model.graph.node[:]
    return model


def _external(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """Point the first initializer at external data ``location`` (its bytes dropped)."""
    tensor = model.graph.initializer[0]
    size = len(tensor.raw_data)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def _duplicate_node_names() -> onnx.ModelProto:
    model = tiny_model()
    model.graph.node[1].name = "conv"
    return model


def _no_outputs() -> onnx.ModelProto:
    model = tiny_model()
    del model.graph.output[:]
    return model


def _nan_weight() -> onnx.ModelProto:
    model = tiny_model()
    values = numpy_helper.to_array(model.graph.initializer[0]).copy()
    values[0, 0, 0, 0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(values, "w"))
    return model


def _raw_data_too_long() -> onnx.ModelProto:
    """The conv weight holds 4 bytes more than its 108 floats need."""
    model = tiny_model()
    model.graph.initializer[0].raw_data += b"\0" * 4
    return model


def _fold_bomb() -> onnx.ModelProto:
    """~800 bytes: ConstantOfShape of Abs([-1, -4, -8, -10**8]), 3.2e9 floats if folded.

    Shape inference cannot see through the Abs, so the size is only known once Abs is
    folded; the canonicalizer must refuse the ConstantOfShape before evaluating it.
    """
    model = tiny_model()
    graph = model.graph
    graph.node[1].output[0] = "r"
    graph.initializer.append(numpy_helper.from_array(
        np.array([-1, -4, -8, -10**8], np.int64), "shape"))
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    graph.node.extend([
        helper.make_node("Abs", ["shape"], ["size"], name="abs"),
        helper.make_node("ConstantOfShape", ["size"], ["big"], name="fill", value=zero),
        helper.make_node("ReduceMax", ["big"], ["small"], name="reduce", axes=[3]),
        helper.make_node("Add", ["r", "small"], ["y"], name="add")])
    return model


def _tile_bomb() -> onnx.ModelProto:
    """A Tile whose (statically known) output is 2 GiB: compiling prices it, running
    it would allocate it."""
    model = tiny_model()
    graph = model.graph
    graph.node[1].output[0] = "r"
    graph.initializer.append(numpy_helper.from_array(
        np.array([1, 1, 1, 1 << 21], np.int64), "repeats"))
    graph.node.extend([
        helper.make_node("Tile", ["r", "repeats"], ["tiled"], name="tile"),
        helper.make_node("ReduceMax", ["tiled"], ["y"], name="reduce", axes=[3])])
    return model


def _external_entries(location: str, offset: str, length: str) -> onnx.ModelProto:
    """The conv weight as external data with these raw entries (432 bytes in w.bin)."""
    model = tiny_model()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def _write(folder: Path, rel: str, content: onnx.ModelProto | bytes | str) -> Path:
    """Write one file of a case; a model's bytes as they are (no external-data handling)."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, onnx.ModelProto):
        path.write_bytes(content.SerializeToString())
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _files(files: dict[str, Callable[[], onnx.ModelProto | bytes | str]]) -> Builder:
    """A builder writing each ``relative path: factory`` of ``files``."""
    def build(folder: Path, shared: Shared) -> None:
        for rel, make in files.items():
            _write(folder, rel, make())
    return build


def _external_absolute(folder: Path, shared: Shared) -> None:
    secret = _write(folder, "secret.bin", b"\0" * 432)
    _write(folder, "model/a.onnx", _external(tiny_model(), os.fspath(secret.resolve())))


def _external_symlink(folder: Path, shared: Shared) -> None:
    _write(folder, "secret.bin", b"\0" * 432)
    _write(folder, "model/a.onnx", _external(tiny_model(), "w.bin"))
    (folder / "model" / "w.bin").symlink_to(Path("..") / "secret.bin")


def _compile(*models: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("compile", *models, "-o", "{out}/plan.json", *extra)


_ONE = _compile("{case}/a.onnx")
_OUTSIDE = r"points to external data outside the model's folder"


def _model_cases() -> list[Case]:
    def model(make: Callable[[], onnx.ModelProto | bytes | str]) -> Builder:
        return _files({"a.onnx": make})

    return [
        Case("model-text-file", _ONE, 2, r"a\.onnx: not an ONNX model",
             "a text file named .onnx",
             build=model(lambda: "ir_version: 8\nthis is a note, not a model\n")),
        Case("model-empty-file", _ONE, 2, r"a\.onnx: empty file", "a zero-byte .onnx",
             build=model(lambda: b"")),
        Case("model-truncated", _ONE, 2,
             r"a\.onnx: not an ONNX model \(protobuf does not parse\)",
             "the first 60 bytes of a model",
             build=model(lambda: tiny_model().SerializeToString()[:60])),
        Case("model-no-graph", _ONE, 2, r"not an ONNX model \(no graph\)",
             "a valid ModelProto with no graph", build=model(_no_graph)),
        Case("model-empty-graph", _ONE, 2, r"the graph has no nodes",
             "a graph without nodes", build=model(_empty_graph)),
        Case("model-custom-domain-op", _ONE, 2,
             r"unsupported operator com\.example::Frobnicate", "an op of a custom domain",
             build=model(_custom_domain_model)),
        Case("model-nonmaxsuppression", _ONE, 2, r"unsupported operator NonMaxSuppression",
             "a standard operator the compiler cannot map", build=model(_nms_model)),
        Case("model-dynamic-dim", _ONE, 2, r"dynamic dimension 3 \('width'\)",
             "a symbolic input dimension other than batch",
             build=model(lambda: tiny_model(input_shape=[1, 3, 8, "width"]))),
        Case("model-zero-size-input", _ONE, 2, r"dimension 1 is 0, outside 1\.\.",
             "an input with a zero-size dimension",
             build=model(lambda: tiny_model(input_shape=[1, 0, 8, 8]))),
        Case("model-zero-size-weight", _ONE, 2,
             r"Conv node 'conv' has zero-size tensor 'w' \(shape \[0, 3, 3, 3\]\)",
             "a conv weight with zero output channels",
             build=model(lambda: tiny_model(channels=0))),
        Case("model-huge-dim", _ONE, 2, r"dimension 2 is 1099511627776, outside 1\.\.",
             "an input dimension of 2**40",
             build=model(lambda: tiny_model(input_shape=[1, 3, 1 << 40, 8]))),
        Case("model-huge-initializer-dims", _ONE, 2,
             r"tensor 'w' declares 110592\.0 GiB, over the 1\.0 GiB budget; refused before "
             r"allocating it",
             "a weight declaring 2**40 x 27 elements, holding 108",
             build=model(_huge_initializer)),
        Case("model-two-inputs", _ONE, 2, r"takes exactly one input, this one takes 2",
             "a graph with two inputs", build=model(_two_input_model)),
        Case("model-opset-too-old", _ONE, 2, r"opset 9 is older than 13", "opset 9",
             build=model(lambda: tiny_model(opset=9))),
        Case("group-mismatched-inputs", _compile("{case}/a.onnx", "{case}/b.onnx"), 2,
             r"subnets take different inputs: a takes float\[1x3x8x8\] but b takes "
             r"float\[1x3x16x16\]", "a group whose subnets take different inputs",
             build=_files({"a.onnx": tiny_model,
                          "b.onnx": lambda: tiny_model(input_shape=[1, 3, 16, 16])})),
        # External data: every location that leaves the model's folder is refused,
        # even where the file it names exists.
        Case("external-dotdot", _compile("{case}/model/a.onnx"), 2,
             _OUTSIDE + r" \(\.\./secret\.bin\); refused", "external data at ../secret.bin",
             build=_files({"model/a.onnx": lambda: _external(tiny_model(), "../secret.bin"),
                          "secret.bin": lambda: b"\0" * 432})),
        Case("external-absolute", _compile("{case}/model/a.onnx"), 2,
             _OUTSIDE + r" \(/.*secret\.bin\); refused", "external data at an absolute path",
             build=_external_absolute),
        Case("external-symlink", _compile("{case}/model/a.onnx"), 2,
             _OUTSIDE + r" \(w\.bin\); refused",
             "external data through a symlink to a file outside the folder",
             build=_external_symlink),
        Case("external-missing", _ONE, 2, r"external data file w\.bin is missing",
             "external data whose file does not exist",
             build=model(lambda: _external(tiny_model(), "w.bin"))),
        # Issue #16: inputs that crashed (exit 3) or exhausted the machine.
        Case("model-duplicate-node-names", _ONE, 2,
             r"two nodes are named 'conv'; node names must be unique",
             "two nodes named conv", build=model(_duplicate_node_names)),
        Case("model-no-outputs", _ONE, 2, r"the graph has no outputs",
             "a graph without outputs", build=model(_no_outputs)),
        Case("model-nan-weight", _ONE, 2, r"weight 'w' holds NaN or infinite values",
             "a NaN in the conv weight", build=model(_nan_weight)),
        Case("model-opset-too-new", _ONE, 2, r"opset 99 is newer than \d+",
             "opset 99", build=model(lambda: tiny_model(opset=99))),
        Case("model-raw-data-too-long", _ONE, 2,
             r"weight 'w' holds 436 bytes of raw data but its shape \[4, 3, 3, 3\] "
             r"needs 432",
             "raw data 4 bytes longer than the weight's dims",
             build=model(_raw_data_too_long)),
        Case("model-fold-bomb", _ONE, 2,
             r"node 'fill' \(ConstantOfShape\) would produce 3\.2e\+09 elements when folded",
             "a ConstantOfShape of 3.2e9 floats hidden behind Abs (800 bytes)",
             build=model(_fold_bomb)),
        Case("model-tile-bomb", _ONE, 2,
             r"value 'tiled' \(shape \[1, 4, 8, 16777216\]\) declares 2\.0 GiB, over the "
             r"1\.0 GiB budget", "a Tile whose output is 2 GiB", build=model(_tile_bomb)),
        Case("model-batch-huge", (*_ONE, "--batch", "100000000000000000000"), 2,
             r"batch size must be between 1 and \d+, got 100000000000000000000",
             "--batch 10**20", build=model(tiny_model)),
        Case("external-negative-offset", _ONE, 2,
             r"tensor 'w': external data offset must be a non-negative integer, got '-5'",
             "external data at offset -5", build=_files({
                 "a.onnx": lambda: _external_entries("w.bin", "-5", "432"),
                 "w.bin": lambda: b"\0" * 432})),
        Case("external-text-offset", _ONE, 2,
             r"tensor 'w': external data offset must be a non-negative integer, got 'abc'",
             "external data at offset 'abc'", build=_files({
                 "a.onnx": lambda: _external_entries("w.bin", "abc", "432"),
                 "w.bin": lambda: b"\0" * 432})),
        Case("external-nul-location", _ONE, 2,
             r"tensor 'w' has an empty or malformed external data location",
             "a NUL byte in the external data location", build=_files({
                 "a.onnx": lambda: _external_entries("w\0.bin", "0", "432"),
                 "w.bin": lambda: b"\0" * 432})),
        Case("external-length-too-long", _ONE, 2,
             r"tensor 'w' declares 4294967296 bytes of external data but its shape "
             r"\[4, 3, 3, 3\] needs 432", "a 108-float tensor declaring 4 GiB of data",
             build=_files({"a.onnx": lambda: _external_entries("w.bin", "0", str(1 << 32)),
                           "w.bin": lambda: b"\0" * 432})),
        Case("external-past-end-of-file", _ONE, 2,
             r"tensor 'w' needs bytes 100\.\.532 of w\.bin, which holds 432",
             "an offset that runs the tensor past the end of its file", build=_files({
                 "a.onnx": lambda: _external_entries("w.bin", "100", "432"),
                 "w.bin": lambda: b"\0" * 432})),
    ]


# ---- targets -----------------------------------------------------------------------
def preset_target() -> dict[str, Any]:
    """The ``neurosim-22nm`` preset as parsed JSON, as shipped in the package."""
    folder = resources.files("enasa_compiler.targets").joinpath("presets")
    data: dict[str, Any] = json.loads(folder.joinpath(f"{PRESET}.json").read_text())
    return data


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dicts(value)


def find_parent(data: Any, key: str) -> dict[str, Any]:
    """The (first, depth-first) dict in ``data`` holding ``key``, however deep.

    Target cases find the field they break by name, so they keep working when the
    target format nests its fields differently.

    Raises:
        KeyError: no dict in ``data`` has the key (the format dropped the field).

    """
    for node in _dicts(data):
        if key in node:
            return node
    raise KeyError(f"no field '{key}' anywhere in the {PRESET} preset")


def _target(edit: Callable[[dict[str, Any]], None]) -> Callable[[], str]:
    """A target file's text: the preset with ``edit`` applied."""
    def make() -> str:
        data = preset_target()
        edit(data)
        return json.dumps(data, indent=1)
    return make


def _target_text(key: str, literal: str) -> Callable[[], str]:
    """A target file's text with ``key``'s value replaced by ``literal`` (NaN, Infinity),
    which ``json.dumps`` would not write for us."""
    def make() -> str:
        data = preset_target()
        find_parent(data, key)[key] = "@@"
        return json.dumps(data, indent=1).replace('"@@"', literal, 1)
    return make


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        find_parent(data, key)[key] = value
    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        del find_parent(data, key)[key]
    return edit


def _add_next_to(key: str, new_key: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        find_parent(data, key)[new_key] = 1
    return edit


def _target_cases() -> list[Case]:
    def with_target(text: Callable[[], str], model: Callable[[], onnx.ModelProto] = tiny_model
                    ) -> Builder:
        return _files({"a.onnx": model, "target.json": text})

    argv = _compile("{case}/a.onnx", extra=("-t", "{case}/target.json"))
    return [
        Case("target-not-json", argv, 2, r"target\.json is not valid JSON",
             "a YAML target file",
             build=_files({"a.onnx": tiny_model, "target.json": lambda: "rows: 1\n"})),
        Case("target-negative-rows", argv, 2, r"\brows\b.*-128",
             "crossbar rows -128", build=with_target(_target(_set("rows", -128)))),
        Case("target-missing-field", argv, 2, r"'cell_bits'.*required",
             "the cell_bits field deleted", build=with_target(_target(_drop("cell_bits")))),
        Case("target-unknown-key", argv, 2, r"'rowz'",
             "a misspelt key (rowz) next to rows",
             build=with_target(_target(_add_next_to("rows", "rowz")))),
        Case("target-string-unit", argv, 2,
             r"read_pulse_ns\b.*'10 ns'", "a number given as '10 ns'",
             build=with_target(_target(_set("read_pulse_ns", "10 ns")))),
        Case("target-unknown-preset", ("compile", "{case}/a.onnx", "-t", "neurosim-7nm",
                                       "-o", "{out}/plan.json"), 2,
             r"unknown target 'neurosim-7nm': not a preset", "a preset that does not exist",
             build=_files({"a.onnx": tiny_model})),
        Case("target-too-small-resident", (*argv, "--mode", "resident"), 2,
             r"weights need 2 crossbars but target '[^']+' has 1; use dynamic mapping",
             "two weight tiles, a one-crossbar chip, --mode resident",
             build=with_target(_target(_set("crossbars", 1)), _two_conv_model)),
        Case("target-deeply-nested", argv, 2, r"target\.json is not valid JSON",
             f"a target file of {_DEEP} nested arrays",
             build=with_target(lambda: "[" * _DEEP + "]" * _DEEP)),
        Case("target-huge-integer", argv, 2, r"target\.json is not valid JSON",
             "a 5000-digit integer in a target file",
             build=with_target(lambda: '{"version": ' + _HUGE_INT + "}")),
        # Python's JSON reader takes NaN and Infinity; JSON Schema's bounds pass NaN.
        Case("target-nan-resistance", argv, 2, r"field crossbar\.r_on_ohm: nan is not a "
             "finite number", "NaN in r_on_ohm",
             build=with_target(_target_text("r_on_ohm", "NaN"))),
        Case("target-nan-clock", argv, 2, r"field clock_ghz: nan is not a finite number",
             "NaN in clock_ghz", build=with_target(_target_text("clock_ghz", "NaN"))),
        Case("target-nan-area", argv, 2, r"field crossbar\.area_mm2: nan is not a finite",
             "NaN in the crossbar's area",
             build=with_target(_target_text("area_mm2", "NaN"))),
        Case("target-infinite-adc-energy", argv, 2,
             r"field pe\.adc\.pj_per_conversion: inf is not a finite number",
             "Infinity in the ADC energy",
             build=with_target(_target_text("pj_per_conversion", "Infinity"))),
        Case("target-float-count", argv, 2,
             r"field chip\.crossbars: 4096\.0 is not an integer \(a count: write 4096\)",
             "crossbars: 4096.0", build=with_target(_target(_set("crossbars", 4096.0)))),
        Case("target-tiny-clock", argv, 2,
             r"field clock_ghz: 1e-300 is less than the minimum of 0\.001",
             "a clock of 1e-300 GHz", build=with_target(_target(_set("clock_ghz", 1e-300)))),
        Case("target-zero-crossbar-area", argv, 2,
             r"field crossbar\.area_mm2: 0 is less than the minimum",
             "a crossbar of zero area", build=with_target(_target(
                 lambda data: data["crossbar"].__setitem__("area_mm2", 0)))),
        Case("target-zero-resistance", argv, 2,
             r"field crossbar\.r_on_ohm: 0 is less than the minimum of 1",
             "r_on_ohm 0", build=with_target(_target(_set("r_on_ohm", 0)))),
    ]


# ---- plans and input data -------------------------------------------------------------
def _break_a_dependency(plan: dict[str, Any]) -> dict[str, Any]:
    """Move an operator to start 1 ns before the operator it depends on ends.

    Only the moved event changes (its duration kept), so the plan is valid JSON of
    the right shape and the first thing wrong is the dependency.
    """
    events = {e["op"]: e for e in plan["schedule"]["compute"]}
    for op in plan["operators"]:
        for dep in op["deps"]:
            if dep in events and op["id"] in events:
                event, before = events[op["id"]], events[dep]
                length = event["end_ns"] - event["start_ns"]
                event["start_ns"] = before["end_ns"] - 1
                event["end_ns"] = event["start_ns"] + length
                return plan
    raise ValueError("the base plan has no operator with a scheduled dependency")


class _Unpickled:
    """Creates a marker file when unpickled: proof a loader ran arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = os.fspath(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _npz(*, allow_pickle: bool = False, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=allow_pickle, **arrays)
    return buffer.getvalue()


def _with_plan(
    edit: Callable[[dict[str, Any]], Any] | None = None,
    text: str | bytes | None = None,
    inputs: Callable[[Path], bytes] | None = None,
    text_edit: Callable[[str], str] | None = None,
) -> Builder:
    """A builder writing the base model, its plan (edited, or ``text`` instead) and,
    given ``inputs`` (called with the case's folder), the ``in.npz`` it returns;
    ``text_edit`` rewrites the plan's JSON text (for what ``json.dumps`` will not write)."""
    def build(folder: Path, shared: Shared) -> None:
        _write(folder, "a.onnx", shared.model_bytes)
        if text is None:
            plan = shared.plan()
            if edit is not None:
                edit(plan)
            plan_text = json.dumps(plan, indent=1)
            _write(folder, "plan.json", plan_text if text_edit is None
                   else text_edit(plan_text))
        else:
            _write(folder, "plan.json", text)
        if inputs is not None:
            _write(folder, "in.npz", inputs(folder))
    return build


def _two_blank_images(folder: Path) -> bytes:
    return _npz(images=np.zeros((2, 3, 8, 8), np.float32))


def _nan_clock(text: str) -> str:
    assert text.count('"clock_ghz": 1.0') == 1
    return text.replace('"clock_ghz": 1.0', '"clock_ghz": NaN')


def _float_count(plan: dict[str, Any]) -> None:
    find_parent(plan["target"], "crossbars")["crossbars"] = 4096.0


def zip_bomb(inflated_bytes: int) -> bytes:
    """An ``.npz`` whose one member (``images.npy``, zeros) deflates ~1000:1.

    Built from one deflate block of 1 MiB of zeros repeated (a full flush makes each
    block stand alone), so writing a 4 GiB bomb takes a second, not a minute; its CRC
    is the true one, so only its size is hostile.
    """
    header = io.BytesIO()
    count = (inflated_bytes - 128) // 768
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (count, 3, 8, 8)})
    head = header.getvalue()
    size = len(head) + count * 768
    chunk = 1 << 20
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(b"\0" * chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeats, tail = divmod(size - len(head), chunk)
    last = deflate.compress(b"\0" * tail) + deflate.flush(zlib.Z_FINISH)
    crc, zeros = zlib.crc32(head), b"\0" * chunk
    for _ in range(repeats):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(b"\0" * tail, crc)
    return _zip_one(b"images.npy", first + block * repeats + last, size, crc, method=8)


def _zip_one(name: bytes, data: bytes, size: int, crc: int, *, method: int) -> bytes:
    """A zip archive of one member whose bytes (already compressed) are ``data``."""
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data),
                        size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc,
                          len(data), size, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                      len(local) + len(data), 0)
    return local + data + central + end


def _npz_declaring(declared_bytes: int) -> bytes:
    """An ``.npz`` whose ``images`` header declares ``declared_bytes`` of float32 images
    (N x 3 x 8 x 8) while its member holds the header and 64 bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {
        "descr": "<f4", "fortran_order": False, "shape": (declared_bytes // 768, 3, 8, 8)})
    data = header.getvalue() + b"\0" * 64
    return _zip_one(b"images.npy", data, len(data), zlib.crc32(data), method=0)


def _setter(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        del data[key]
    return edit


def _plan_cases() -> list[Case]:
    validate = ("validate", "{case}/plan.json")
    simulate = ("simulate", "{case}/plan.json")
    report = ("report", "{case}/plan.json", "-o", "{out}/report.html")
    execute = (*simulate, "--execute", "--models", "{case}/a.onnx", "--inputs",
               "{case}/in.npz")
    resume = _compile("{case}/a.onnx", extra=("--initial-state", "{case}/plan.json"))
    dependency = r"operator '[^']+' starts at \d+ ns but depends on '[^']+', which ends at"
    return [
        Case("plan-not-json", validate, 2, r"plan\.json is not valid JSON",
             "a truncated JSON plan",
             build=_with_plan(text='{"format": "enasa-plan", "version": 1,')),
        Case("plan-not-utf8", report, 2, r"cannot read plan file .*plan\.json: 'utf-8' codec",
             "a plan file that is not UTF-8 text",
             build=_with_plan(text=b"\xff\xfe\x00garbage\x81")),
        Case("plan-deeply-nested", validate, 2, r"plan\.json is not valid JSON: nested too "
             "deeply", f"a plan of {_DEEP} nested arrays",
             build=_with_plan(text="[" * _DEEP + "]" * _DEEP)),
        Case("plan-huge-integer", simulate, 2,
             r"plan\.json is not valid JSON: Exceeds the limit \(4300 digits\)",
             "a 5000-digit integer in a plan",
             build=_with_plan(text='{"version": ' + _HUGE_INT + "}")),
        Case("plan-wrong-types", resume, 2,
             r"field operators\.0\.latency_ns: 'fast' is not of type 'integer'",
             "a string where an integer goes, given as --initial-state",
             build=_with_plan(_setter("operators", 0, "latency_ns", value="fast"))),
        Case("plan-unknown-version", validate, 1, r"^schema: field version: \d+ was expected",
             "format version 99", stream="stdout",
             build=_with_plan(_setter("version", value=99))),
        Case("plan-missing-keys", report, 1,
             r"not a valid plan .*'schedule' is a required property",
             "the schedule deleted (report must write no page)",
             build=_with_plan(_delete("schedule"))),
        Case("plan-tampered-validate", validate, 1, r"^dependency: " + dependency,
             "an interval shifted before its dependency ends", stream="stdout",
             build=_with_plan(_break_a_dependency)),
        Case("plan-tampered-simulate", simulate, 1, r"not a valid plan .*" + dependency,
             "the same plan given to simulate", build=_with_plan(_break_a_dependency)),
        # --execute --inputs: the plan and model are fine, the data is not.
        Case("npz-wrong-shape", execute, 2,
             r"in\.npz: (images are|array 'images' is) \(3, 16, 16\) per (image|sample) "
             r"but the plan's input is "
             r"\(3, 8, 8\)", "images of the wrong size",
             build=_with_plan(inputs=lambda _: _npz(
                 images=np.zeros((2, 3, 16, 16), np.float32)))),
        Case("npz-pickled-object", execute, 2,
             r"in\.npz: array 'images' is a pickled object array",
             "an object array whose unpickling would create a file",
             build=_with_plan(inputs=lambda folder: _npz(
                 images=np.array([_Unpickled(folder.resolve() / MARKER)], dtype=object),
                 allow_pickle=True))),
        Case("npz-not-zip", execute, 2, r"in\.npz: not a \.npz archive",
             "a text file given as .npz",
             build=_with_plan(inputs=lambda _: b"images = [1, 2, 3]\n")),
        # Issue #16: sizes are checked from the zip directory and .npy headers.
        Case("npz-zip-bomb", execute, 2,
             r"in\.npz: the archive declares 4\.0 GiB, over the 1\.0 GiB budget; refused",
             "a 4 MB deflated member inflating to 4 GiB",
             build=_with_plan(inputs=lambda _: zip_bomb(4 << 30))),
        Case("npz-header-34-gib", execute, 2,
             r"in\.npz: array 'images' declares 34\.0 GiB, over the 1\.0 GiB budget",
             "an .npy header declaring 34 GiB in a 200-byte member",
             build=_with_plan(inputs=lambda _: _npz_declaring(34 << 30))),
        Case("npz-header-beyond-member", execute, 2,
             r"in\.npz: array 'images' declares shape \(1000, 3, 8, 8\) \(768000 bytes\) "
             r"but its member holds \d+ bytes",
             "a header declaring more than its member holds",
             build=_with_plan(inputs=lambda _: _npz_declaring(768_000))),
        Case("npz-nan-images", execute, 2, r"in\.npz: array 'images' holds NaN",
             "a NaN pixel", build=_with_plan(inputs=lambda _: _npz(
                 images=np.full((2, 3, 8, 8), np.nan, np.float32)))),
        Case("flag-limit-zero", (*execute, "--limit", "0"), 2,
             r"--limit must be at least 1 image, got 0", "--limit 0",
             build=_with_plan(inputs=_two_blank_images)),
        Case("flag-limit-negative", (*execute, "--limit", "-5"), 2,
             r"--limit must be at least 1 image, got -5", "--limit -5",
             build=_with_plan(inputs=_two_blank_images)),
        # One malformed plan, one exit code, whichever command reads it.
        *[Case(f"plan-nan-target-{name}", argv, 2,
               r"plan\.json is not valid JSON: NaN is not a JSON number",
               f"NaN in the embedded target's clock, given to {name}",
               build=_with_plan(text_edit=_nan_clock))
          for name, argv in (("validate", validate), ("simulate", simulate),
                             ("report", report))],
        # A plan that reads but fails its checks: exit 1 from each command.
        *[Case(f"plan-float-count-{name}", argv, 1,
               r"field chip\.crossbars: 4096\.0 is not an integer", stream=stream,
               about=f"crossbars 4096.0 in the embedded target, given to {name}",
               build=_with_plan(_float_count))
          for name, argv, stream in (("validate", validate, "stdout"),
                                     ("simulate", simulate, "stderr"),
                                     ("report", report, "stderr"))],
        Case("plan-missing-keys-simulate", simulate, 1,
             r"not a valid plan .*'schedule' is a required property",
             "the schedule deleted, given to simulate", build=_with_plan(_delete("schedule"))),
    ]


# ---- supernet checkpoints ----------------------------------------------------------
def _torch_bytes(payload: Callable[[Path], Any]) -> Builder:
    def build(folder: Path, shared: Shared) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(payload(folder), buffer)
        _write(folder, "ckpt.pt", buffer.getvalue())
    return build


def _config(**changes: Any) -> str:
    config = {"space": "spos", "width_mult": 0.25, "input_size": 32, "num_classes": 10,
              "stage_repeats": None, "seed": 0, "epochs": 0, "rule": "spos", **changes}
    return json.dumps(config)


_CHECKPOINT = "enasa-supernet/1"


def _checkpoint_cases() -> list[Case]:
    argv = ("search", "--supernet", "{case}/ckpt.pt", "--out", "{out}/search",
            "--generations", "1", "--group-size", "2", "--no-progress")
    loadable = r"ckpt\.pt: not a loadable supernet checkpoint"
    resume = ("search", "--resume", "{case}/run", "--no-progress")
    return [
        Case("checkpoint-not-torch", argv, 2, loadable, "a file that is not a torch file",
             build=_files({"ckpt.pt": lambda: b"PK\x03\x04 this is not a checkpoint\n"})),
        Case("checkpoint-pickled-object", argv, 2,
             loadable + r" \(weights-only loading refused it",
             "a checkpoint holding an object whose unpickling would create a file",
             build=_torch_bytes(lambda folder: {
                 "format": _CHECKPOINT, "config": _Unpickled(folder.resolve() / MARKER)})),
        Case("checkpoint-deep-config", argv, 2,
             r"ckpt\.pt: checkpoint config is not JSON \(nested too deeply\)",
             f"a config of {_DEEP} nested arrays", build=_torch_bytes(lambda _: {
                 "format": _CHECKPOINT, "config": "[" * _DEEP, "state_dict": {}})),
        Case("checkpoint-huge-seed", argv, 2, r"ckpt\.pt: seed must fit torch's 64-bit seed",
             "a config seed of 10**30", build=_torch_bytes(lambda _: {
                 "format": _CHECKPOINT, "config": _config(seed=10**30), "state_dict": {}})),
        Case("flag-threads-huge", (*argv, "--threads", "1000000000"), 2,
             r"--threads must be between 1 and \d+ \(the cores this process may use\), "
             r"got 1000000000", "--threads 10**9 (libgomp aborted)",
             build=_files({"ckpt.pt": lambda: b"not read"})),
        Case("resume-deep-json", resume, 2,
             r"search_state\.json is not JSON \(nested too deeply\)",
             f"a search checkpoint of {_DEEP} nested arrays", build=_files({
                 "run/search_state.json": lambda: "[" * _DEEP + "]" * _DEEP})),
        Case("resume-huge-integer", resume, 2,
             r"search_state\.json is not JSON \(Exceeds the limit \(4300 digits\)",
             "a 5000-digit integer in a search checkpoint", build=_files({
                 "run/search_state.json": lambda: '{"format": ' + _HUGE_INT + "}"})),
    ]


def _flag_cases() -> list[Case]:
    return [
        Case("flag-max-memory-zero", (*_ONE, "--max-memory", "0"), 2,
             r"--max-memory must be between 1 and \d+ MiB, got 0", "--max-memory 0",
             build=_files({"a.onnx": tiny_model})),
    ]


def cases() -> list[Case]:
    """Every case, with its builder; cheap (writes nothing, imports no torch)."""
    every = [*_model_cases(), *_target_cases(), *_plan_cases(), *_checkpoint_cases(),
             *_flag_cases()]
    names = [c.name for c in every]
    assert len(names) == len(set(names)), "case names must be unique"
    return every


def generate(outdir: str | os.PathLike[str]) -> list[Case]:
    """Write every case's files under ``outdir`` and ``outdir/manifest.json``.

    Returns:
        The cases, in manifest order.

    Raises:
        FileExistsError: a case folder already exists (use an empty ``outdir``).

    """
    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    shared = Shared(root)
    every = cases()
    for case in every:
        folder = root / case.name
        folder.mkdir()
        assert case.build is not None
        case.build(folder, shared)
    manifest = {"marker": MARKER, "cases": [c.to_json() for c in every]}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return every


def load_manifest(outdir: str | os.PathLike[str]) -> list[Case]:
    """Read the cases back from ``outdir/manifest.json`` (without builders)."""
    data = json.loads((Path(outdir) / MANIFEST).read_text())
    return [Case(**{**c, "argv": tuple(c["argv"])}) for c in data["cases"]]


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_corpus.py OUTDIR``; prints one line per case."""
    parser = argparse.ArgumentParser(description="Generate the enasa bad-input corpus.")
    parser.add_argument("outdir", type=Path, help="an empty (or new) folder to write into")
    args = parser.parse_args(argv)
    every = generate(args.outdir)
    for case in every:
        print(f"{case.name:<28} exit {case.exit_code}  {case.about}")
    print(f"{len(every)} cases; manifest in {args.outdir / MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
