"""Run every benchmark and write ``benchmarks.json`` and ``benchmarks.md``."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dimple_stats.atomic import write_text_atomic
from dimple_stats.registry import Registry
from runners.bench.core import Benchmark, machine_info

__all__ = ["BENCHMARKS", "run_benchmarks", "render_markdown"]


#: name -> ``bench_*(quick=...) -> Benchmark`` (lazy targets: each benchmark imports only its
#: own modules), in the order they run and are reported.
BENCHMARKS: Registry[str | Callable[..., Benchmark]] = Registry("benchmark")
for _name, _target in [
    ("tangent", "runners.bench.tangent:bench_tangent"),
    ("projection", "runners.bench.projection:bench_projection"),
    ("attacks", "runners.bench.attacks:bench_attacks"),
    ("end_to_end", "runners.bench.end_to_end:bench_end_to_end"),
    ("regulariser", "runners.bench.regulariser:bench_regulariser"),
    ("threads", "runners.bench.end_to_end:bench_threads"),
    ("feasible", "runners.bench.feasible:bench_feasible"),
    ("strict_tangent", "runners.bench.strict_tangent:bench_strict_tangent"),
    ("store", "runners.bench.store:bench_store"),
    ("multiverse", "runners.bench.multiverse:bench_multiverse"),
]:
    BENCHMARKS.register(_name, _target)


def run_benchmarks(*, quick: bool, out: Path, only: list[str] | None = None,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmarks and write ``out/benchmarks.json`` and ``out/benchmarks.md``.

    A benchmark that raises is recorded with its error and its targets count as NOT MET; the
    others still run.

    Parameters
    ----------
    quick : bool
        Small sizes everywhere (CI); agreement is checked exactly as in the full run.
    out : Path
        Output directory (created).
    only : list of str or None
        Names from :data:`BENCHMARKS` to run (default: all).
    log : callable
        Progress messages.

    Returns
    -------
    dict
        What ``benchmarks.json`` holds.
    """
    names = [BENCHMARKS.check(n) for n in only or BENCHMARKS]
    previous = torch.get_num_threads()
    machine = machine_info()  # before pinning: it records this machine's default thread count
    # One intra-op thread, as the runner uses per seed on CPU: on the shared 2-core machine a
    # second thread is contended, and the ratios must not depend on the neighbour's load.
    torch.set_num_threads(1)
    started = time.perf_counter()
    records: list[Benchmark] = []
    try:
        for name in names:
            log(f"bench: {name} ...")
            clock = time.perf_counter()
            try:
                record = BENCHMARKS.load(name)(quick=quick)
            except Exception as exc:  # noqa: BLE001 - record it; the other benchmarks still run
                record = Benchmark(name, name, error=f"{type(exc).__name__}: {exc}")
                record.notes.append(traceback.format_exc()[-3000:])
            record.extra["bench_seconds"] = time.perf_counter() - clock
            records.append(record)
            log(f"bench: {name} done in {record.extra['bench_seconds']:.1f} s"
                + (f" (ERROR {record.error})" if record.error else ""))
    finally:
        torch.set_num_threads(previous)
    data = {
        "quick": quick,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "total_seconds": time.perf_counter() - started,
        "all_agree": all(r.agree and r.error is None for r in records),
        "targets": [{"benchmark": r.name, **t.__dict__} for r in records for t in r.targets],
        "benchmarks": {r.name: r.to_json() for r in records},
    }
    out.mkdir(parents=True, exist_ok=True)
    if only:
        data = _merge_into_existing(out / "benchmarks.json", data)
    write_text_atomic(out / "benchmarks.json", json.dumps(data, indent=2, default=str) + "\n")
    write_text_atomic(out / "benchmarks.md", render_markdown(data))
    return data


def _merge_into_existing(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """``--only`` updates its benchmarks in an existing report instead of replacing the others.

    The merged entries get a note naming their own run's date and load (the machine section
    stays the full run's); a quick run never merges into a full one or the reverse.
    """
    if not path.is_file():
        return data
    old = json.loads(path.read_text())
    if old.get("quick") != data["quick"]:
        return data
    for name, entry in data["benchmarks"].items():
        load = data["machine"].get("load_average_at_start") or ()
        entry["notes"].append(
            f"From a separate `dimple-stats bench --only {name}` run on {data['date_utc']} "
            f"(load average at its start: {', '.join(f'{v:.2f}' for v in load)}); the machine "
            "section above is the full run's.")
        old["benchmarks"][name] = entry
    order = [n for n in BENCHMARKS if n in old["benchmarks"]]
    old["benchmarks"] = {n: old["benchmarks"][n] for n in order}
    old["targets"] = [t for n in order for t in (
        [t for t in data["targets"] if t["benchmark"] == n] if n in data["benchmarks"]
        else [t for t in old["targets"] if t["benchmark"] == n])]
    old["all_agree"] = all(b["agree"] and b["error"] is None for b in old["benchmarks"].values())
    return old


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _cell(str(value))


def _cell(text: str) -> str:
    # A bare "|" (as in |J|) would split a Markdown table cell.
    return text.replace("|", "\\|")


def _dominates(extra: dict[str, Any]) -> str:
    """One sentence naming the slowest stage and the project function most of it is spent in."""
    share = extra.get("stage_split_share", {})
    if not share:
        return ""
    stage, frac = max(share.items(), key=lambda kv: kv[1])
    text = f"**What dominates**: `{stage}`, {100 * frac:.0f}% of the seeds' time in the timed run."
    rows = {r["function"].split("(")[-1].rstrip(")"): r
            for r in extra["profile"].get("project_by_cumulative", [])}
    if "isometric_loss" in rows and "train_autoencoder" in rows:
        text += (f" Under the profiler, `isometric_loss` (the isometric regulariser, "
                 f"`torch.func.jvp`/`vjp`) takes {rows['isometric_loss']['cumtime_s']:.1f} s of "
                 f"the {rows['train_autoencoder']['cumtime_s']:.1f} s spent training the "
                 "autoencoders; see the regulariser entry for a measured fix.")
    return text


def render_markdown(data: dict[str, Any]) -> str:
    """The human-readable report of a :func:`run_benchmarks` result."""
    m = data["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `dimple-stats bench{' --quick' if data['quick'] else ''}` on "
        f"{data['date_utc']} in {data['total_seconds']:.0f} s. Each comparison runs its "
        "contenders on the same inputs in one process, interleaved, and reports medians and "
        "their ratio; results are checked to agree before a ratio counts (a target is MET only "
        "if its benchmark's agreement checks all passed).",
        "",
        "## Machine",
        "",
        "| | |", "|---|---|",
        f"| platform | {m['platform']} ({m['processor']}) |",
        f"| CPUs (os.cpu_count / usable) | {m['cpu_count']} / {m['cpus_usable']} |",
        f"| torch threads during the bench | 1 (default on this machine: {m['torch_threads']}) |",
        "| load average at start (1, 5, 15 min) | "
        + ", ".join(f"{v:.2f}" for v in (m["load_average_at_start"] or ())) + " |",
        "| versions | " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + " |",
        "",
        "## Targets",
        "",
        "| benchmark | target | goal | measured | status | how |",
        "|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(f"| {t['benchmark']} | {_cell(t['name'])} | {t['target']} | "
                     f"{_cell(t['display'])} | {'MET' if t['met'] else 'NOT MET'} | "
                     f"{_cell(t['note'])} |")
    lines.append("")
    lines.append(f"All agreement checks passed: {'yes' if data['all_agree'] else 'NO'}.")
    for name, b in data["benchmarks"].items():
        lines += ["", f"## {b['title']}", ""]
        if b.get("error"):
            lines += [f"**ERROR**: `{b['error']}`", ""]
        if b["settings"]:
            lines.append("Settings: " + "; ".join(f"{k} = {_fmt(v)}"
                                                   for k, v in b["settings"].items()) + ".")
            lines.append("")
        if b["timings"]:
            lines += ["| contender | median (s) | runs | details |", "|---|---|---|---|"]
            for label, t in b["timings"].items():
                details = ", ".join(f"{k} = {_fmt(v)}" for k, v in t.items()
                                    if k not in ("median_s", "runs_s"))
                lines.append(f"| {label} | {t['median_s']:.4g} | {len(t['runs_s'])} | "
                             f"{details} |")
            lines.append("")
        for label, r in b["ratios"].items():
            lines.append(f"- ratio {label}: **{r:.3g}**")
        if b["ratios"]:
            lines.append("")
        if b["agreement"]:
            lines += ["| agreement check | value | tolerance | ok |", "|---|---|---|---|"]
            for label, a in b["agreement"].items():
                det = f" ({a['detail']})" if a.get("detail") else ""
                lines.append(f"| {_cell(label + det)} | {a['value']:.3g} | {a['relation']} "
                             f"{a['tolerance']:.3g} | {'yes' if a['ok'] else 'NO'} |")
            lines.append("")
        extra = {k: v for k, v in b["extra"].items() if k not in ("profile",)}
        if name == "end_to_end" and "stage_split_s" in extra:
            lines += ["| stage (summed over seeds) | seconds | share |", "|---|---|---|"]
            for stage, sec in extra["stage_split_s"].items():
                lines.append(f"| {stage} | {sec:.2f} | "
                             f"{100 * extra['stage_split_share'][stage]:.0f}% |")
            lines.append(f"| report + overhead (outside the seeds) | "
                         f"{extra['report_and_overhead_s']:.2f} | |")
            lines.append("")
            extra = {k: v for k, v in extra.items()
                     if k not in ("stage_split_s", "stage_split_share", "report_and_overhead_s")}
        if "early_stop_refine" in extra:
            lines += ["| early stop + refine vs torchattacks | value |", "|---|---|"]
            for k, v in extra.pop("early_stop_refine").items():
                lines.append(f"| {k} | {_fmt(v)} |")
            lines.append("")
        for k in ("plain", "isometric"):
            if k in extra:
                r = extra.pop(k)
                lines.append(f"- {k} decoder: {r['iterations'][0]} CG iterations, residual "
                             f"{r['residual'][0]:.2e}, converged {r['converged'][0]}, "
                             f"{r['seconds']:.1f} s, "
                             f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB")
        if "profile" in b["extra"]:
            p = b["extra"]["profile"]
            lines += ["", _dominates(b["extra"])]
            lines += ["", f"Profile (cProfile) of a reduced run ({p['run']}; "
                      f"{p['seconds_under_profiler']:.1f} s under the profiler). Stage split: "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in p["stage_split_s"].items())
                      + ". Top functions by self time:", "",
                      "| function | calls | self (s) | cumulative (s) |", "|---|---|---|---|"]
            for row in p["top_by_self_time"]:
                lines.append(f"| `{row['function']}` (from `{row.get('caller', '')}`) | "
                             f"{row['calls']} | {row['tottime_s']:.2f} | {row['cumtime_s']:.2f} |")
            lines += ["", "This project's functions by cumulative time:", "",
                      "| function | calls | self (s) | cumulative (s) |", "|---|---|---|---|"]
            for row in p.get("project_by_cumulative", []):
                lines.append(f"| `{row['function']}` | {row['calls']} | {row['tottime_s']:.2f} | "
                             f"{row['cumtime_s']:.2f} |")
            lines.append("")
        for k, v in extra.items():
            lines.append(f"- {k}: {_fmt(v)}")
        for note in b["notes"]:
            lines += ["", note if "Traceback" not in note else f"```\n{note}\n```"]
    lines.append("")
    return "\n".join(lines)
