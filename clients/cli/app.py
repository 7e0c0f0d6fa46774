"""The `baton` command: builds the typer app from the command modules and runs it so that every failure
ends as one line on stderr and an exit code (clients.cli.errors), never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from clients.cli.commands import dead_letters, jobs, system, workflows
from clients.cli.errors import INTERRUPTED, USAGE, CliError


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="baton",
        help="Submit, follow and manage Baton jobs, workflows and dead letters.\n\n"
        "The orchestrator's URL and API key come from --url/--key or BATON_URL/BATON_API_KEY.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    jobs.register(app)
    workflows.register(app)
    dead_letters.register(app)
    system.register(app)
    return app


def run(argv: list[str] | None = None) -> int:
    """The exit code of `baton <argv>`."""
    command = typer.main.get_command(build_app())
    try:
        result = command.main(args=argv, prog_name="baton", standalone_mode=False)
    except CliError as exc:
        return _fail(exc.message, exc.exit_code)
    except typer.TyperException as exc:  # typer's (click's) usage errors: bad options, missing arguments
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a group without a command
            ctx.get_help()  # typer's rich help prints itself
            return USAGE
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        return _fail(f"usage error: {exc.format_message()}{where}", getattr(exc, "exit_code", USAGE))
    except (KeyboardInterrupt, typer.Abort):
        return _fail("interrupted", INTERRUPTED)
    except typer.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    sys.exit(run(sys.argv[1:]))


def _fail(message: str, code: int) -> int:
    typer.echo(f"baton: error: {' '.join(message.split())}", err=True)
    return code
