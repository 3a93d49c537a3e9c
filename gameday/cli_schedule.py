"""`gameday schedule ...`: recurring GameDays as Temporal Schedules (contract §6).

A typer sub-app; `gameday.cli` mounts it with `app.add_typer(schedule_app, name="schedule")`.
Errors a user can cause are `UserError`s, turned into one sentence by `gameday.cli`'s main.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gameday.errors import UserError

T = TypeVar("T")

schedule_app = typer.Typer(
    no_args_is_help=True,
    help="Recurring GameDays as Temporal Schedules; every scheduled run waits for approval.",
)

ScheduleId = Annotated[str, typer.Argument(help="the schedule's id (by default the runbook's name)")]


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def _client() -> Any:
    from gameday.connection import connect
    from gameday.telemetry import setup_tracing

    setup_tracing("gameday-cli")
    return await connect()


def _user() -> str | None:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no user name in this environment
        return None


@schedule_app.command("create")
def create(
    file: Path,
    calendar: Annotated[list[str] | None, typer.Option(
        "--calendar", help='calendar JSON as `temporal schedule create --calendar` takes it, e.g. '
        '{"month":"1,4,7,10","dayOfMonth":"8-14","dayOfWeek":"TUE","hour":"14"}; repeatable')] = None,
    quarterly: Annotated[str | None, typer.Option(
        help='e.g. "2nd tuesday 14:00 Europe/Berlin": that weekday of Jan, Apr, Jul and Oct')] = None,
    monthly: Annotated[str | None, typer.Option(
        help='e.g. "last friday 09:30 UTC": that weekday of every month')] = None,
    schedule_id: Annotated[str | None, typer.Option(
        "--id", help="schedule id (default: the runbook's name)")] = None,
    time_zone: Annotated[str | None, typer.Option(
        help="IANA time zone of the calendar (default UTC)")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    note: Annotated[str | None, typer.Option(help="a note shown with the schedule")] = None,
) -> None:
    """Schedule a runbook's GameDay; each run waits for approval like any other."""
    from gameday import schedules
    from gameday.loader import load_runbook

    runbook = load_runbook(file)
    chosen = [name for name, value in (("--calendar", calendar), ("--quarterly", quarterly),
                                       ("--monthly", monthly)) if value]
    if not chosen and runbook.schedule is not None:
        own = runbook.schedule
        calendar = [json.dumps(own.calendar)] if own.calendar else None
        quarterly, monthly = own.quarterly, own.monthly
        time_zone = time_zone or own.time_zone
        chosen = ["the runbook's schedule"]
    if len(chosen) != 1:
        raise UserError("give exactly one of --calendar, --quarterly or --monthly (or a schedule: "
                        "section in the runbook)"
                        + (f" (not {' and '.join(chosen)})" if chosen else ""))
    calendars: list[Any]
    if calendar:
        calendars = [schedules.parse_calendar(text) for text in calendar]
        zone = time_zone
    else:
        preset = (schedules.quarterly_preset(quarterly) if quarterly
                  else schedules.monthly_preset(monthly or ""))
        calendars = preset.calendars
        if time_zone and preset.time_zone and time_zone != preset.time_zone:
            raise UserError(f"the preset names time zone {preset.time_zone} but --time-zone is "
                            f"{time_zone}; give one")
        zone = time_zone or preset.time_zone

    async def go() -> Any:
        client = await _client()
        handle = await schedules.create(client, runbook, str(file), calendars, schedule_id,
                                        zone, paused, note, _user())
        return await schedules.describe(client, handle.id)

    summary = _run(go())
    state = "paused" if summary.paused else "active"
    typer.echo(f"schedule {summary.id} created ({state}): GameDay {runbook.name}, "
               f"time zone {summary.time_zone}")
    _print_next(summary)
    typer.echo(f"each run waits for approval from {', '.join(runbook.approver_ids())}", err=True)


@schedule_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Every GameDay schedule: calendar, state, next runs and recent runs."""
    from gameday import schedules

    async def go() -> Any:
        return await schedules.list_schedules(await _client())

    found = _run(go())
    if as_json:
        sys.stdout.write(json.dumps([s.to_json() for s in found], indent=2) + "\n")
        return
    if not found:
        typer.echo("no GameDay schedules")
        return
    for summary in found:
        state = "paused" if summary.paused else "active"
        typer.echo(f"{summary.id}: GameDay {summary.runbook} ({state}), time zone {summary.time_zone}")
        for text in summary.calendars:
            typer.echo(f"  calendar {text}")
        if summary.note:
            typer.echo(f"  note: {summary.note}")
        _print_next(summary)
        for run in summary.recent_runs[-3:]:
            mark = " (running)" if run["workflow_id"] in summary.running else ""
            typer.echo(f"  ran {run['workflow_id']} at "
                       f"{schedules.local_time(run['started_at'], summary.time_zone)}{mark}")


def _print_next(summary: Any) -> None:
    from gameday import schedules

    if summary.paused:
        typer.echo("  paused: nothing runs until `gameday schedule unpause " + summary.id + "`")
    times = ", ".join(schedules.local_time(t, summary.time_zone) for t in summary.next_runs)
    typer.echo(f"  next runs: {times or 'none'}")


@schedule_app.command("pause")
def pause(schedule_id: ScheduleId,
          note: Annotated[str | None, typer.Option(help="why; shown with the schedule")] = None) -> None:
    """Pause a schedule: nothing starts until it is unpaused."""
    from gameday import schedules

    async def go() -> None:
        await schedules.pause(await _client(), schedule_id, note)

    _run(go())
    typer.echo(f"schedule {schedule_id} paused")


@schedule_app.command("unpause")
def unpause(schedule_id: ScheduleId,
            note: Annotated[str | None, typer.Option(help="a note shown with the schedule")] = None) -> None:
    """Unpause a schedule."""
    from gameday import schedules

    async def go() -> Any:
        client = await _client()
        await schedules.unpause(client, schedule_id, note)
        return await schedules.describe(client, schedule_id)

    summary = _run(go())
    typer.echo(f"schedule {schedule_id} unpaused")
    _print_next(summary)


@schedule_app.command("trigger")
def trigger(schedule_id: ScheduleId) -> None:
    """Start the schedule's GameDay now; print its workflow id. It waits for approval."""
    from gameday import schedules

    async def go() -> Any:
        return await schedules.trigger(await _client(), schedule_id)

    result = _run(go())
    if result.workflow_id is None:
        typer.echo(f"schedule {schedule_id} was triggered; see `gameday schedule list` for the run")
        return
    typer.echo(result.workflow_id)
    typer.echo(f"awaiting approval: gameday approve {result.workflow_id} --as <approver>", err=True)


@schedule_app.command("delete")
def delete(schedule_id: ScheduleId) -> None:
    """Delete a schedule; GameDays it already started go on."""
    from gameday import schedules

    async def go() -> None:
        await schedules.delete(await _client(), schedule_id)

    _run(go())
    typer.echo(f"schedule {schedule_id} deleted")


if __name__ == "__main__":  # `python -m gameday.cli_schedule ...`, with gameday's error handling
    from gameday import cli

    cli.app = schedule_app  # type: ignore[has-type]
    cli.main()
