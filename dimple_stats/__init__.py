"""dimple-stats: significance tests for the dimpled manifold model of adversarial examples.

This package is the declarative side (protocols, the claim catalogue, statistics, reports, CLI) and
never imports torch at module level; the compute side lives in the ``runners`` package.
"""

from dimple_stats.claims import CATALOGUE, get_claim, list_claims
from dimple_stats.protocol import Protocol, ProtocolError, load_protocol, load_protocol_text

__version__ = "0.1.0"

__all__ = [
    "CATALOGUE",
    "Protocol",
    "ProtocolError",
    "get_claim",
    "list_claims",
    "load_protocol",
    "load_protocol_text",
    "__version__",
]
