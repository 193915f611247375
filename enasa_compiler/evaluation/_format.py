"""Number formats and the paper's figures shared by the evaluation's reports."""

from __future__ import annotations

__all__ = ["PAPER", "fmt_energy", "fmt_ratio", "fmt_scaled", "fmt_share", "fmt_spread",
           "fmt_time"]

# ENASA's published figures (paper section "evaluation"; domain.md section 7).
PAPER = {
    "speed_up_vs_cpu_gpu": 196.6,
    "energy_ratio_vs_cpu_gpu": 1200.0,
    "speed_up_vs_nasa": 6.5,
    "energy_ratio_vs_nasa": 9.0,
    "utilization": 0.90,
}


def fmt_scaled(value: float | None, unit: str) -> str:
    """``value`` (in ``unit``) with the largest of unit, milli, micro, nano it reaches."""
    if value is None:
        return "-"
    for prefix, scale in (("", 1.0), ("m", 1e-3), ("µ", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value / 1e-9:.3g} n{unit}"


def fmt_time(seconds: float | None) -> str:
    return fmt_scaled(seconds, "s")


def fmt_energy(joules: float | None) -> str:
    return fmt_scaled(joules, "J")


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def fmt_share(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if value >= 0.01 else f"{value * 100:.2g}%"


def fmt_spread(values: list[float] | None) -> str:
    if not values:
        return ""
    low, mid, high = values
    return f" ({low:.3g}-{high:.3g}x over repeats, median {mid:.3g}x)"
