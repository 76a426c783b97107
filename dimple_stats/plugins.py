"""Extensions from installed packages: the ``dimple_stats.plugins`` entry-point group.

A package that adds a claim, an attack or a dataset declares one entry point in this group,
naming a module (its registrations run when it is imported) or a function of no arguments (it
is called). The command line loads every such entry point in its own process, and each executor
loads them again in every worker (a spawned process-pool worker or a Ray worker starts with the
built-in registries only), so a plugin's names resolve wherever a protocol is validated::

    # pyproject.toml of the plugin package
    [project.entry-points."dimple_stats.plugins"]
    my_claims = "my_package.dimple_claims"

A name registered at run time in one process only (``CATALOGUE.register`` in a script) is not
seen by the workers of ``--executor processes`` or ``ray``; the workers say so in one line.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

from dimple_stats.errors import BadInput

__all__ = ["GROUP", "PluginError", "load_plugins"]

#: The entry-point group plugins declare.
GROUP = "dimple_stats.plugins"

#: The entry points this process has loaded (name -> "module:attr"), so that loading twice
#: (the command line, then a protocol loader, then a worker) registers nothing twice.
_loaded: dict[str, str] = {}


class PluginError(BadInput):
    """An installed plugin that fails to import or to register (exit 2, naming it)."""

    section = "plugin"


def load_plugins() -> dict[str, str]:
    """Load every entry point of :data:`GROUP` not yet loaded in this process; returns all
    loaded ones (name -> value).

    Raises
    ------
    PluginError
        A plugin's import or registration raised; the message names the entry point and the
        distribution that declares it.

    Examples
    --------
    >>> isinstance(load_plugins(), dict)
    True
    """
    for point in entry_points(group=GROUP):
        key = f"{point.name}={point.value}"
        if key in _loaded.values():
            continue
        try:
            loaded = point.load()
            if callable(loaded) and not inspect.ismodule(loaded) and not inspect.isclass(loaded):
                loaded()
        except Exception as exc:  # any failure of third-party code: one line naming it
            source = getattr(point.dist, "name", None) or "an installed package"
            raise PluginError(
                f"plugin {point.name!r} ({point.value}, from {source}) failed to load: "
                f"{type(exc).__name__}: {exc}; fix or uninstall that package") from None
        _loaded[point.name] = key
    return {name: key.split("=", 1)[1] for name, key in _loaded.items()}
