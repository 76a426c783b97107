"""Load a protocol file: safe YAML with line numbers, strict keys, overrides, readable errors.

PyYAML's ``safe_load`` forgets where values came from and lets a repeated key silently win, so the
loader composes the node tree itself (still with the safe constructors), records the source line of
every key path and refuses duplicate keys. Validation is pydantic's; its error locations are mapped
back onto the YAML (dropping discriminator tags pydantic inserts) to name file, line and key path,
the allowed values and the nearest valid name.
"""

from __future__ import annotations

import os
import re
import stat
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from dimple_stats.claims.entry import ClaimEntry, entry_model
from dimple_stats.plugins import load_plugins
from dimple_stats.protocol.errors import ProtocolError, ProtocolIssue
from dimple_stats.protocol.overrides import apply_overrides, parse_overrides
from dimple_stats.protocol.schema import AutoencoderConfig, LiveDatasets, Protocol, dataset_union
from dimple_stats.protocol.yaml_reader import (
    MAX_DEPTH,
    MAX_VALUES,
    KeyPath,
    compose_yaml,
    decode_text,
    fmt_path,
)
from dimple_stats.strict_model import KEYED
from dimple_stats.suggest import closest

#: The largest protocol file read (the shipped ones are 1-5 kB).
MAX_PROTOCOL_BYTES = 1_000_000

__all__ = ["MAX_DEPTH", "MAX_VALUES", "apply_overrides", "decode_text", "load_protocol",
           "load_protocol_text", "parse_overrides"]

_UNION_TYPES = (Union, types.UnionType)


# --------------------------------------------------------------------------- error mapping

def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) is typing.Annotated:
        return _unwrap_optional(get_args(tp)[0])
    if tp is ClaimEntry:  # validated with the catalogue's item model as registered now
        return entry_model()
    if get_origin(tp) in _UNION_TYPES:
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _unwrap_optional(members[0])
    return tp


def _model_fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def _tag_values(member: type[BaseModel], discriminator: str) -> tuple[str, ...]:
    return tuple(get_args(_unwrap_optional(member.model_fields[discriminator].annotation)))


def _walk_loc(loc: Sequence[str | int]) -> tuple[KeyPath, list[Any]]:
    """Drop pydantic's discriminator tags from ``loc``; also return the type at each data level."""
    tp: Any = Protocol
    discriminator: str | None = None
    path: list[str | int] = []
    types: list[Any] = [tp]
    for elem in loc:
        tp = _unwrap_optional(tp)
        members = get_args(tp) if get_origin(tp) in _UNION_TYPES else ()
        if discriminator and members:
            chosen = next((m for m in members if elem in _tag_values(m, discriminator)), None)
            tp, discriminator = chosen, None
            types[-1] = chosen
            continue  # a tag, not a key of the data
        discriminator = None
        path.append(elem)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = _model_fields_by_key(tp).get(str(elem))
            tp = field.annotation if field else None
            discriminator = field.discriminator if field else None  # type: ignore[assignment]
            if field is not None and LiveDatasets in field.metadata:
                # validated against the datasets registered now, tagged by `name`
                tp, discriminator = dataset_union(), "name"
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) in (tuple, list):
            args = get_args(tp)
            tp = args[0] if len(args) == 2 and args[1] is Ellipsis else (
                args[elem] if isinstance(elem, int) and elem < len(args) else None)
        else:
            tp = None
        types.append(tp)
    return tuple(path), types


def _allowed_keys(tp: Any) -> tuple[str, ...]:
    tp = _unwrap_optional(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tuple(_model_fields_by_key(tp))
    return ()


def _literal_values(tp: Any) -> tuple[str, ...]:
    tp = _unwrap_optional(tp)
    if get_origin(tp) is Literal:
        return tuple(str(a) for a in get_args(tp))
    return ()


def _line_for(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _origin_for(path: KeyPath, overridden: set[KeyPath]) -> str | None:
    for end in range(len(path), 0, -1):
        if path[:end] in overridden:
            return f"--set {fmt_path(path[:end])}"
    return None


def _issue_from_error(
    err: dict[str, Any], file: str, lines: dict[KeyPath, int], overridden: set[KeyPath]
) -> ProtocolIssue:
    kind = err["type"]
    path, types = _walk_loc(err["loc"])
    allowed: tuple[str, ...] = ()
    suggestion = None
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == KEYED:  # raised by the section's model: the key is in its context
        path = path + (err["ctx"]["field"],)
        message = str(err["ctx"]["what"])
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(types[-2] if len(types) >= 2 else None)
        suggestion = closest(str(path[-1]), allowed)
        message = "unknown key"
    elif kind == "missing":
        allowed = _allowed_keys(types[-2] if len(types) >= 2 else None)
        message = "required key is missing"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = err.get("ctx", {})
        disc = str(ctx.get("discriminator", "")).strip("'")
        allowed = tuple(re.findall(r"'([^']*)'", str(ctx.get("expected_tags", ""))))
        path = path + (disc,) if disc else path
        if kind == "union_tag_invalid":
            suggestion = closest(str(ctx.get("tag", "")), allowed)
            message = f"unknown value {ctx.get('tag')!r}"
        else:
            message = f"required key {disc!r} is missing"
    elif kind in ("literal_error", "enum"):
        allowed = _literal_values(types[-1])
        suggestion = closest(str(err.get("input")), allowed)
        message = f"invalid value {err.get('input')!r}"
    line = None if _origin_for(path, overridden) else _line_for(path, lines)
    return ProtocolIssue(
        file=file,
        line=line,
        path=fmt_path(path),
        message=message,
        allowed=allowed,
        suggestion=suggestion,
        origin=_origin_for(path, overridden),
    )


# --------------------------------------------------------------------------- cross-field checks

#: The most weights a protocol's model may have: (65536, 65536, 65536) hidden widths passed
#: the per-layer bound and asked for 34 GB of weights, refused only by the allocator after the
#: data loaded. 2**28 weights train in about 4 GiB (weights, gradients, Adam's two moments).
MAX_WEIGHTS = 1 << 28


def _weights_at_least(hidden: tuple[int, ...], pixels: int | None) -> int:
    """A lower bound on a model's weights from its widths: each layer joins consecutive widths
    (a convolution's kernel only multiplies that), and a dense model's first layer reads every
    pixel (``pixels``, when known)."""
    widths = ([pixels] if pixels else []) + list(hidden)
    return sum(a * b for a, b in zip(widths, widths[1:]))


def _semantic_issues(protocol: Protocol) -> list[tuple[KeyPath, str]]:
    """Checks that span sections; each returns the key path it concerns and a message."""
    found: list[tuple[KeyPath, str]] = []
    synthetic = protocol.dataset.name in ("synthetic", "linear_subspace")
    classes = protocol.dataset.classes
    count, shape = protocol.dataset.known_shape()
    pixels = None if shape is None else shape[0] * shape[1] * shape[2]
    in_use = len(classes) if classes is not None else count
    train = protocol.dataset.train_samples
    if train is not None and in_use is not None and train < in_use:
        found.append((("dataset", "train_samples"),
                      f"{train} training images cannot cover the {in_use} classes in use"))
    models = [(("classifier", "hidden"), protocol.classifier.hidden,
               protocol.classifier.arch == "mlp")]
    models += [(("autoencoders", name, "hidden"), ae.hidden, ae.arch == "mlp")
               for name, ae in protocol.autoencoders.items() if ae.hidden]
    for key, hidden, dense in models:
        weights = _weights_at_least(hidden, pixels if dense else None)
        if weights > MAX_WEIGHTS:
            found.append((key, f"widths {list(hidden)} make at least {weights:,} weights "
                          f"(at most {MAX_WEIGHTS:,}: about {MAX_WEIGHTS * 16 // 2**30} GiB "
                          "to train with Adam); use narrower or fewer layers"))
    for name, ae in protocol.autoencoders.items():
        if pixels is not None and ae.latent_dim is not None and ae.latent_dim >= pixels:
            found.append((("autoencoders", name, "latent_dim"),
                          f"latent_dim {ae.latent_dim} must be smaller than the "
                          f"{protocol.dataset.name} image dimension {pixels}"))
        if ae.train_classes and count is not None and classes is None:
            extra = sorted(c for c in ae.train_classes if c >= count)
            if extra:
                found.append((("autoencoders", name, "train_classes"),
                              f"{extra} are not classes of {protocol.dataset.name} "
                              f"(ids 0-{count - 1})"))
        if ae.arch == "oracle" and not synthetic:
            found.append((("autoencoders", name, "arch"),
                          "arch 'oracle' (the true generator) needs dataset synthetic or linear_subspace"))
        if ae.train_classes and classes is not None:
            extra = sorted(set(ae.train_classes) - set(classes))
            if extra:
                found.append((("autoencoders", name, "train_classes"),
                              f"classes {extra} are not in dataset.classes {list(classes)}"))
    if protocol.attack.base == "manifold" and protocol.tangent.at == "encoder":
        found.append((("tangent", "at"),
                      "attack.base manifold attacks from D(z*), so its tangent space is at z* "
                      "(nearest); tangent.at encoder applies only with attack.base image"))
    if protocol.attack.base == "image" and protocol.attack.on_manifold == "latent":
        found.append((("attack", "on_manifold"),
                      "the latent on-manifold attack starts at D(z*), so its norms compare with "
                      "the others only when they start there too: set attack.base manifold, or "
                      "attack.on_manifold tangent with attack.base image"))
    eps = protocol.attack.eps
    if "dmm.off_succeeds_more" in protocol.claim_ids and eps["on"] != eps["off"]:
        # Success rates compare only at one budget: otherwise the test measures the budgets.
        found.append((("attack", "eps"),
                      f"claim dmm.off_succeeds_more compares on- and off-manifold success rates, "
                      f"so eps.on ({eps['on']:g}) and eps.off ({eps['off']:g}) must be equal"))
    for i, entry in enumerate(protocol.claims):
        if entry.id == "iso.plain_vs_isometric":
            found += [((("claims", i, entry.id) + tail), msg)
                      for tail, msg in _plain_vs_iso_issues(entry.options, protocol.autoencoders)]
        if entry.id == "dmm.gradient_perpendicular" and \
                getattr(entry.options, "null", None) in ("pca", "data_random"):
            found.append((("claims", i, entry.id, "null"),
                          f"null {entry.options.null!r} is measured for the attack perturbation "
                          "only (r_PCA, r_Rdata); use it with dmm.perpendicular, or null "
                          "random_subspace | other_image | beta here"))
    return found


def _file_issues(protocol: Protocol) -> list[tuple[KeyPath, str]]:
    """Checkpoint paths that name no readable regular file (a run would fail after loading the
    data, or after training the other models)."""
    wanted: list[tuple[KeyPath, str]] = []
    if protocol.classifier.checkpoint:
        wanted.append((("classifier", "checkpoint"), protocol.classifier.checkpoint))
    wanted += [(("autoencoders", name, "checkpoint"), ae.checkpoint)
               for name, ae in protocol.autoencoders.items() if ae.checkpoint]
    found = []
    for path, value in wanted:
        target = Path(value).expanduser()
        if not target.is_file() or not os.access(target, os.R_OK):
            why = "is a folder" if target.is_dir() else (
                "is not readable" if target.exists() else "does not exist")
            found.append((path, f"checkpoint {value} {why} (relative paths are read from "
                                f"{os.getcwd()})"))
    return found


def _plain_vs_iso_issues(
    options: Any, autoencoders: dict[str, AutoencoderConfig]
) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    for role, kinds in (("plain", ("none",)), ("isometric", ("isometric", "irvae"))):
        given = getattr(options, role)
        if given is not None and given not in autoencoders:
            hint = closest(given, autoencoders)
            out.append(((role,), f"no autoencoder named {given!r}"
                        + (f" (did you mean {hint!r}?)" if hint else "")
                        + f"; protocol has: {', '.join(autoencoders)}"))
        elif given is None and not any(ae.regulariser.kind in kinds for ae in autoencoders.values()):
            out.append(((role,), f"needs an autoencoder with regulariser kind {' or '.join(kinds)}, "
                        f"or name one with `{role}: <name>`"))
    return out


# --------------------------------------------------------------------------- sweeps

def _members(tp: Any) -> list[Any]:
    """The models a field may hold: the type itself, or each member of a union."""
    tp = _unwrap_optional(tp)
    if get_origin(tp) in _UNION_TYPES:
        return [_unwrap_optional(m) for m in get_args(tp) if m is not type(None)]
    return [tp]


def sweep_path_problem(path: str, data: Any) -> str | None:
    """Why the dotted ``path`` names no field of a protocol (with "did you mean"), or None.

    Walks the schema (so a field left at its default may be swept) and, for mappings keyed by
    the user (``autoencoders``), the protocol's own keys; list items are named by index.

    >>> sweep_path_problem("autoencoders.plain.latnt_dim", {"autoencoders": {"plain": {}}})
    "unknown key 'latnt_dim' under 'autoencoders.plain' (did you mean 'latent_dim'?)"
    >>> sweep_path_problem("classifier.adversarial.eps", {}) is None
    True
    """
    from dimple_stats.suggest import did_you_mean

    types: list[Any] = [Protocol]
    parts = path.split(".")
    done: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        where = f" under {'.'.join(done)!r}" if done else ""
        models = [m for m in types if isinstance(m, type) and issubclass(m, BaseModel)]
        if models:
            fields: dict[str, Any] = {}
            for m in models:  # a union (a regulariser, a dataset) offers every member's keys
                for key, f in _model_fields_by_key(m).items():
                    fields.setdefault(key, f)
            if part not in fields:
                return f"unknown key {part!r}{where}{did_you_mean(part, fields)}"
            field = fields[part]
            types = (_members(dataset_union()) if LiveDatasets in field.metadata
                     else _members(field.annotation))
            data = data.get(part) if isinstance(data, dict) else None
            done.append(part)
            i += 1
            continue
        containers = [t for t in types if get_origin(t) in (dict, tuple, list)]
        if not containers:
            return f"{'.'.join(done)!r} is a value, not a mapping: {'.'.join(parts[i:])!r} cannot follow it"
        origin = get_origin(containers[0])
        if origin is dict:
            keys = list(data) if isinstance(data, dict) else []
            # a key may contain dots: the longest existing one wins (as in --set)
            key = next((".".join(parts[i:j]) for j in range(len(parts), i, -1)
                        if ".".join(parts[i:j]) in keys), None)
            if key is None:
                return (f"no {'.'.join(done)} entry named {part!r}{did_you_mean(part, keys)}; "
                        f"have: {', '.join(map(str, keys)) or '(none)'}")
            data = data[key]
            types = _members(get_args(containers[0])[1])
            done.append(key)
            i += len(key.split("."))
            continue
        items = data if isinstance(data, list) else []
        if not part.lstrip("-").isdigit() or not -len(items) <= int(part) < len(items):
            return f"{part!r} is not an index of {'.'.join(done)!r} ({len(items)} items)"
        if done == ["claims"]:
            return None  # a claim's options: the cells' own validation checks what follows
        data = items[int(part)]
        args = get_args(containers[0])
        types = _members(args[0])
        done.append(part)
        i += 1
    return None


def _sweep_issues(protocol: Protocol, data: dict[str, Any], file: str,
                  lines: dict[KeyPath, int]) -> list[ProtocolIssue]:
    """Swept paths that name no field, and cells whose protocol is invalid (each distinct
    problem once, with the first cell that has it)."""
    sweep = protocol.sweep
    assert sweep is not None
    issues = []
    for section, paths in (("grid", sweep.grid), ("zip", sweep.zip)):
        for path in paths:
            problem = sweep_path_problem(path, data)
            if problem:
                issues.append(ProtocolIssue(file, _line_for(("sweep", section, path), lines),
                                            fmt_path(("sweep", section, path)), problem))
    if issues:
        return issues
    # The cells are the validated protocol with their values set (defaults filled in, as
    # Protocol.cell_protocols builds them): a swept attack.eps.on keeps the default plain/off.
    base = protocol.model_dump(mode="json", by_alias=True, exclude={"sweep"})
    seen: set[str] = set()
    for choices in sweep.cells():
        cell, _ = apply_overrides(base, list(choices.items()), file)
        shown = ", ".join(f"{p}={v!r}" for p, v in choices.items())
        try:
            validated = Protocol.model_validate(cell)
        except ValidationError as exc:
            for err in exc.errors():
                issue = _issue_from_error(err, file, {}, set())
                message = f"{issue.path}: {issue.message}"
                if message in seen:
                    continue
                seen.add(message)
                key = _swept_key(sweep, choices, issue.path)
                issues.append(ProtocolIssue(
                    file, _line_for(key, lines), fmt_path(key),
                    f"the cell {shown} is not a valid protocol: {message}",
                    allowed=issue.allowed, suggestion=issue.suggestion))
            continue
        # The checks that span sections, as for the base protocol (eps.on == eps.off for
        # dmm.off_succeeds_more, ...): a cell may break one the base keeps.
        for path, msg in _semantic_issues(validated):
            message = f"{fmt_path(path)}: {msg}"
            if message in seen:
                continue
            seen.add(message)
            key = _swept_key(sweep, choices, fmt_path(path))
            issues.append(ProtocolIssue(file, _line_for(key, lines), fmt_path(key),
                                        f"the cell {shown} is not a valid protocol: {message}"))
    return issues


def _swept_key(sweep: Any, choices: dict[str, Any], path: str) -> KeyPath:
    """The ``sweep`` key path of the swept path an error at ``path`` comes from."""
    def within(a: str, b: str) -> bool:
        return a == b or a.startswith(b + ".")

    swept = next((p for p in choices if within(path, p) or within(p, path)), None) or next(
        (p for p in choices if path.split(".")[0] == p.split(".")[0]), None)
    if swept is None:
        return ("sweep",)
    return ("sweep", "grid" if swept in sweep.grid else "zip", swept)


# --------------------------------------------------------------------------- entry points

def load_protocol_text(
    text: str, file: str = "<string>", overrides: Sequence[str] = (), *,
    check_files: bool = False,
) -> Protocol:
    """Validate protocol YAML given as text. Raises :class:`ProtocolError` listing every issue.

    ``check_files``: also require every checkpoint path to name a readable file (relative paths
    from the current directory), as a run will; off for text not tied to a place."""
    load_plugins()  # installed plugins' claims, attacks and datasets are names a protocol may use
    data, lines = compose_yaml(text, file)
    if data is None:
        raise ProtocolError([ProtocolIssue(file, 1, "", "the protocol file is empty")])
    if not isinstance(data, dict):
        raise ProtocolError([ProtocolIssue(file, 1, "", "a protocol must be a mapping of keys")])
    data, overridden = apply_overrides(data, parse_overrides(overrides), file)
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # pydantic also reports "too short" for a list whose items failed; the item errors say why.
        errors = [e for e in errors if not (e["type"] == "too_short" and any(
            o is not e and tuple(o["loc"][: len(e["loc"])]) == tuple(e["loc"]) for o in errors))]
        issues = [_issue_from_error(e, file, lines, overridden) for e in errors]
        issues.sort(key=lambda i: (i.line is None, i.line or 0, i.path))
        raise ProtocolError(issues) from None
    semantic = _semantic_issues(protocol) + (_file_issues(protocol) if check_files else [])
    if semantic:
        raise ProtocolError([
            ProtocolIssue(file, None if _origin_for(p, overridden) else _line_for(p, lines),
                          fmt_path(p), msg, origin=_origin_for(p, overridden))
            for p, msg in semantic
        ])
    if protocol.sweep is not None:
        sweep_issues = _sweep_issues(protocol, data, file, lines)
        if sweep_issues:
            raise ProtocolError(sweep_issues)
    return protocol


def load_protocol(path: str | Path, overrides: Sequence[str] = ()) -> Protocol:
    """Load and validate a protocol file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    overrides : sequence of str
        ``key.path=value`` strings applied before validation (the CLI's ``--set``).

    Raises
    ------
    ProtocolError
        With one :class:`ProtocolIssue` per problem, each naming file, line and key path.
    """
    file = str(path)

    def refuse(why: str) -> ProtocolError:
        return ProtocolError([ProtocolIssue(file, None, "", why)])

    try:
        # Regular files only, and no more than MAX_PROTOCOL_BYTES of one: /dev/zero would fill
        # the memory, and a FIFO without a writer would block forever (opened non-blocking,
        # then checked before any read).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise refuse("not a regular file (a device, pipe or folder); name a .yaml file")
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(MAX_PROTOCOL_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_PROTOCOL_BYTES:
        raise refuse(f"larger than {MAX_PROTOCOL_BYTES // 1_000_000} MB: not a protocol")
    return load_protocol_text(decode_text(data, file), file=file, overrides=overrides,
                              check_files=True)
