"""The evaluation: one NAS workload through ENASA's flow and through the baselines.

``enasa bench`` runs it; :func:`run_evaluation` is the Python entry point. What is
measured (CPU wall times) and what is modeled (everything on crossbars, by the target's
cost model) is kept apart in every result.
"""

from __future__ import annotations

from .run import BenchConfig, quick_config, run_evaluation

__all__ = ["BenchConfig", "quick_config", "run_evaluation"]
