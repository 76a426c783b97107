"""dimple-stats: significance tests for the dimpled manifold model of adversarial examples.

This package is the declarative side (protocols, the claim catalogue, statistics, reports, CLI);
its core never imports torch. The compute side lives in the ``runners`` package, which the CLI's
computing commands (train, run, bench) import inside the command, after their input is checked.

The analysis API (``read_measurements``, ``test_claim``, ``analyse``, ``write_report``,
``report_run`` ...) is imported on first use, so ``import dimple_stats`` stays light for the
commands that only read protocols.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dimple_stats.claims import CATALOGUE, get_claim, list_claims
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol, load_protocol_text

if TYPE_CHECKING:  # the lazy names below, for type checkers and editors
    from dimple_stats.api import analyse, test_claim
    from dimple_stats.measurements import MeasurementsError, read_measurements, write_measurements
    from dimple_stats.measurements import validate as validate_measurements
    from dimple_stats.report import write_report
    from dimple_stats.report.run import read_run, report_run
    from dimple_stats.results import RESULT_COLUMNS
    from dimple_stats.stats_config import StatsConfig

__version__ = "0.1.0"

# name -> module that defines it (PEP 562 lazy attributes: scipy/statsmodels load on first use)
_LAZY = {
    "read_measurements": "dimple_stats.measurements",
    "write_measurements": "dimple_stats.measurements",
    "validate_measurements": "dimple_stats.measurements",
    "MeasurementsError": "dimple_stats.measurements",
    "test_claim": "dimple_stats.api",
    "analyse": "dimple_stats.api",
    "write_report": "dimple_stats.report",
    "read_run": "dimple_stats.report.run",
    "report_run": "dimple_stats.report.run",
    "RESULT_COLUMNS": "dimple_stats.results",
    "StatsConfig": "dimple_stats.stats_config",
}
_ALIASES = {"validate_measurements": "validate"}

__all__ = [
    "CATALOGUE",
    "Protocol",
    "ProtocolError",
    "get_claim",
    "list_claims",
    "load_protocol",
    "load_protocol_text",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), _ALIASES.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dimple_stats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
