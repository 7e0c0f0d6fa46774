"""The `baton` console script of pyproject runs the CLI, as `python -m clients.cli` does."""

from __future__ import annotations

import sys
import tomllib

from tests.cli.helpers import ROOT, Baton


def console_script() -> tuple[str, ...]:
    """What pip's `baton` launcher runs: the [project.scripts] entry point, imported and called."""
    module, _, function = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["baton"].partition(
        ":"
    )
    return (sys.executable, "-c", f"import sys; from {module} import {function}; sys.argv[0] = 'baton'; {function}()")


async def test_the_console_script_and_the_module_are_the_same_command() -> None:
    script = Baton("http://127.0.0.1:9", "k", console_script())
    module = Baton("http://127.0.0.1:9", "k", in_process=False)

    for baton in (script, module):
        ran = await baton("--help")
        assert ran.code == 0, ran
        assert "Usage: baton [OPTIONS] COMMAND [ARGS]..." in ran.out
        for command in ("submit", "jobs", "status", "cancel", "retry", "workflows", "dead-letters", "health"):
            assert f" {command} " in ran.out, (command, ran.out)
    ran = await script("jobs", "--url", "nonsense")
    assert (ran.code, ran.err) == (2, "baton: error: --url must look like http://host:port, got 'nonsense'\n")
