"""``key.path=value`` overrides of a protocol's data: the CLI's ``--set`` and a sweep's cells.

Applied to the plain data before validation, so an override is validated like the file.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from dimple_stats.protocol.errors import ProtocolError, ProtocolIssue
from dimple_stats.protocol.yaml_reader import KeyPath, compose_yaml, fmt_path

__all__ = ["apply_overrides", "parse_overrides"]


def parse_overrides(items: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse ``key.path=value`` strings; values are YAML (``seeds=[0,1]``, ``attack.eps=0.5``).

    Values are read like a protocol file (keys as written, aliases and nesting bounded), so
    ``--set 'attack.eps={on: 2, off: 3}'`` means what the same mapping means in the file.

    >>> parse_overrides(["attack.eps=0.5", "seeds=[0, 1]", "dataset.name=mnist"])
    [('attack.eps', 0.5), ('seeds', [0, 1]), ('dataset.name', 'mnist')]
    >>> parse_overrides(["attack.eps={on: 2, off: 3}"])
    [('attack.eps', {'on': 2, 'off': 3})]
    """
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ProtocolError([ProtocolIssue(
                "--set", None, item, "an override must look like key.path=value"
            )])
        if not raw.strip():
            parsed.append((key.strip(), ""))
            continue
        try:
            value, _ = compose_yaml(raw, "--set")
        except ProtocolError as exc:
            # Lines inside a one-line value say nothing: name the override instead (and quote
            # the value cut short: it may be a megabyte of brackets).
            shown = repr(raw) if len(raw) <= 40 else repr(raw[:40]) + "..."
            raise ProtocolError([
                ProtocolIssue("--set", None, key.strip(), f"value {shown}: {issue.message}")
                for issue in exc.issues
            ]) from None
        parsed.append((key.strip(), value))
    return parsed


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[tuple[str, Any]], file: str = "--set"
) -> tuple[dict[str, Any], set[KeyPath]]:
    """Return a copy of ``data`` with overrides applied, and the key paths they set.

    A path component may itself contain dots when the mapping has such a key (claim ids do):
    the longest existing key wins. Integers index lists.
    """

    data = copy.deepcopy(data)
    touched: set[KeyPath] = set()
    for dotted, value in overrides:
        parts = dotted.split(".")
        node: Any = data
        path: list[str | int] = []
        i = 0
        while True:
            if isinstance(node, list):
                if not parts[i].lstrip("-").isdigit() or not -len(node) <= int(parts[i]) < len(node):
                    raise ProtocolError([ProtocolIssue(
                        file, None, fmt_path(path + [parts[i]]),
                        f"--set {dotted}: {parts[i]!r} is not an index of a list of {len(node)}",
                    )])
                key: str | int = int(parts[i])
                i += 1
            elif isinstance(node, dict):
                key = parts[i]
                for j in range(len(parts), i, -1):  # longest existing dotted key
                    if ".".join(parts[i:j]) in node:
                        key = ".".join(parts[i:j])
                        i = j
                        break
                else:
                    i += 1
            else:
                raise ProtocolError([ProtocolIssue(
                    file, None, fmt_path(path),
                    f"--set {dotted}: {fmt_path(path)} is a value, not a mapping",
                )])
            path.append(key)
            if i == len(parts):
                node[key] = copy.deepcopy(value)  # never share (and later mutate) the caller's
                break
            if isinstance(node, dict) and not isinstance(node.get(key), (dict, list)):
                node[key] = {}
                touched.add(tuple(path))  # created by the override: its errors point at --set
            node = node[key]
        touched.add(tuple(path))
    return data, touched
