"""ReRAM targets as data: the typed target, preset files and user files.

No hardware number lives in code: every figure the cost model and the mapper use
comes from a target file, checked against ``target.schema.json`` (types, ranges,
unknown keys) and then for consistency between fields. Errors name the field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from enasa_compiler.errors import InputError
from enasa_compiler.ir import SignedScheme

logger = logging.getLogger(__name__)

__all__ = [
    "ChipSpec",
    "CrossbarSpec",
    "EnergySpec",
    "PrecisionSpec",
    "Target",
    "TimingSpec",
    "list_presets",
    "load_target",
    "target_from_dict",
]

_MAX_TARGET_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class CrossbarSpec:
    """One crossbar (subarray) and its cells."""

    rows: int
    cols: int
    cell_bits: int
    r_on_ohm: float
    r_off_ohm: float
    read_voltage_v: float
    read_pulse_ns: float
    write_voltage_v: float


@dataclass(frozen=True)
class ChipSpec:
    """Chip-level resources: how many crossbars and digital vector units."""

    crossbars: int
    digital_units: int
    digital_ops_per_cycle: int


@dataclass(frozen=True)
class PrecisionSpec:
    """Data precisions and the periphery that converts between domains."""

    w_bits: int
    a_bits: int
    dac_bits: int
    adc_bits: int
    cols_per_adc: int
    signed_scheme: SignedScheme


@dataclass(frozen=True)
class TimingSpec:
    """Latencies not implied by the crossbar's read pulse."""

    adc_conversion_ns: float
    write_pulse_ns: float
    verify_read_ns: float
    write_pulses_per_cell: int


@dataclass(frozen=True)
class EnergySpec:
    """Per-event energies of the periphery, the digital units and programming."""

    dac_pj_per_row_read: float
    adc_pj_per_conversion: float
    shift_add_pj_per_column_read: float
    digital_pj_per_op: float
    buffer_pj_per_byte: float
    write_pj_per_pulse: float


@dataclass(frozen=True)
class Target:
    """A ReRAM CIM chip the compiler maps onto.

    Attributes:
        name: preset or user name.
        sha256: hash of the canonical JSON of the target; plans record it so a plan
            can be checked against the target it was made for.

    """

    name: str
    description: str
    sources: tuple[str, ...]
    technology_nm: float
    clock_ghz: float
    crossbar: CrossbarSpec
    chip: ChipSpec
    precision: PrecisionSpec
    timing: TimingSpec
    energy: EnergySpec
    sha256: str

    @property
    def slices_per_weight(self) -> int:
        """Cells (adjacent columns) one ``w_bits`` weight is split into."""
        return math.ceil(self.precision.w_bits / self.crossbar.cell_bits)

    @property
    def columns_per_weight(self) -> int:
        """Physical columns per logical weight column, signed scheme included."""
        factor = 2 if self.precision.signed_scheme is SignedScheme.DIFFERENTIAL else 1
        return self.slices_per_weight * factor

    @property
    def input_cycles(self) -> int:
        """Crossbar reads per input vector: activations applied ``dac_bits`` at a time."""
        return math.ceil(self.precision.a_bits / self.precision.dac_bits)

    @property
    def adcs_per_crossbar(self) -> int:
        """ADCs serving one crossbar's columns."""
        return max(1, self.crossbar.cols // self.precision.cols_per_adc)

    def to_dict(self) -> dict[str, Any]:
        """Return the target in its file format (what :func:`target_from_dict` reads)."""
        data = asdict(self)
        data.pop("sha256")
        data["sources"] = list(self.sources)
        data["precision"]["signed_scheme"] = self.precision.signed_scheme.value
        return {"format": "enasa-target", "version": 1, **data}


def _schema() -> dict[str, Any]:
    text = resources.files("enasa_compiler.targets").joinpath("target.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _field_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _check_consistency(data: dict[str, Any]) -> None:
    xbar, precision = data["crossbar"], data["precision"]
    if xbar["r_on_ohm"] >= xbar["r_off_ohm"]:
        raise InputError("target field crossbar.r_on_ohm must be below crossbar.r_off_ohm")
    if xbar["cols"] % precision["cols_per_adc"] != 0:
        raise InputError("target field precision.cols_per_adc must divide crossbar.cols")
    factor = 2 if precision["signed_scheme"] == "differential" else 1
    columns_per_weight = math.ceil(precision["w_bits"] / xbar["cell_bits"]) * factor
    if columns_per_weight > xbar["cols"]:
        raise InputError(
            f"target field crossbar.cols ({xbar['cols']}) is smaller than the "
            f"{columns_per_weight} columns one weight needs"
        )
    if precision["dac_bits"] > precision["a_bits"]:
        raise InputError("target field precision.dac_bits must not exceed precision.a_bits")


def _floats(section: dict[str, Any], unit_suffixes: tuple[str, ...]) -> dict[str, Any]:
    """Make the physical quantities floats, so ``6000`` and ``6000.0`` give one target."""
    return {k: float(v) if k.endswith(unit_suffixes) else v for k, v in section.items()}


def target_from_dict(data: Any, *, origin: str = "target") -> Target:
    """Check a target given as parsed JSON and build the typed :class:`Target`.

    Raises:
        InputError: naming the first offending field.

    """
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise InputError(f"{origin}: field {_field_path(first)}: {first.message}")
    _check_consistency(data)
    precision = dict(data["precision"])
    precision["signed_scheme"] = SignedScheme(precision["signed_scheme"])
    target = Target(
        name=data["name"],
        description=data.get("description", ""),
        sources=tuple(data.get("sources", ())),
        technology_nm=float(data["technology_nm"]),
        clock_ghz=float(data["clock_ghz"]),
        crossbar=CrossbarSpec(**_floats(data["crossbar"], ("_ohm", "_v", "_ns"))),
        chip=ChipSpec(**data["chip"]),
        precision=PrecisionSpec(**precision),
        timing=TimingSpec(**_floats(data["timing"], ("_ns",))),
        energy=EnergySpec(**{k: float(v) for k, v in data["energy"].items()}),
        sha256="",
    )
    # Hash the typed form, so equal targets hash equally whatever the JSON spelling.
    canonical = json.dumps(target.to_dict(), sort_keys=True, separators=(",", ":"))
    return replace(target, sha256=hashlib.sha256(canonical.encode()).hexdigest())


def list_presets() -> list[str]:
    """Names of the target presets shipped with the package."""
    folder = resources.files("enasa_compiler.targets").joinpath("presets")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir()
                  if p.name.endswith(".json"))


def load_target(name_or_path: str | Path | Target) -> Target:
    """Load a preset by name, or a user target file by path.

    Raises:
        InputError: unknown preset, unreadable file, invalid JSON or a bad field.

    """
    if isinstance(name_or_path, Target):
        return name_or_path
    text_name = str(name_or_path)
    if text_name in list_presets():
        folder = resources.files("enasa_compiler.targets").joinpath("presets")
        text = folder.joinpath(f"{text_name}.json").read_text()
        origin = f"preset {text_name}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(
                f"unknown target '{text_name}': not a preset ({', '.join(list_presets())}) "
                "and not a file"
            )
        if path.stat().st_size > _MAX_TARGET_FILE_BYTES:
            raise InputError(f"target file {path} is larger than 1 MiB")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read target file {path}: {exc}") from exc
        origin = f"target file {path}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{origin} is not valid JSON: {exc}") from exc
    return target_from_dict(data, origin=origin)
