"""Baseline (e): NASA (ISCA 2021), the ENASA paper's NAS accelerator, modeled.

NASA is a digital one-shot-NAS accelerator with a network fusion unit that removes
computation shared by the candidates of a generation. It is modeled from ``nasa.json``
(every figure there says whether it is published, with its source, or assumed: the
NASA paper's PE array, clock, buffers, power, area and process node were not found in
the sources searched, so those are stated assumptions):

* time per generation: the larger of compute and DRAM time, where compute is the
  group's deduplicated multiply-adds for N images over ``macs_per_cycle x clock x
  utilization`` and DRAM is the group's distinct weight bytes, read once per batch of
  ``batch_images`` images (the buffer cannot keep them), over ``dram_gb_per_s``;
* energy: ``mac_energy_pj`` per multiply-add, ``dram_pj_per_byte`` per weight byte
  read, plus ``static_power_mw`` over the time.

The deduplicated multiply-adds and the distinct weights are taken from the (a) plans
of the same groups, so NASA gets exactly the sharing ENASA's dedup finds. Digital
work other than multiply-adds (BN, activations, pooling) and activation traffic are
not charged, which favours NASA.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

from enasa_compiler.plan import Plan

from .systems import SystemRun

logger = logging.getLogger(__name__)

__all__ = ["distinct_weight_bytes", "model_nasa", "nasa_figures"]


def nasa_figures() -> dict[str, Any]:
    """Return NASA's modeled figures with their sources (``nasa.json``)."""
    text = resources.files(__package__).joinpath("nasa.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def distinct_weight_bytes(plan: Plan, weight_bits: int) -> int:
    """Bytes of a group's distinct weights: each matrix once, whatever its copies."""
    sizes = {w.sha256: w.rows * w.cols for w in plan.weights}
    return math.ceil(sum(sizes.values()) * weight_bits / 8)


def model_nasa(plans: Sequence[Plan], subnets: int, images: int,
               figures: dict[str, Any] | None = None) -> SystemRun:
    """Price the workload on NASA, one generation per (a) plan, for ``images`` images."""
    nasa = figures or nasa_figures()
    macs_per_s = nasa["macs_per_cycle"] * nasa["clock_ghz"] * 1e9 * nasa["utilization"]
    label = (f"(e) NASA modeled: {nasa['macs_per_cycle']} MACs/cycle at "
             f"{nasa['clock_ghz']:g} GHz x {nasa['utilization']:.0%} assumed, "
             f"{nasa['mac_energy_pj']:g} pJ/MAC assumed, weights from DRAM every "
             f"{nasa['batch_images']} images at {nasa['dram_pj_per_byte']:g} pJ/B")
    run = SystemRun("nasa", label, "modeled", subnets, images, cell_writes=None)
    compute_s = dram_s = dram_bytes_total = 0.0
    energy_j = 0.0
    for plan in plans:
        macs = plan.dedup["macs_after"] * images
        dram_bytes = (distinct_weight_bytes(plan, nasa["weight_bits"])
                      * math.ceil(images / nasa["batch_images"]))
        group_compute_s = macs / macs_per_s
        group_dram_s = dram_bytes / (nasa["dram_gb_per_s"] * 1e9)
        group_s = max(group_compute_s, group_dram_s)
        compute_s += group_compute_s
        dram_s += group_dram_s
        dram_bytes_total += dram_bytes
        run.time_s += group_s
        energy_j += (macs * nasa["mac_energy_pj"] + dram_bytes * nasa["dram_pj_per_byte"]
                     ) / 1e12 + nasa["static_power_mw"] * 1e-3 * group_s
        run.macs_before += plan.dedup["macs_before"]
        run.macs_after += plan.dedup["macs_after"]
    run.energy_j = energy_j
    run.extra.update(compute_s=compute_s, dram_s=dram_s, dram_bytes=dram_bytes_total,
                     assumed_macs_per_cycle=nasa["macs_per_cycle"],
                     assumed_utilization=nasa["utilization"],
                     assumed_clock_ghz=nasa["clock_ghz"],
                     assumed_mac_energy_pj=nasa["mac_energy_pj"],
                     assumptions=nasa["sources"], published=nasa["published"])
    return run
