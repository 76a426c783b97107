"""Protocols: the declarative description of a test run, loaded strictly from YAML."""

from dimple_stats.protocol.errors import ProtocolError, ProtocolIssue
from dimple_stats.protocol.loader import load_protocol, load_protocol_text
from dimple_stats.protocol.schema import Protocol

__all__ = ["Protocol", "ProtocolError", "ProtocolIssue", "load_protocol", "load_protocol_text"]
