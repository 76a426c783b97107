"""Every error that user input causes is a BadInput, wherever it is raised, and the command
line turns any of them into its message and exit 2 (no traceback)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dimple_stats.errors import EXIT_BAD_INPUT, BadInput, UnknownNameError
from dimple_stats.registry import Registry


def test_user_input_errors_share_one_base() -> None:
    from dimple_stats.claims.analysis import AnalysisError
    from dimple_stats.claims.catalogue import UnknownClaimError
    from dimple_stats.measurements import MeasurementsError
    from dimple_stats.protocol import ProtocolError
    from dimple_stats.report.run import RunDirError

    for cls in (AnalysisError, UnknownClaimError, MeasurementsError, ProtocolError, RunDirError):
        assert issubclass(cls, BadInput), cls
    assert issubclass(UnknownClaimError, KeyError)  # still a lookup failure for callers


def test_runners_input_errors_are_bad_input_and_outcomes_are_not() -> None:
    pytest.importorskip("torch")
    from runners.attacks.library import MissingAttackLibrary, UnsupportedAttackOption
    from runners.datasets import DatasetConfigError, DatasetNotFoundError
    from runners.measure import MembershipError
    from runners.pipeline import UnsupportedClaimError
    from runners.training import CollapsedAutoencoderError

    for cls in (DatasetConfigError, DatasetNotFoundError, UnsupportedClaimError,
                MissingAttackLibrary, UnsupportedAttackOption):
        assert issubclass(cls, BadInput), cls
    # a computation's outcome is not the user's input: exit 1, not 2
    for cls in (MembershipError, CollapsedAutoencoderError):
        assert not issubclass(cls, BadInput), cls


def test_a_bad_input_raised_deep_in_a_command_exits_2_with_its_message() -> None:
    from dimple_stats.cli.app import app, command

    @command
    def explode() -> None:
        raise UnknownNameError("unknown widget 'x' (did you mean 'y'?)")

    try:
        out = CliRunner().invoke(app, ["explode"])
    finally:
        app.registered_commands[:] = [c for c in app.registered_commands
                                      if c.name != "explode"]
    assert out.exit_code == EXIT_BAD_INPUT, out.output
    assert "dimple-stats explode: unknown widget 'x' (did you mean 'y'?)" in out.output
    assert "Traceback" not in out.output


def test_registry_rejects_duplicates_and_suggests() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    with pytest.raises(UnknownNameError, match="did you mean 'alpha'"):
        reg["alpah"]
    with reg.registered("beta", 2):
        assert reg.names() == ("alpha", "beta")
    assert reg.names() == ("alpha",)


def test_the_command_line_prints_a_library_warning_in_one_line() -> None:
    """Issue 32 row 17 (rest): PIL's and torch's warnings printed the source line on a second
    line (and some wrap); under the command line every warning is one ``warning:`` line."""
    import subprocess
    import sys

    code = ("import sys, warnings\nsys.argv = ['dimple-stats', 'claims']\n"
            "from dimple_stats.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "warnings.warn('first part\\n    second part', UserWarning)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    lines = result.stderr.strip().splitlines()
    assert lines == ["warning: UserWarning: first part second part (<string>:8)"], result.stderr
