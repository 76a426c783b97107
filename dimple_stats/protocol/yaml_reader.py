"""Safe, bounded YAML with line numbers: the protocol's text as plain data and the source line
of every key path.

PyYAML's ``safe_load`` forgets where values came from and lets a repeated key silently win, so
this module composes the node tree itself (still with the safe constructors), records the line
of every key path and alias, refuses duplicate keys, and bounds what a document may expand to
(aliases) and how deep it may nest, so a hostile file is refused at once instead of exhausting
memory or the recursion limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from dimple_stats.protocol.errors import ProtocolError, ProtocolIssue

__all__ = ["MAX_DEPTH", "MAX_VALUES", "KeyPath", "compose_yaml", "decode_text", "fmt_path"]

KeyPath = tuple[str | int, ...]


#: Values a document may expand to, aliases included. Protocols have a few hundred; the bound
#: refuses an alias bomb ("billion laughs": nine nested aliases of nine items each expand to
#: 9^9 values) while it is still cheap, instead of building it until memory runs out.
MAX_VALUES = 100_000
#: Nesting depth of mappings and lists a document may have (protocols nest about five deep);
#: deeper nesting would exhaust Python's recursion limit in PyYAML's composer and in ``build``.
MAX_DEPTH = 100


class _Refused(Exception):
    """A document too big or too deep to build, found while composing (the file is not known)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 demands ``1.0e-3``), refuses
    nesting deeper than :data:`MAX_DEPTH` and records the line of every alias."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        # An alias node is the anchored node itself, whose marks are the anchor's: the alias's
        # own line is kept here, by where it is used: (id(sequence), index) for a list item,
        # (id(key node), None) for a mapping value.
        self.alias_lines: dict[tuple[int, int | None], int] = {}
        # The pairs of each mapping as written, before merge keys added theirs (by id(node)).
        self.written: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}
        self.flattening: set[int] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if isinstance(index, yaml.Node):
                self.alias_lines[(id(index), None)] = event.start_mark.line + 1
            elif isinstance(index, int):
                self.alias_lines[(id(parent), index)] = event.start_mark.line + 1
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        if self.depth >= MAX_DEPTH:
            raise _Refused(event.start_mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels")
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Merge keys copy the merged pairs into the mapping. PyYAML releases that copy a mapping
        # once per listing (`<<: [*a, *a, ...]`) multiply them like aliases when nested, before
        # ``build`` counts anything (6.0.4 lists each pair once; ``pyyaml>=6`` allows older ones).
        if id(node) in self.flattening:  # `a: &a {<<: *a}` would recurse until the stack ends
            raise _Refused(node.start_mark.line + 1, "merge key `<<` merges a mapping into itself")
        self.written.setdefault(id(node), list(node.value))
        self.flattening.add(id(node))
        try:
            super().flatten_mapping(node)
        finally:
            self.flattening.discard(id(node))
        if len(node.value) > MAX_VALUES:
            raise _Refused(node.start_mark.line + 1, f"the document expands to more than "
                           f"{MAX_VALUES:,} values (merge keys `<<` repeat what they merge)")


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


#: The tags a protocol's values may carry: YAML's plain scalars, lists and mappings, as
#: resolved without a tag (dates and merge keys included), never an application's type.
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in (
    "null", "bool", "int", "float", "str", "seq", "map", "timestamp", "merge"))


def fmt_path(path: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _key_of(node: yaml.Node) -> str | None:
    """Keys are names: take their text as written.

    YAML 1.1 would turn the keys ``null``, ``on`` and ``off`` into None, True and False, and the
    protocol uses all three as option names (``{null: beta}``, ``eps: {on: 10, off: 10}``).
    """
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _yaml_issue(exc: yaml.YAMLError, text: str, file: str) -> ProtocolIssue:
    """The issue of a PyYAML error: its line from the mark, or from the reader's position."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return ProtocolIssue(file, mark.line + 1 if mark else None, "",
                             f"invalid YAML: {exc.problem or exc}")
    if isinstance(exc, yaml.reader.ReaderError):
        # Control characters (NUL, BEL, ...): the reader gives an offset, not a mark.
        line = text.count("\n", 0, exc.position) + 1
        return ProtocolIssue(file, line, "", f"invalid YAML: character U+{exc.character:04X} is not "
                             f"allowed ({exc.reason}; at offset {exc.position})")
    return ProtocolIssue(file, None, "", f"invalid YAML: {exc}")


def compose_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML into plain Python data plus a map from key path to 1-based source line.

    Aliases are expanded (each use builds its own copy, so an override of one path never
    changes another), at most :data:`MAX_VALUES` values in all and :data:`MAX_DEPTH` levels deep.

    >>> compose_yaml("a: &x [1, 2]\\nb: *x\\n", "p.yaml")[0]
    {'a': [1, 2], 'b': [1, 2]}
    >>> compose_yaml("a: &x [1, *x]\\n", "p.yaml")
    Traceback (most recent call last):
    ...
    dimple_stats.protocol.errors.ProtocolError: p.yaml:1: a.1: alias refers to a value that contains it
    """
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader checks every character up front
        raise ProtocolError([_yaml_issue(exc, text, file)]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise ProtocolError([_yaml_issue(exc, text, file)]) from None
        except _Refused as exc:
            raise ProtocolError([ProtocolIssue(file, exc.line, "", exc.message)]) from None
        except RecursionError:  # the bound above failed to hold: the caller's stack was deep
            raise ProtocolError([ProtocolIssue(
                file, None, "", f"nesting deeper than {MAX_DEPTH} levels")]) from None
        if root is None:  # no document: the caller says what that means
            return None, {(): 1}
        lines: dict[KeyPath, int] = {(): root.start_mark.line + 1}
        issues: list[ProtocolIssue] = []
        built = 0
        # Aliases being expanded, outermost first: (line of the alias, path it is used at).
        aliases: list[tuple[int, KeyPath]] = []
        open_nodes: set[int] = set()  # collections being built: an alias to one is a cycle
        checked: set[int] = set()  # mappings whose written keys were checked for duplicates

        def refuse(line: int | None, path: KeyPath, message: str) -> ProtocolError:
            return ProtocolError([ProtocolIssue(file, line, fmt_path(path), message)])

        def build_child(node: yaml.Node, path: KeyPath, alias_line: int | None) -> Any:
            if alias_line is None:
                return build(node, path)
            aliases.append((alias_line, path))
            try:
                return build(node, path)
            finally:
                aliases.pop()

        def build(node: yaml.Node, path: KeyPath) -> Any:
            nonlocal built
            built += 1
            if node.tag not in _PLAIN_TAGS:
                # PyYAML's safe constructors drop a tag on a list or mapping and keep the value
                # (`hidden: !!python/object/apply:os.system [32]` read as [32]): nothing runs,
                # but a protocol that names code must not pass as valid.
                raise refuse(node.start_mark.line + 1, path,
                             f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not "
                             "allowed: a protocol holds plain values (remove the tag)")
            if built > MAX_VALUES:
                if aliases:
                    line, where = aliases[0]
                    raise refuse(line, where, f"the document expands to more than {MAX_VALUES:,} "
                                 "values through aliases (each *alias repeats the value it names, "
                                 "nested aliases multiply)")
                raise refuse(node.start_mark.line + 1, path,
                             f"the document has more than {MAX_VALUES:,} values")
            if isinstance(node, yaml.ScalarNode):
                try:
                    return loader.construct_object(node, deep=True)
                except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
                    reason = str(exc).split(":")[0]
                    raise refuse(node.start_mark.line + 1, path,
                                 f"cannot read the value ({reason})") from None
            if id(node) in open_nodes:
                line = aliases[-1][0] if aliases else node.start_mark.line + 1
                raise refuse(line, path, "alias refers to a value that contains it")
            if len(path) >= MAX_DEPTH:  # aliases nest what they name deeper than it is written
                raise refuse(aliases[0][0] if aliases else node.start_mark.line + 1, path,
                             f"nesting deeper than {MAX_DEPTH} levels")
            open_nodes.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return build_mapping(node, path)
                return build_sequence(node, path)
            finally:
                open_nodes.discard(id(node))

        def build_mapping(node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
            loader.flatten_mapping(node)
            if id(node) not in checked:  # once: each use of an alias would report them again
                checked.add(id(node))
                seen: dict[Any, int] = {}
                for key_node, _ in loader.written.get(id(node), node.value):
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = _key_of(key_node)
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        issues.append(ProtocolIssue(
                            file, line, fmt_path(path + (key,)),
                            f"duplicate key (first given on line {seen[key]}); "
                            "a repeated key would silently override the first",
                        ))
                    seen.setdefault(key, line)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = _key_of(key_node)
                if key is None:
                    issues.append(ProtocolIssue(
                        file, key_node.start_mark.line + 1, fmt_path(path),
                        "keys must be plain names, not lists or mappings",
                    ))
                    continue
                lines.setdefault(path + (key,), key_node.start_mark.line + 1)
                out[key] = build_child(value_node, path + (key,),
                                       loader.alias_lines.get((id(key_node), None)))
            return out

        def build_sequence(node: yaml.SequenceNode, path: KeyPath) -> list[Any]:
            items = []
            for i, item in enumerate(node.value):
                lines.setdefault(path + (i,), item.start_mark.line + 1)
                items.append(build_child(item, path + (i,), loader.alias_lines.get((id(node), i))))
            return items

        try:
            data = build(root, ())
        except yaml.YAMLError as exc:
            raise ProtocolError([_yaml_issue(exc, text, file)]) from None
        except _Refused as exc:
            raise ProtocolError([ProtocolIssue(file, exc.line, "", exc.message)]) from None
        except RecursionError:
            raise ProtocolError([ProtocolIssue(
                file, None, "", f"nesting deeper than {MAX_DEPTH} levels")]) from None
        if issues:
            raise ProtocolError(issues)
        return data, lines
    finally:
        loader.dispose()


def decode_text(data: bytes, file: str) -> str:
    """``data`` as UTF-8 text, or a :class:`ProtocolError` naming the first byte that is not.

    >>> decode_text(b"name: q\\n\\xff\\n", "p.yaml")
    Traceback (most recent call last):
    ...
    dimple_stats.protocol.errors.ProtocolError: p.yaml:2: <top level>: not UTF-8 text (invalid byte 0xff ...
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ProtocolError([ProtocolIssue(
            file, line, "", f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        )]) from None
