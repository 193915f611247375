"""Mapping passes: crossbar program in, schedule (crossbar ids and times) out."""

from __future__ import annotations

from enasa_compiler.passes.mapping.ops import (
    MODES,
    RankingPolicy,
    Schedule,
    crossbars_needed,
    rank_key,
    resolve_mode,
    schedule_ops,
)

__all__ = [
    "MODES",
    "RankingPolicy",
    "Schedule",
    "crossbars_needed",
    "rank_key",
    "resolve_mode",
    "schedule_ops",
]
