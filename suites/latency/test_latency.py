"""Latency: the packaged latency gate (``bluegreen:latency``), run as the reference stack's suite.

The gate is generic (the settings' critical paths and latency budgets, the colours' preview
routes), so the reference stack runs the package's own tests here rather than a copy of them;
see :mod:`pytest_bluegreen.gates.latency.test_latency`.
"""

from __future__ import annotations

from pytest_bluegreen.gates.latency.test_latency import (
    _runs,
    latency,
    test_new_colour_within_budget,
    test_no_errors,
    test_no_regression_against_live_colour,
)

__all__ = [
    "_runs",
    "latency",
    "test_new_colour_within_budget",
    "test_no_errors",
    "test_no_regression_against_live_colour",
]
