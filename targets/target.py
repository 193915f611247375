"""ReRAM targets as data: the typed target, preset files and user files.

No hardware number lives in code: every figure the cost model, the power and area
sums and the mapper use comes from a target file, checked against
``target.schema.json`` (types, ranges, units, unknown keys) and then for consistency
between fields. Errors name the field by its path (``crossbar.read_pulse_ns``).

The file describes the hierarchy chip -> tile -> PE -> crossbar (see
:mod:`enasa_compiler.targets.components` and ``docs/targets.md``). ``chip.crossbars``
is the capacity the mapper uses; the tile and PE counts follow from it.
"""

from __future__ import annotations

import dataclasses
import difflib
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
from enasa_compiler.targets import components as parts
from enasa_compiler.targets.components import (
    COST_MODELS,
    AdcSpec,
    BusSpec,
    ChipSpec,
    CrossbarSpec,
    DacSpec,
    DigitalUnitSpec,
    EnergySpec,
    IoSpec,
    NeurosimSpec,
    PeSpec,
    PrecisionSpec,
    RegisterSpec,
    RouterSpec,
    SampleHoldSpec,
    ShiftAddSpec,
    TileSpec,
    TimingSpec,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TARGET_VERSION",
    "AdcSpec",
    "BusSpec",
    "ChipSpec",
    "CrossbarSpec",
    "DacSpec",
    "DigitalUnitSpec",
    "EnergySpec",
    "NeurosimSpec",
    "IoSpec",
    "PeSpec",
    "PrecisionSpec",
    "RegisterSpec",
    "RouterSpec",
    "SampleHoldSpec",
    "ShiftAddSpec",
    "Target",
    "TileSpec",
    "TimingSpec",
    "list_presets",
    "load_target",
    "target_from_dict",
]

TARGET_VERSION = 2
_MAX_TARGET_FILE_BYTES = 1 << 20
# Unit suffixes of the file's field names, for the hint when a value carries its unit.
_UNITS = {"_ns": "ns", "_pj": "pJ", "_mw": "mW", "_mm2": "mm^2", "_ohm": "ohm", "_v": "V",
          "_ghz": "GHz", "_nm": "nm", "_bytes": "bytes", "_per_cell": "pJ",
          "_per_pulse": "pJ", "_per_conversion": "pJ", "_per_row_read": "pJ",
          "_per_sample": "pJ", "_per_op": "pJ", "_per_byte": "pJ"}


@dataclass(frozen=True)
class Target:
    """A ReRAM CIM chip the compiler maps onto.

    Attributes:
        name: preset or user name.
        sha256: hash of the canonical JSON of the target; plans record it so a plan
            can be checked against the target it was made for.
        cost_model: ``first-order`` (:mod:`~enasa_compiler.targets.cost`) or
            ``neurosim`` (:mod:`~enasa_compiler.targets.neurosim`, numbers in
            ``neurosim``).

    """

    name: str
    description: str
    sources: tuple[str, ...]
    technology_nm: float
    clock_ghz: float
    crossbar: CrossbarSpec
    precision: PrecisionSpec
    timing: TimingSpec
    pe: PeSpec
    tile: TileSpec
    chip: ChipSpec
    sha256: str
    cost_model: str = COST_MODELS[0]
    neurosim: NeurosimSpec | None = None

    # ---- geometry and precision ------------------------------------------------------
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
    def weights_per_crossbar_row(self) -> int:
        """Logical weight columns one crossbar holds (its columns over the slices)."""
        return self.crossbar.cols // self.columns_per_weight

    @property
    def input_cycles(self) -> int:
        """Crossbar reads per input vector: activations applied ``dac_bits`` at a time."""
        return math.ceil(self.precision.a_bits / self.precision.dac_bits)

    @property
    def adcs_per_crossbar(self) -> int:
        """ADCs serving one crossbar's columns."""
        return max(1, self.crossbar.cols // self.precision.cols_per_adc)

    # ---- hierarchy -------------------------------------------------------------------
    @property
    def crossbars_per_tile(self) -> int:
        """Crossbars in a full tile."""
        return self.tile.pes_per_tile * self.pe.crossbars_per_pe

    @property
    def pes(self) -> int:
        """PEs on the chip (the last one possibly part-populated)."""
        return parts.count_above(self.chip.crossbars, self.pe.crossbars_per_pe)

    @property
    def tiles(self) -> int:
        """Tiles on the chip (the last one possibly part-populated)."""
        return parts.count_above(self.pes, self.tile.pes_per_tile)

    @property
    def routers(self) -> int:
        """Routers on the chip, each shared by ``tile.router.tiles_per_router`` tiles."""
        return parts.count_above(self.tiles, self.tile.router.tiles_per_router)

    @property
    def energy(self) -> EnergySpec:
        """Every per-event energy of the hierarchy, as one flat record."""
        pe, tile = self.pe, self.tile
        return EnergySpec(
            read_pj_per_cell=self.crossbar.read_pj_per_cell,
            dac_pj_per_row_read=pe.dac.pj_per_row_read,
            sample_hold_pj_per_sample=pe.sample_hold.pj_per_sample,
            adc_pj_per_conversion=pe.adc.pj_per_conversion,
            shift_add_pj_per_column_read=pe.shift_add.pj_per_op,
            input_register_pj_per_byte=pe.input_register.pj_per_byte,
            output_register_pj_per_byte=pe.output_register.pj_per_byte,
            buffer_pj_per_byte=tile.buffer.pj_per_byte,
            tile_output_register_pj_per_byte=tile.output_register.pj_per_byte,
            bus_pj_per_byte=tile.bus.pj_per_byte,
            router_pj_per_byte=tile.router.pj_per_byte,
            digital_pj_per_op=self.chip.digital_unit.pj_per_op,
            write_pj_per_pulse=self.crossbar.write_pj_per_pulse,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the target in its file format (what :func:`target_from_dict` reads)."""
        data = asdict(self)
        data.pop("sha256")
        # A first-order target writes neither field, so its file and hash stay as they were.
        if self.cost_model == COST_MODELS[0]:
            data.pop("cost_model")
        if self.neurosim is None:
            data.pop("neurosim")
        data["sources"] = list(self.sources)
        data["precision"]["signed_scheme"] = self.precision.signed_scheme.value
        return {"format": "enasa-target", "version": TARGET_VERSION, **data}


# ---- reading -------------------------------------------------------------------------
def _schema() -> dict[str, Any]:
    text = resources.files("enasa_compiler.targets").joinpath("target.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _field_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _join(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def _unit_of(key: str) -> str | None:
    return next((unit for suffix, unit in _UNITS.items() if key.endswith(suffix)), None)


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the offending field by path, with a hint where one helps."""
    path = _field_path(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        key = extra[0] if extra else "?"
        close = difflib.get_close_matches(key, known, n=1)
        hint = (f"; did you mean '{close[0]}'?" if close
                else f"; known keys: {', '.join(known)}")
        return f"field {_join(path, key)}: unknown key '{key}'{hint}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return f"field {_join(path, missing)}: {error.message}"
    if error.validator == "type" and isinstance(error.instance, float):
        if not math.isfinite(error.instance):
            return f"field {path}: {error.instance} is not a finite number"
        if error.validator_value == "integer":
            return (f"field {path}: {error.instance} is not an integer (a count: write "
                    f"{error.instance:.0f})" if error.instance.is_integer()
                    else f"field {path}: {error.instance} is not an integer (a count)")
    message = f"field {path}: {error.message}"
    last = str(error.absolute_path[-1]) if error.absolute_path else ""
    unit = _unit_of(last)
    if isinstance(error.instance, str) and unit and error.validator == "type":
        message += f" (give a plain number: the unit, {unit}, is in the field name)"
    return message


def _is_count(checker: Any, instance: Any) -> bool:
    """Tell whether a count is a JSON integer: ``4096.0`` is not (the draft says it is)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_finite_number(checker: Any, instance: Any) -> bool:
    """Tell whether a number is finite: a NaN would pass every minimum and maximum."""
    return (isinstance(instance, int | float) and not isinstance(instance, bool)
            and math.isfinite(instance))


# JSON Schema calls 4096.0 an integer and NaN a number, and NaN compares false against
# every minimum and maximum, so it would pass them all; this validator refuses both.
_STRICT_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_count, "number": _is_finite_number}))


def _error_order(error: jsonschema.ValidationError) -> tuple[list[str], int]:
    # An unknown key first: a misspelt field also shows up as a missing one.
    return [str(p) for p in error.absolute_path], error.validator != "additionalProperties"


def _check_consistency(target: Target) -> None:
    xbar, precision = target.crossbar, target.precision
    if xbar.r_on_ohm >= xbar.r_off_ohm:
        raise InputError("target field crossbar.r_on_ohm must be below crossbar.r_off_ohm")
    if xbar.cols % precision.cols_per_adc != 0:
        raise InputError("target field precision.cols_per_adc must divide crossbar.cols")
    if target.columns_per_weight > xbar.cols:
        raise InputError(
            f"target field crossbar.cols ({xbar.cols}) is smaller than the "
            f"{target.columns_per_weight} columns one weight needs"
        )
    if target.cost_model == "neurosim" and target.neurosim is None:
        raise InputError("target field neurosim is required when cost_model is 'neurosim'")
    if precision.dac_bits > precision.a_bits:
        raise InputError("target field precision.dac_bits must not exceed precision.a_bits")
    # A cell cannot draw more than its on-state current for the pulse: a value above
    # that is almost always a unit slip (fJ for pJ, us for ns).
    ceiling_pj = xbar.read_voltage_v**2 / xbar.r_on_ohm * xbar.read_pulse_ns * 1e3
    if xbar.read_pj_per_cell > ceiling_pj * (1 + 1e-9):
        raise InputError(
            f"target field crossbar.read_pj_per_cell ({xbar.read_pj_per_cell} pJ) exceeds "
            f"what a cell at r_on_ohm draws in one read pulse ({ceiling_pj:.4g} pJ): "
            "check its unit")


_SPEC_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (
        AdcSpec, BusSpec, ChipSpec, CrossbarSpec, DacSpec, DigitalUnitSpec, IoSpec, PeSpec,
        PrecisionSpec, RegisterSpec, RouterSpec, SampleHoldSpec, ShiftAddSpec, TileSpec,
        TimingSpec)
}


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Build a spec dataclass from schema-checked data, nested specs included.

    Fields typed ``float`` become floats, so ``6000`` and ``6000.0`` give one target
    (and one hash).
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data and f.default is not dataclasses.MISSING:
            values[f.name] = f.default  # an optional field the file leaves out
            continue
        value = data[f.name]
        kind = str(f.type)
        if kind in _SPEC_TYPES:
            value = _build(_SPEC_TYPES[kind], value)
        elif kind == "float":
            value = float(value)
        elif kind == "SignedScheme":
            value = SignedScheme(value)
        values[f.name] = value
    return cls(**values)


def target_from_dict(data: Any, *, origin: str = "target") -> Target:
    """Check a target given as parsed JSON and build the typed :class:`Target`.

    Raises:
        InputError: naming the first offending field.

    """
    if isinstance(data, dict) and data.get("version") == 1:
        raise InputError(
            f"{origin}: field version: target format version 1 (flat, no tile/PE "
            f"hierarchy) is no longer read; this compiler reads version {TARGET_VERSION} "
            "(see docs/targets.md)")
    validator = _STRICT_VALIDATOR(_schema())
    errors = sorted(validator.iter_errors(data), key=_error_order)
    if errors:
        raise InputError(f"{origin}: {_describe(errors[0])}")
    target = Target(
        name=data["name"],
        description=data.get("description", ""),
        sources=tuple(data.get("sources", ())),
        technology_nm=float(data["technology_nm"]),
        clock_ghz=float(data["clock_ghz"]),
        crossbar=_build(CrossbarSpec, data["crossbar"]),
        precision=_build(PrecisionSpec, data["precision"]),
        timing=_build(TimingSpec, data["timing"]),
        pe=_build(PeSpec, data["pe"]),
        tile=_build(TileSpec, data["tile"]),
        chip=_build(ChipSpec, data["chip"]),
        sha256="",
        cost_model=data.get("cost_model", COST_MODELS[0]),
        neurosim=(_build(NeurosimSpec, data["neurosim"]) if "neurosim" in data else None),
    )
    try:
        _check_consistency(target)
    except InputError as exc:
        raise InputError(f"{origin}: {exc}") from exc
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
    except RecursionError as exc:
        raise InputError(f"{origin} is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise InputError(f"{origin} is not valid JSON: {exc}") from exc
    return target_from_dict(data, origin=origin)
