"""Protocol errors that say where (file, line, key path) and what would have been valid."""

from __future__ import annotations

from dataclasses import dataclass, field

from dimple_stats.errors import BadInput

__all__ = ["ProtocolIssue", "ProtocolError"]


@dataclass(frozen=True)
class ProtocolIssue:
    """One problem in a protocol file.

    ``line`` is 1-based; None when the value came from a ``--set`` override or has no source line.
    """

    file: str
    line: int | None
    path: str
    message: str
    allowed: tuple[str, ...] = ()
    suggestion: str | None = None
    origin: str | None = None

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.path or '<top level>'}: {self.message}"
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        if self.origin:
            text += f" [from {self.origin}]"
        if self.allowed:
            shown = ", ".join(self.allowed)
            text += f"\n    allowed: {shown}"
        return text


@dataclass
class ProtocolError(BadInput):
    """A protocol failed to load or validate; holds every issue found, not just the first."""

    issues: list[ProtocolIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(issue.format() for issue in self.issues)
