"""A protocol's ``sweep:`` section: the analyst's choices as a grid of specifications.

A sweep names protocol fields by dotted path and the values each takes. ``grid`` crosses every
path with every other (paths in alphabetical order, the first varying slowest); ``zip`` varies
its paths together (all its lists have one length) and counts as one more axis of the grid.
``exclude`` lists combinations not to run (a cell that has every ``path: value`` of an entry is
left out): pairs of choices that only make sense together, such as ``attack.base: image``
needing ``attack.on_manifold: tangent``. Each remaining combination is a *cell*: the base
protocol with those values set, validated like any protocol. Cells share every stage they can
through the artifact store, because store keys are built from the configuration a stage reads,
not from the protocol: a classifier is trained once for every latent size k.

Multiplicity across the grid (``family``):

* ``claim`` (default): the tested pooled rows of one claim across every cell (every variant and
  autoencoder) form one family, and its per-seed rows another, adjusted with the protocol's
  ``stats.correction`` (Holm by default). A claim's verdict across the grid is then read at a
  family-wise error rate over all the specifications it was tested in, and claims do not
  dilute one another.
* ``grid``: every tested pooled row of every claim and cell is one family, every per-seed row
  another (the strictest).
* ``cell``: each cell is its own family, as if it were run alone (no correction for the sweep;
  the specification curve then shows unadjusted-for-the-sweep decisions and says so).

Examples
--------
>>> s = SweepConfig(grid={"autoencoders.plain.latent_dim": (4, 8), "attack.method": ("pgd",)})
>>> [cell["autoencoders.plain.latent_dim"] for cell in s.cells()]
[4, 8]
>>> SweepConfig(zip={"a.b": (1, 2), "c.d": ("x", "y")}).cells()
[{'a.b': 1, 'c.d': 'x'}, {'a.b': 2, 'c.d': 'y'}]
>>> s = SweepConfig(grid={"a.b": (1, 2), "c.d": ("x", "y")}, exclude=({"a.b": 2, "c.d": "x"},))
>>> s.cells(), s.n_cells
([{'a.b': 1, 'c.d': 'x'}, {'a.b': 1, 'c.d': 'y'}, {'a.b': 2, 'c.d': 'y'}], 3)
>>> cell_label({"autoencoders.plain.latent_dim": 4, "classifier.adversarial": None},
...            ["autoencoders.plain.latent_dim", "classifier.adversarial"])
'latent_dim=4, adversarial=none'
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dimple_stats.protocol.datasets import Frozen

__all__ = ["MAX_CELLS", "NOT_SWEPT", "SweepConfig", "cell_label", "format_choice", "labelled_choices",
           "short_names"]

#: Top-level protocol fields a sweep cannot vary, and why (each cell would be the same run).
NOT_SWEPT = {
    "name": "the run's name is one", "description": "the run's question is one",
    "seeds": "every cell runs the protocol's seeds (they are the replications, not a choice)",
    "stats": "the sweep is analysed with one statistics setting (multiplicity spans the grid)",
    "device": "where a cell runs does not change what it measures",
    "executor": "where a cell runs does not change what it measures",
    "report": "the sweep writes one report", "sweep": "a sweep does not nest",
}

#: Cells a sweep may have: a grid is a product, and a typo (a list of 1,000 values) should be
#: refused before it schedules a week of compute.
MAX_CELLS = 1_000


class SweepConfig(Frozen):
    """The grid (and zip) of protocol fields a run sweeps; see the module notes."""

    grid: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict, description="dotted.path: [values]; every combination is a cell.")
    zip: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict, description="dotted.path: [values], varied together (equal "
        "lengths): one more axis of the grid.")
    exclude: tuple[dict[str, Any], ...] = Field(
        default=(), description="Combinations not to run: a cell with every dotted.path: value "
        "of an entry is left out (choices that only make sense in some pairs).")
    family: Literal["claim", "grid", "cell"] = Field(
        "claim", description="Multiplicity family across the grid: each claim's rows over all "
        "cells (claim, the default), every row of the sweep (grid), or each cell alone (cell); "
        "adjusted with stats.correction.")

    @field_validator("grid", "zip", mode="after")
    @classmethod
    def _canonical_order(cls, paths: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        # Cells are numbered in the grid's path order, and a run directory stores its protocol
        # as JSON with sorted keys: sorting here numbers the cells of a protocol read from YAML
        # and of the same protocol read back from a manifest alike (a report re-rendered from
        # a run directory labelled cells by another order than the run had measured them).
        return dict(sorted(paths.items()))

    @model_validator(mode="after")
    def _shape(self) -> SweepConfig:
        if not self.grid and not self.zip:
            raise ValueError("a sweep needs at least one path under grid or zip")
        for section, paths in (("grid", self.grid), ("zip", self.zip)):
            for path, values in paths.items():
                if not values:
                    raise ValueError(f"{section}.{path}: needs at least one value")
                encoded = [_encoded(v) for v in values]
                if len(set(encoded)) != len(encoded):
                    raise ValueError(f"{section}.{path}: values repeat ({list(values)})")
        both = sorted(set(self.grid) & set(self.zip))
        if both:
            raise ValueError(f"paths in both grid and zip: {', '.join(both)}")
        paths = [*self.grid, *self.zip]
        nested = [(a, b) for a in paths for b in paths if a != b and b.startswith(a + ".")]
        if nested:
            a, b = nested[0]
            raise ValueError(f"{b} lies inside {a}: one cell would set both, and the later "
                             "would silently change the earlier's value; sweep one of them")
        fixed = [p for p in paths if p.split(".")[0] in NOT_SWEPT]
        if fixed:
            raise ValueError(f"{fixed[0]} cannot be swept: {NOT_SWEPT[fixed[0].split('.')[0]]}")
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError("every zip list must have the same length; got "
                             + ", ".join(f"{p}: {len(v)}" for p, v in self.zip.items()))
        if self._product() > 10 * MAX_CELLS:  # before listing the cells (a typo can be huge)
            raise ValueError(f"the sweep has {self._product()} cells; at most {MAX_CELLS}")
        for i, entry in enumerate(self.exclude):
            if not entry:
                raise ValueError(f"exclude[{i}]: names no path (it would leave out every cell)")
            for path, value in entry.items():
                swept = self.grid.get(path, self.zip.get(path))
                if swept is None:
                    raise ValueError(f"exclude[{i}].{path}: not a swept path (the sweep's paths: "
                                     f"{', '.join(self.paths)})")
                if _encoded(value) not in {_encoded(v) for v in swept}:
                    raise ValueError(f"exclude[{i}].{path}: {value!r} is not among its swept "
                                     f"values {list(swept)}")
            if not any(_matches(cell, entry) for cell in self._all_cells()):
                raise ValueError(f"exclude[{i}]: matches no cell ({entry})")
        if not self.cells():
            raise ValueError("exclude leaves out every cell")
        if self.n_cells > MAX_CELLS:
            raise ValueError(f"the sweep has {self.n_cells} cells; at most {MAX_CELLS}")
        return self

    @property
    def paths(self) -> list[str]:
        """Swept paths in order: grid paths, then zip paths."""
        return [*self.grid, *self.zip]

    @property
    def n_cells(self) -> int:
        """How many cells run (the grid's product less the excluded combinations)."""
        return len(self.cells())

    def cells(self) -> list[dict[str, Any]]:
        """Every cell's choices, ``{path: value}``, the grid's paths in alphabetical order with
        the first varying slowest; the combinations ``exclude`` names are left out."""
        return [c for c in self._all_cells() if not any(_matches(c, e) for e in self.exclude)]

    def _product(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n * (len(next(iter(self.zip.values()))) if self.zip else 1)

    def _all_cells(self) -> list[dict[str, Any]]:
        zipped = [dict(zip(self.zip, row)) for row in zip(*self.zip.values())] or [{}]
        out = []
        for combo in itertools.product(*self.grid.values()):
            for extra in zipped:
                out.append({**dict(zip(self.grid, combo)), **extra})
        return out


def _encoded(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _matches(cell: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether ``cell`` takes every ``path: value`` of an ``exclude`` entry."""
    return all(_encoded(cell[p]) == _encoded(v) for p, v in entry.items())


def format_choice(value: Any) -> str:
    """A swept value as a short, stable string (``None`` -> ``none``, mappings inline).

    >>> format_choice({"norm": "l2", "eps": 1.0})
    'eps=1 norm=l2'
    >>> format_choice(0.5), format_choice(None), format_choice([1, 2])
    ('0.5', 'none', '[1, 2]')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={format_choice(v)}" for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_choice(v) for v in value) + "]"
    return str(value)


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """Each dotted path's shortest suffix that no other path ends with.

    >>> names = short_names(["autoencoders.a.latent_dim", "autoencoders.b.latent_dim",
    ...                      "attack.method"])
    >>> list(names.values())
    ['a.latent_dim', 'b.latent_dim', 'method']
    """
    out = {}
    for path in paths:
        parts = path.split(".")
        for take in range(1, len(parts) + 1):
            suffix = ".".join(parts[-take:])
            if not any(o != path and (o == suffix or o.endswith("." + suffix)) for o in paths):
                break
        out[path] = suffix
    return out


def cell_label(choices: Mapping[str, Any], paths: Sequence[str]) -> str:
    """``name=value, ...`` of a cell, named by :func:`short_names`; paths that end in the same
    field and take the same value (a zip of the same setting on two autoencoders) are named
    once, by that field.

    >>> cell_label({"autoencoders.a.latent_dim": 4, "autoencoders.b.latent_dim": 4,
    ...             "attack.method": "fmn"},
    ...            ["attack.method", "autoencoders.a.latent_dim", "autoencoders.b.latent_dim"])
    'method=fmn, latent_dim=4'
    """
    return ", ".join(f"{name}={value}" for name, value in labelled_choices(choices, paths))


def labelled_choices(choices: Mapping[str, Any], paths: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, value)`` of a cell's choices as :func:`cell_label` shows them."""
    names = short_names(paths)
    groups: dict[tuple[str, str], list[str]] = {}
    for p in paths:
        groups.setdefault((p.split(".")[-1], format_choice(choices[p])), []).append(p)
    out = []
    for (field, value), members in groups.items():
        if len(members) > 1 and field not in {p.split(".")[-1] for p in paths
                                              if p not in members}:
            out.append((field, value))
        else:
            out += [(names[p], value) for p in members]
    return out
