"""The `gameday` command line (contract §6).

One place turns every error a user can cause into one sentence on stderr and exit 1; anything
else is an internal error whose traceback goes to the log file, not the terminal.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gameday.cli_schedule import schedule_app
from gameday.errors import UserError, first_sentence, log_details
from gameday.loader import check_runbook, load_runbook
from gameday.render import console, event_line, print_plan, print_status

T = TypeVar("T")

# rich_markup_mode=None: plain help, which shows no `<bool>` type beside every flag.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Region-outage GameDays for AWS, GCP and Azure, orchestrated by Temporal.")
lab_app = typer.Typer(no_args_is_help=True, help="The local lab: Temporal, moto and the emulators.")
app.add_typer(lab_app, name="lab")
app.add_typer(schedule_app, name="schedule", help="Temporal Schedules for recurring GameDays.")

Who = Annotated[str, typer.Option("--as", help="your identity, as listed in the runbook's approvers")]
RunId = Annotated[str, typer.Argument(help="the GameDay's workflow id")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gameday")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gameday {_version()}")
        raise typer.Exit(0)


@app.callback()
def _options(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="print the version and exit")] = False,
) -> None:
    """Region-outage GameDays for AWS, GCP and Azure, orchestrated by Temporal."""


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _identity(who: str) -> str:
    """`--as` as every model stores it (contract §7): stripped and case folded, never blank."""
    from gameday.identity import normalize_identity

    normalized = normalize_identity(who)
    if not normalized:
        raise UserError("--as: an identity must not be blank")
    return normalized


async def _client() -> Any:
    from gameday.connection import connect
    from gameday.telemetry import setup_tracing

    setup_tracing("gameday-cli")
    return await connect()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# --- runbooks --------------------------------------------------------------------------------


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="runbook files")]) -> None:
    """Check runbooks; print FILE:LINE: field: message per problem and exit 1 if any."""
    problems = 0
    for path in files:
        runbook, found = check_runbook(path)
        for problem in found:
            typer.echo(str(problem))
        problems += len(found)
        if runbook is not None:
            typer.echo(f"{path}: ok ({runbook.name}, {len(runbook.all_steps())} steps)", err=True)
    raise typer.Exit(1 if problems else 0)


@app.command()
def schema() -> None:
    """Print the runbook JSON Schema, for editors."""
    from gameday.runbook import Runbook

    document = Runbook.model_json_schema(mode="validation")
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "gameday runbook"
    _print_json(document)


@app.command()
def plan(
    file: Path,
    as_json: AsJson = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a worker")] = 60,
) -> None:
    """Resolve every target (read-only), list each resource each step would change, and each
    mutating call the worker's live credentials may not make (tried as a dry run where the cloud
    offers one). Exits 1 when a step would be refused or a permission is missing."""
    from gameday import operations

    runbook = load_runbook(file)

    async def go() -> Any:
        return await operations.plan(await _client(), runbook, str(file), timeout)

    result = _run(go())
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        print_plan(result)
        for problem in result.problems:
            if first_sentence(problem) != problem.strip():
                log_details(f"gameday plan {file}: {problem}")
    raise typer.Exit(1 if result.problems or result.missing_permissions else 0)


# --- running a GameDay -----------------------------------------------------------------------

Timeout = Annotated[float, typer.Option(
    help="seconds to wait for the workflow to confirm; after that the run may still act on it")]


def _held(value: bool | None) -> str:
    return "not tested" if value is None else str(value)


def _missed(final: Any) -> list[Any]:
    """The steps whose recovery objective (`expect`) was missed."""
    return [step for step in final.steps if step.expectation_met is False]


def _wait_exit_code(final: Any) -> int:
    """Contract §6 for `run --wait`: 0 only for `completed` with the hypothesis held (or not
    tested: a runbook without a steady state) and no recovery objective missed (§10)."""
    held = final.outcome == "completed" and final.hypothesis_held is not False
    return 0 if held and not _missed(final) else 1


def _abort_hint(run_id: str) -> str:
    return f"gameday abort {run_id} --as <you> --reason '<why>'"


@app.command()
def run(
    file: Path,
    run_id: Annotated[str | None, typer.Option("--id", help="workflow id (default: name-time)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the run to its end")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait until the run has planned")] = 60,
) -> None:
    """Start a GameDay; print its id once it has planned and awaits approval.

    Exits 1 with the reason when planning fails or is refused, or when no worker answers."""
    from gameday import operations
    from gameday.status import approve_flags

    runbook = load_runbook(file)
    started: list[str] = []

    async def go() -> Any:
        client = await _client()
        handle = await operations.start_gameday(client, runbook, str(file), run_id, _user())
        started.append(handle.id)
        planned = await operations.wait_until_planned(client, handle, timeout)
        typer.echo(handle.id)
        if planned.pending_approval:
            flag = approve_flags(planned.pending_approval, runbook.approvals == "signed")
            typer.echo(f"awaiting approval: gameday approve {handle.id} --as <approver>{flag}", err=True)
        else:
            typer.echo(f"{planned.phase}: gameday status {handle.id}", err=True)
        if not wait:
            return None
        return await operations.follow(client, handle.id,
                                       lambda e: console.print(event_line(e), markup=False))

    try:
        final = _run(go())
    except KeyboardInterrupt:
        if not started:
            raise
        typer.echo(f"gameday: stopped following {started[0]}; the GameDay goes on (abort it with: "
                   f"{_abort_hint(started[0])})", err=True)
        raise typer.Exit(130) from None
    if final is None:
        return
    typer.echo(f"outcome: {final.outcome}; hypothesis held: {_held(final.hypothesis_held)}; "
               f"every fault restored: {final.restored}")
    if final.reason and final.outcome != "completed":
        typer.echo(f"reason: {first_sentence(final.reason)}")
    missed = _missed(final)
    if missed:
        typer.echo("recovery objective missed: " + "; ".join(
            f"{step.id}: {(step.expectation_note or '').removeprefix('missed: ')}" for step in missed))
    raise typer.Exit(_wait_exit_code(final))


def _user() -> str | None:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no user name in this environment
        return None


@app.command()
def approve(
    run_id: RunId,
    who: Who,
    step: Annotated[str | None, typer.Option(help="approve this step's gate, not the start")] = None,
    note: Annotated[str | None, typer.Option(help="a note for the record")] = None,
    plan_hash: Annotated[str | None, typer.Option(help="approve only this exact plan")] = None,
    sign_with: Annotated[Path | None, typer.Option(
        "--sign-with", metavar="KEYFILE",
        help="sign the approval with this SSH key (a private key, or a public key whose private key "
        "is in ssh-agent) via ssh-keygen -Y sign; implies --plan-hash")] = None,
    timeout: Timeout = 15,
) -> None:
    """Approve the start (or a gated step) of a GameDay; exit 0 only when the approval counted."""
    from gameday import operations

    approver = _identity(who)

    async def go() -> Any:
        return await operations.approve(await _client(), run_id, approver, step, note, plan_hash,
                                        timeout, sign_with=sign_with)

    typer.echo(_run(go()).detail)


@app.command()
def reject(
    run_id: RunId,
    who: Who,
    reason: Annotated[str | None, typer.Option(help="why")] = None,
    timeout: Timeout = 15,
) -> None:
    """Reject a GameDay awaiting approval: nothing more is injected, everything is restored."""
    from gameday import operations

    approver = _identity(who)

    async def go() -> Any:
        return await operations.reject(await _client(), run_id, approver, reason, timeout)

    typer.echo(_run(go()).detail)


@app.command()
def abort(
    who: Who,
    reason: Annotated[str, typer.Option(help="why; recorded in the run's events")],
    run_id: Annotated[str | None, typer.Argument(help="the GameDay's workflow id")] = None,
    every: Annotated[bool, typer.Option("--all", help="abort every running GameDay")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait until every fault is restored")] = False,
    timeout: Timeout = 15,
    restore_timeout: Annotated[float, typer.Option(
        help="with --wait or --all: seconds to wait for each run to restore and close")] = 600,
) -> None:
    """Abort a GameDay (or, with --all, every running one): every fault is restored."""
    from gameday import operations

    if every == (run_id is not None):
        raise UserError("give either a GameDay id or --all")
    by = _identity(who)
    if every:
        silent: list[str] = []

        def done(run: str, final: Any, seconds: float | None) -> None:
            if final is None:
                silent.append(run)
                typer.echo(f"{run}: did not close within {restore_timeout:.0f}s of its abort; "
                           "check its worker", err=True)
                return
            typer.echo(f"{run}: {final.outcome}, every fault restored: {final.restored} "
                       f"(abort sent → closed in {seconds:.2f}s)")

        def failed(run: str, sentence: str) -> None:
            silent.append(run)
            typer.echo(f"{run}: {sentence}", err=True)

        async def everything() -> Any:
            return await operations.abort_all(await _client(), by, reason, done, restore_timeout,
                                              on_error=failed)

        finals = _run(everything())
        if not finals and not silent:
            typer.echo("no GameDay is running")
        raise typer.Exit(0 if all(f.restored for f in finals) and not silent else 1)
    assert run_id is not None

    async def go() -> Any:
        client = await _client()
        answer = await operations.abort(client, run_id, by, reason, timeout)
        typer.echo(f"abort recorded for {run_id}: {answer.detail}; every fault will be restored")
        if not wait:
            return None
        try:
            return await asyncio.wait_for(operations.follow(client, run_id, lambda e: None),
                                          restore_timeout)
        except TimeoutError:
            raise UserError(f"GameDay {run_id} did not close within {restore_timeout:.0f}s of its "
                            f"abort; follow it with `gameday status {run_id}`") from None

    final = _run(go())
    if final is not None:
        typer.echo(f"outcome: {final.outcome}; every fault restored: {final.restored}")
        raise typer.Exit(0 if final.restored else 1)


@app.command()
def status(run_id: RunId, as_json: AsJson = False) -> None:
    """Show a GameDay's phase, steps, active faults and recent events."""
    from gameday import operations

    async def go() -> Any:
        return await operations.status(await _client(), run_id)

    current = _run(go())
    if as_json:
        _print_json(current.model_dump(mode="json"))
    else:
        print_status(run_id, current)


def _clouds(values: list[str] | None) -> list[str]:
    """`--cloud` values, checked while parsing so that a wrong one is a usage error (exit 2)."""
    from gameday.sweep import SWEEP_CLOUDS

    chosen = [value.strip().lower() for value in values or []]
    unknown = [value for value in chosen if value not in SWEEP_CLOUDS]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)} is not one of {', '.join(SWEEP_CLOUDS)}",
                                 param_hint="--cloud")
    return chosen


@app.command()
def sweep(
    restore: Annotated[bool, typer.Option("--restore", help="undo what is found")] = False,
    cloud: Annotated[list[str] | None, typer.Option(
        "--cloud", metavar="CLOUD", callback=_clouds,
        help="sweep this cloud: aws, gcp or azure (repeatable; default: every configured cloud)")] = None,
    as_json: AsJson = False,
    install_schedule: Annotated[str | None, typer.Option(
        "--install-schedule", help="instead: sweep on a Temporal Schedule every EVERY (e.g. 1h); "
        "with --restore the scheduled sweeps undo what they find")] = None,
) -> None:
    """List gameday artifacts left by runs no longer running; --restore undoes them.

    A cloud the worker has no credentials or endpoint for is named as skipped on stderr."""
    from gameday import operations

    clouds = cloud or []
    if install_schedule is not None:
        from gameday.durations import parse_duration

        try:
            every = parse_duration(install_schedule)
        except ValueError as exc:
            raise UserError(f"--install-schedule: {exc}") from exc

        async def install() -> str:
            return await operations.install_sweep_schedule(await _client(), every, restore)

        schedule_id = _run(install())
        what = "sweeps and restores" if restore else "sweeps (and only lists)"
        typer.echo(f"schedule {schedule_id} {what} every {install_schedule}")
        return

    async def go() -> Any:
        return await operations.sweep(await _client(), restore, clouds)

    found = _run(go())
    for skipped, why in found.skipped.items():
        typer.echo(f"gameday: sweep: skipped {skipped}: {why}", err=True)
    if as_json:
        _print_json(found.model_dump(mode="json"))
    else:
        for leftover in found.leftovers:
            done = " (restored)" if leftover.id in found.restored else ""
            typer.echo(f"{leftover.cloud} {leftover.location} {leftover.kind} {leftover.id}: run "
                       f"{leftover.run_id} ({leftover.run_state}), step {leftover.step_id}{done}")
        for leftover in found.in_use:
            typer.echo(f"in use by running {leftover.run_id}: {leftover.cloud} {leftover.kind} "
                       f"{leftover.id}", err=True)
        if not found.leftovers:
            typer.echo("no gameday artifacts left behind")
    for error in found.errors:
        if first_sentence(error) != error.strip():
            log_details(f"gameday sweep: {error}")
        typer.echo(f"gameday: sweep: {first_sentence(error)}", err=True)
    unrestored = restore and len(found.restored) < len(found.leftovers)
    raise typer.Exit(1 if found.errors or unrestored else 0)


@app.command()
def report(
    run_id: RunId,
    out: Annotated[Path | None, typer.Option(help="HTML file (default reports/ID.html)")] = None,
) -> None:
    """Write the post-GameDay report: a self-contained HTML page with a timeline, and JSON."""
    from gameday import operations
    from gameday.report import write_report

    async def go() -> Any:
        return await operations.status(await _client(), run_id)

    html, data = write_report(run_id, _run(go()), out)
    typer.echo(f"report: {html}\ndata: {data}")


@app.command()
def worker(
    role: Annotated[list[str] | None, typer.Option(
        "--role", metavar="ROLE",
        help="serve this role: workflows, aws, gcp or azure (repeatable; default: all)")] = None,
    split: Annotated[bool, typer.Option(
        "--split", help="one process per role, supervised; exits 1 when one of them dies")] = False,
) -> None:
    """Run the worker (the same as `python worker.py`): every role in one process by default."""
    from worker import parse_roles, serve

    serve(parse_roles(role), split)


# --- the lab ---------------------------------------------------------------------------------


@lab_app.command("up")
def lab_up(
    empty: Annotated[bool, typer.Option("--empty", help="seed no topology")] = False,
    realistic: Annotated[bool, typer.Option(
        "--realistic", help="model the clouds: per-call latency and their documented API rate "
                            "limits, over-limit calls answered as each cloud does")] = False,
) -> None:
    """Start the lab in the background and seed its topology."""
    from gameday.lab.manager import Lab

    lab = Lab.default()
    info = lab.up(seed=not empty, realistic=realistic)
    typer.echo(f"lab is up: Temporal {info['temporal']}, UI {info['ui']}"
               + (" (realistic: latency and rate limits)" if realistic else ""))
    typer.echo('point your shell at it: eval "$(gameday lab env)"')


@lab_app.command("status")
def lab_status(as_json: AsJson = False) -> None:
    """What runs in the lab and where."""
    from gameday.lab.manager import Lab

    info = Lab.default().status()
    if as_json:
        _print_json(info)
        return
    for key, value in info.items():
        if key != "env":
            typer.echo(f"{key}: {value}")


@lab_app.command("env")
def lab_env() -> None:
    """The lab's variables as `export` lines, for eval "$(gameday lab env)"."""
    from gameday.lab.manager import Lab

    for key, value in Lab.default().status()["env"].items():
        typer.echo(f"export {key}={_shell_quote(value)}")


@lab_app.command("down")
def lab_down() -> None:
    """Stop everything the lab started."""
    from gameday.lab.manager import Lab

    stopped = Lab.default().down()
    typer.echo(f"lab is down ({stopped} processes stopped)")


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


# --- one place for errors ----------------------------------------------------------------------


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Click's usage and file errors, from the click installed and the copy typer bundles: typer
    ≥ 0.20 raises the exceptions of its own `typer._click`, which the installed click's
    `ClickException` does not match."""
    import click

    found: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as BundledClickException
    except ImportError:
        pass
    else:
        found.append(BundledClickException)
    return tuple(found)


def main() -> None:
    """Run the CLI and exit with its status, before the interpreter's own shutdown: the Temporal
    SDK can abort a finalizing interpreter (sdk-python#300) and turn success into exit 134."""
    code = 0
    try:
        _main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    usage_errors = _usage_errors()
    try:
        code = app(prog_name="gameday", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except UserError as exc:
        message = str(exc)
        if first_sentence(message) != message.strip():
            log_details(f"gameday {' '.join(sys.argv[1:])}: {message}")
        typer.echo(f"gameday: {first_sentence(message)}", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("gameday: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except usage_errors as exc:  # unknown command or option, missing argument: usage, exit 2
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:
        log = log_details(f"gameday {' '.join(sys.argv[1:])}: internal error\n{traceback.format_exc()}")
        where = f" (details in {log})" if log else ""
        typer.echo(f"gameday: internal error: {first_sentence(str(exc)) or type(exc).__name__}{where}",
                   err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
