"""The report's plain-language front: the verdicts as Markdown (``summary.md`` and the top of
``results.md``) and the banner of a reduced run.

Everything here is generated from the results table and the run's manifest; nothing is typed
in by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from dimple_stats.report.verdicts import CATEGORIES, Verdict, verdicts
from dimple_stats.results import MIN_SEEDS_RANDOM

if TYPE_CHECKING:
    from dimple_stats.protocol.schema import Protocol

__all__ = ["SUMMARY_FILE", "reduced_run", "reduced_run_notes", "summary_head", "verdict_lines",
           "tally", "to_summary"]

SUMMARY_FILE = "summary.md"


def reduced_run_notes(manifest: Mapping[str, Any] | None,
                      protocol: Protocol | None = None) -> list[str]:
    """Why a run is smaller than its protocol (``--limit``, fewer seeds); empty for a full run.

    >>> reduced_run_notes({"limit": 20, "seeds": [0]}, None)
    ['--limit 20: at most 20 evaluation images per seed, fewer than the protocol asks for.']
    """
    if not manifest:
        return []
    notes = []
    limit = manifest.get("limit")
    asked = getattr(protocol.dataset, "eval_samples", None) if protocol is not None else None
    # A limit at or above the protocol's eval_samples selects every image it asks for.
    if limit is not None and not (isinstance(asked, int) and limit >= asked):
        notes.append(f"--limit {limit}: at most {limit} evaluation images per seed, fewer than "
                     "the protocol asks for.")
    ran = list(manifest.get("seeds") or [])
    if protocol is not None and ran and set(protocol.seeds) - set(ran):
        notes.append(f"{len(ran)} of the protocol's {len(protocol.seeds)} seeds ran "
                     f"({', '.join(map(str, ran))}).")
    return notes


def reduced_run(manifest: Mapping[str, Any] | None,
                protocol: Protocol | None = None) -> str:
    """The reduced-run banner of summary.md and results.md ("" for the protocol's full run).

    >>> print(reduced_run({"limit": 20, "seeds": [0]}, None))
    Reduced run: --limit 20: at most 20 evaluation images per seed, fewer than the protocol ...
    >>> reduced_run({"limit": None, "seeds": [0, 1]})
    ''
    """
    notes = reduced_run_notes(manifest, protocol)
    if not notes:
        return ""
    return ("Reduced run: " + " ".join(notes) + " Not a record: re-run with the protocol's "
            "seeds and without --limit.")


def tally(found: Sequence[Verdict]) -> str:
    """'2 supported, 1 contradicted, 1 uninformative' (categories in their fixed order)."""
    counts = pd.Series([v.category for v in found], dtype=object).value_counts()
    return ", ".join(f"{int(counts[c])} {c}" for c in CATEGORIES if c in counts) or "no tests"


def verdict_lines(found: Sequence[Verdict]) -> list[str]:
    """One Markdown list item per verdict: bold category, the claim's words, then the text."""
    lines = []
    for v in found:
        whom = [a for a in (v.autoencoder if v.autoencoder not in ("-", "") else "", v.scope)
                if a]
        who = f" ({'; '.join(whom)})" if whom else ""
        claim = f"{v.hypothesis} " if v.hypothesis else ""
        # With several nulls the head names each one's reading, in words of the four verdicts.
        nulls = getattr(v, "null_readings", lambda: [])()
        each = (" (" + "; ".join(f"{reading} {names}" for reading, names in nulls) + ")"
                if nulls else "")
        lines.append(f"- **{v.category.capitalize()}**{each}: `{v.claim}`{who}: {claim}{v.body}")
    return lines


def summary_head(title: str, manifest: Mapping[str, Any] | None,
                 protocol: Protocol | None) -> list[str]:
    """summary.md's first lines: the title, the reduced-run banner and the question."""
    lines = [f"# {title}", ""]
    banner = reduced_run(manifest, protocol)
    if banner:
        lines += [f"> **{banner}**", ""]
    if protocol is not None and protocol.description.strip():
        lines += [" ".join(protocol.description.split()), ""]
    return lines


def to_summary(results: pd.DataFrame, *, title: str = "dimple-stats results",
               manifest: Mapping[str, Any] | None = None, protocol: Protocol | None = None,
               confidence: float | None = None) -> str:
    """``summary.md``: the question, the reduced-run banner, the verdicts; no tables (a
    sweep's is :func:`dimple_stats.report.sweep_text.sweep_summary`)."""
    found = verdicts(results, confidence=confidence)
    lines = summary_head(title, manifest, protocol)
    lines += [f"## Verdicts ({tally(found)})", ""]
    lines += verdict_lines(found) or ["No tested claim."]
    if len(results):
        alpha = float(results["alpha"].iloc[0])
        lines += ["", f"How to read these: each verdict reads the pooled row(s) of its claim. "
                  f"Supported: H0 rejected at alpha = {alpha:g} after the run's multiplicity "
                  "adjustment. Contradicted: significant the other way at the same standard "
                  "(the test turned round, Bonferroni over the run's pooled tests) with the "
                  "confidence interval entirely on the other side of the null. Uninformative: "
                  "too censored, too few samples or no p-value. The scope says whom a verdict "
                  f"is about: with {MIN_SEEDS_RANDOM} seeds or more, training runs (random "
                  "effects, Hartung-Knapp t(S - 1)); with fewer, these S models (images the "
                  "unit). Each CI is at the level its decision used. Numbers: results.md "
                  "(every row) and results.csv (every column)."]
    return "\n".join(lines) + "\n"
