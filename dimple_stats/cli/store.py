"""``dimple-stats store``: list, verify, remove and garbage-collect stored artifacts (no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dimple_stats.cli.app import EXIT_RUN_FAILED, app, command, fail
from dimple_stats.cli.options import StoreOption

__all__ = ["store_app"]

store_app = typer.Typer(
    help="Inspect and repair the artifact store: ls, verify, rm, gc.", no_args_is_help=True)
app.add_typer(store_app, name="store")


def _open(root: Path | None):  # noqa: ANN202 - the return type lives in runners (lazy import)
    from runners.store import ArtifactStore

    store = ArtifactStore(root)
    if not store.root.is_dir():
        raise fail(f"--store: no store at {store.root}")
    return store


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@command(group=store_app, prefix="dimple-stats store")
def ls(
    store: StoreOption = None,
    stage: Annotated[str | None, typer.Option(help="Only this stage, e.g. measure.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list instead of lines.")
                       ] = False,
) -> None:
    """What is stored: key, size, when, and which protocol and seed made it."""
    from runners.store_maintenance import describe, inventory

    entries = inventory(_open(store), stage)
    if as_json:
        typer.echo(json.dumps([describe(e) for e in entries], indent=2))
        return
    for e in entries:
        typer.echo(f"{e.key}  {_size(e.bytes):>9}  {e.created[:19]}  {e.origin}")
    typer.echo(f"{len(entries)} artifact(s), {_size(sum(e.bytes for e in entries))}")


@command(group=store_app, prefix="dimple-stats store")
def verify(store: StoreOption = None) -> None:
    """Re-hash every stored file against its record; list the damage (exit 1 if any)."""
    from runners.store_maintenance import damaged

    opened = _open(store)
    found = damaged(opened)
    for key, problems in found.items():
        typer.echo(f"damaged {key}: {'; '.join(problems)}")
    if found:
        typer.echo(f"{len(found)} damaged; remove them with `dimple-stats store rm --damaged "
                   f"--store {opened.root}` and rerun to recompute", err=True)
        raise typer.Exit(EXIT_RUN_FAILED)
    typer.echo(f"all {sum(1 for _ in opened.keys())} artifact(s) intact")


@command(group=store_app, prefix="dimple-stats store")
def rm(
    keys: Annotated[list[str] | None, typer.Argument(
        help="Keys as printed by ls and by errors, e.g. train_classifier/3fa9c2d1e0b4a786.",
        show_default=False)] = None,
    damaged_: Annotated[bool, typer.Option("--damaged", help="Remove every damaged artifact "
                                           "and unpublished leftover.")] = False,
    store: StoreOption = None,
) -> None:
    """Remove artifacts; the next run recomputes them."""
    from runners.artifacts import ArtifactKey
    from runners.store_maintenance import damaged

    if not keys and not damaged_:
        raise fail("dimple-stats store rm: name keys or --damaged")
    opened = _open(store)
    parsed = []
    for text in keys or ():
        try:
            key = ArtifactKey.parse(text)
        except ValueError as exc:
            raise fail(f"dimple-stats store rm: {exc}") from None
        if not opened.path(key).is_dir():
            raise fail(f"dimple-stats store rm: no artifact {key} in {opened.root}")
        parsed.append(key)
    for key in parsed:
        opened.remove(key)
        typer.echo(f"removed {key}")
    if damaged_:
        leftovers = {f"{d.parent.name}/{d.name}": d for d in opened.leftovers()}
        for text in damaged(opened):
            if text in leftovers:
                opened.remove_leftover(leftovers[text])
            else:
                opened.remove(ArtifactKey.parse(text))
            typer.echo(f"removed {text}")


@command(group=store_app, prefix="dimple-stats store")
def gc(
    reports: Annotated[list[Path] | None, typer.Option(
        "--reports", help="Report folders whose manifests say what to keep (repeatable; "
        "default: reports).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; remove "
                                          "nothing.")] = False,
    min_age: Annotated[float, typer.Option(
        "--min-age", min=0, help="Spare artifacts younger than this many hours (a run still "
        "going has not written its manifest).")] = 6.0,
    force: Annotated[bool, typer.Option(
        "--force", help="Go on although some manifests do not list artifacts (reports written "
        "before manifests did: what they used would be removed).")] = False,
    store: StoreOption = None,
) -> None:
    """Remove every artifact that no report manifest (manifest.json ``artifacts``) uses, and
    the temporary folders of killed writers."""
    from runners.store_maintenance import manifests_under, referenced_keys, unreferenced

    folders = reports or [Path("reports")]
    manifests = manifests_under(folders)
    opened = _open(store)
    keep, silent = referenced_keys(manifests)
    where = ", ".join(map(str, folders))
    if not keep:
        raise fail(f"dimple-stats store gc: no manifest under {where} lists artifacts "
                   f"({len(manifests)} manifest(s) found, {silent} from before manifests listed "
                   "them); refusing to empty the store. Remove artifacts with "
                   "`dimple-stats store rm` instead")
    if silent and not force:
        raise fail(f"dimple-stats store gc: {silent} of {len(manifests)} manifest(s) under "
                   f"{where} do not list their artifacts (written before manifests did), so "
                   "what they used cannot be told apart; rerun those reports, or pass --force")
    if not dry_run:
        for path in opened.clean_stale():
            typer.echo(f"removed stale temporary folder {path.parent.name}/{path.name}")
    drop = unreferenced(opened, keep, min_age_s=min_age * 3600)
    for entry in drop:
        if not dry_run:
            opened.remove(entry.key)
        typer.echo(f"{'would remove' if dry_run else 'removed'} {entry.key}  "
                   f"{_size(entry.bytes)}  {entry.origin}")
    typer.echo(f"{'would free' if dry_run else 'freed'} {_size(sum(e.bytes for e in drop))} "
               f"({len(drop)} artifact(s)); kept {len(keep)} used by {len(manifests) - silent} "
               f"manifest(s)")
