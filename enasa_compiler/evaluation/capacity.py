"""Targets that differ from a preset only in how many crossbars the chip has."""

from __future__ import annotations

from enasa_compiler.targets import Target, target_from_dict

__all__ = ["with_crossbars"]


def with_crossbars(target: Target, crossbars: int) -> Target:
    """Return ``target`` with ``crossbars`` crossbars on the chip, everything else equal."""
    data = target.to_dict()
    data["name"] = f"{target.name}-{crossbars}xb"
    data["chip"]["crossbars"] = crossbars
    return target_from_dict(data)
