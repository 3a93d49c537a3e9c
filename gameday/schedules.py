"""Recurring GameDays as Temporal Schedules (contract §6 `gameday schedule ...`).

A schedule's action starts `GameDayWorkflow` with the runbook as it was when the schedule was
created; the run then waits for approval like any other. Calendars are given in the JSON form of
`temporal schedule create --calendar` (parsed here exactly as the server parses it) or as presets
such as "2nd tuesday 14:00 Europe/Berlin" (quarterly: the first month of each quarter).

Policies: overlap SKIP (never two runs of one schedule at once: a start while a run is still open
is dropped, not queued) and a short catch-up window, so that a quarter missed while Temporal was
down does not fire late.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleListActionStartWorkflow,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from gameday.config import Settings
from gameday.errors import UserError
from gameday.operations import RUNBOOK_ATTRIBUTE, WORKFLOW, start_options, static_refusals
from gameday.runbook import Runbook
from gameday.status import GameDayInput

CATCHUP_WINDOW = timedelta(minutes=10)
OVERLAP = ScheduleOverlapPolicy.SKIP

# --- calendars in the `temporal schedule create --calendar` JSON form --------------------------

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH_NAMES = ["january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAY_NAMES = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
_YEARS = (2000, 2100)  # what the Temporal server accepts

# JSON key -> (ScheduleCalendarSpec attribute, default text, lowest, highest)
_FIELDS: dict[str, tuple[str, str, int, int]] = {
    "second": ("second", "0", 0, 59),
    "minute": ("minute", "0", 0, 59),
    "hour": ("hour", "0", 0, 23),
    "dayOfMonth": ("day_of_month", "*", 1, 31),
    "month": ("month", "*", 1, 12),
    "year": ("year", "*", *_YEARS),
    "dayOfWeek": ("day_of_week", "*", 0, 7),
}
_ALIASES = {"day_of_month": "dayOfMonth", "day_of_week": "dayOfWeek"}


def _name_value(text: str, key: str) -> int | None:
    word = text.lower()
    if key == "month":
        for names in (_MONTHS, _MONTH_NAMES):
            if word in names:
                return names.index(word) + 1
    if key == "dayOfWeek":
        for names in (_DAYS, _DAY_NAMES):
            if word in names:
                return names.index(word)
    return None


def _value(text: str, key: str, low: int, high: int) -> int:
    named = _name_value(text, key)
    if named is not None:
        return named
    if not re.fullmatch(r"\d+", text):
        what = {"month": " or a month name like JAN", "dayOfWeek": " or a day name like TUE"}
        raise UserError(f"calendar field {key}: {text!r} is not a number{what.get(key, '')}")
    number = int(text)
    if not low <= number <= high:
        raise UserError(f"calendar field {key}: {number} is not in range {low}-{high}")
    return number


def _ranges(text: str, key: str) -> list[ScheduleRange]:
    """One field's text ("1,4,7,10", "8-14", "TUE", "*", "*/15", "1-5/2", "3/6") as ranges."""
    _, _, low, high = _FIELDS[key]
    text = text.replace(" ", "")
    if text == "*" and key == "year":
        return []  # every year
    ranges: list[ScheduleRange] = []
    for part in text.split(","):
        if not part:
            raise UserError(f"calendar field {key}: empty item in {text!r}")
        step = 1
        stepped = "/" in part
        if stepped:
            part, _, step_text = part.partition("/")
            if not re.fullmatch(r"\d+", step_text) or int(step_text) < 1:
                raise UserError(f"calendar field {key}: the step in {text!r} must be a positive "
                                "whole number")
            step = int(step_text)
        start, end = low, high
        if part != "*":
            if "-" in part:
                first, _, last = part.partition("-")
                start, end = _value(first, key, low, high), _value(last, key, low, high)
                if end < start:
                    raise UserError(f"calendar field {key}: range {part!r} ends before it starts")
            else:
                start = _value(part, key, low, high)
                end = high if stepped else start  # "3/6": from 3 to the end, every 6th
        elif key == "dayOfWeek":
            end = 6
        if key == "dayOfWeek" and end == 7:  # 7 is Sunday again, as in cron
            if start > 0 and (7 - start) % step == 0:
                ranges.append(ScheduleRange(0))
            end = 6
            if start > end:
                continue
        ranges.append(ScheduleRange(start, end, step))
    return ranges


def parse_calendar(text: str) -> ScheduleCalendarSpec:
    """A calendar in `temporal schedule create --calendar` JSON, e.g.
    {"month":"1,4,7,10","dayOfMonth":"8-14","dayOfWeek":"TUE","hour":"14"}.

    Fields: second, minute, hour, dayOfMonth, month, year, dayOfWeek, comment. Omitted: second,
    minute and hour are 0, the others match every value. Every field must match (day of month
    AND day of week, unlike cron).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"the calendar is not valid JSON ({exc.msg} at character {exc.pos}); "
                        """write it like {"dayOfWeek":"TUE","hour":"14"}""") from exc
    if not isinstance(document, dict):
        raise UserError("the calendar must be a JSON object like {\"dayOfWeek\":\"TUE\",\"hour\":\"14\"}")
    values: dict[str, str] = {}
    comment: str | None = None
    for raw_key, raw in document.items():
        key = _ALIASES.get(raw_key, raw_key)
        if key == "comment":
            if not isinstance(raw, str):
                raise UserError("calendar field comment must be a string")
            comment = raw or None
            continue
        if key not in _FIELDS:
            known = ", ".join([*_FIELDS, "comment"])
            raise UserError(f"calendar field {raw_key} is unknown; the fields are {known}")
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            raise UserError(f"calendar field {key} must be a string like \"1,4,7,10\", \"8-14\" "
                            "or \"*\"")
        values[key] = raw.strip()
    fields: dict[str, Any] = {}
    for key, (attribute, default, _, _) in _FIELDS.items():
        fields[attribute] = tuple(_ranges(values.get(key) or default, key))
    return ScheduleCalendarSpec(**fields, comment=comment)


def format_calendar(calendar: ScheduleCalendarSpec) -> str:
    """The calendar back in the JSON form `parse_calendar` reads, defaults left out."""
    document: dict[str, str] = {}
    for key, (attribute, default, low, high) in _FIELDS.items():
        text = _format_ranges(getattr(calendar, attribute), key, low, high)
        if text != default and not (default == "*" and text == ""):
            document[key] = text
    if calendar.comment:
        document["comment"] = calendar.comment
    return json.dumps(document, separators=(",", ":"))


def _format_ranges(ranges: Sequence[ScheduleRange], key: str, low: int, high: int) -> str:
    if key == "dayOfWeek":
        high = 6
    if not ranges:
        return "*" if key == "year" else ""
    parts = []
    for r in ranges:
        if r.start == low and r.end == high:
            text = "*"
        elif r.start == r.end:
            text = _format_value(r.start, key)
        else:
            text = f"{_format_value(r.start, key)}-{_format_value(r.end, key)}"
        parts.append(text if r.step == 1 else f"{text}/{r.step}")
    return ",".join(parts)


def _format_value(value: int, key: str) -> str:
    if key == "dayOfWeek" and 0 <= value <= 6:
        return _DAYS[value].upper()
    return str(value)


# --- presets: "2nd tuesday 14:00 Europe/Berlin" ------------------------------------------------

_ORDINALS = {"1st": 1, "first": 1, "2nd": 2, "second": 2, "3rd": 3, "third": 3, "4th": 4,
             "fourth": 4, "last": -1}
_PRESET = re.compile(r"^(?P<nth>\w+)\s+(?P<day>[a-z]+)\s+(?:at\s+)?(?P<hour>\d{1,2}):(?P<minute>\d{2})"
                     r"(?:\s+(?P<tz>\S+))?$", re.IGNORECASE)
_LONG_MONTHS = (1, 3, 5, 7, 8, 10, 12)
_SHORT_MONTHS = (4, 6, 9, 11)


@dataclass(frozen=True)
class Preset:
    calendars: list[ScheduleCalendarSpec]
    time_zone: str | None
    description: str


def quarterly_preset(text: str) -> Preset:
    """"2nd tuesday 14:00 Europe/Berlin": that weekday of January, April, July and October."""
    return _preset(text, (1, 4, 7, 10), "quarterly")


def monthly_preset(text: str) -> Preset:
    """"last friday 09:30 UTC": that weekday of every month."""
    return _preset(text, tuple(range(1, 13)), "monthly")


def _preset(text: str, months: tuple[int, ...], kind: str) -> Preset:
    example = "like \"2nd tuesday 14:00 Europe/Berlin\""
    match = _PRESET.match(text.strip())
    if not match:
        raise UserError(f"the {kind} schedule {text!r} is not understood; write it {example}")
    nth = _ORDINALS.get(match["nth"].lower())
    if nth is None:
        raise UserError(f"the {kind} schedule {text!r} starts with {match['nth']!r}; use 1st, "
                        "2nd, 3rd, 4th or last")
    day = _name_value(match["day"], "dayOfWeek")
    if day is None:
        raise UserError(f"the {kind} schedule {text!r} names no weekday; use one like tuesday or tue")
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise UserError(f"the {kind} schedule {text!r} has no valid time of day HH:MM")
    time_zone = check_time_zone(match["tz"]) if match["tz"] else None
    when = {"hour": (ScheduleRange(hour),), "minute": (ScheduleRange(minute),),
            "second": (ScheduleRange(0),), "day_of_week": (ScheduleRange(day),)}
    label = f"{match['nth'].lower()} {_DAY_NAMES[day]} {hour:02d}:{minute:02d}"
    comment = f"{kind}: {label}"

    def calendar(month_set: Sequence[int], first: int, last: int,
                 years: Sequence[ScheduleRange] = ()) -> ScheduleCalendarSpec:
        return ScheduleCalendarSpec(**when, month=_month_ranges(month_set), year=tuple(years),
                                    day_of_month=(ScheduleRange(first, last),), comment=comment)

    if nth > 0:
        calendars = [calendar(months, 7 * nth - 6, 7 * nth)]
    else:  # the last seven days of each month: they depend on its length (and leap years)
        calendars = []
        for group, last in ((_LONG_MONTHS, 31), (_SHORT_MONTHS, 30)):
            chosen = [m for m in months if m in group]
            if chosen:
                calendars.append(calendar(chosen, last - 6, last))
        if 2 in months:
            leap = [ScheduleRange(2000, 2096, 4)]
            common = [ScheduleRange(2001 + i, 2097 + i, 4) for i in range(3)] + [ScheduleRange(2100)]
            calendars += [calendar([2], 23, 29, leap), calendar([2], 22, 28, common)]
    description = f"{kind}, {label}" + (f" {time_zone}" if time_zone else "")
    return Preset(calendars, time_zone, description)


def _month_ranges(months: Sequence[int]) -> tuple[ScheduleRange, ...]:
    if list(months) == list(range(1, 13)):
        return (ScheduleRange(1, 12),)
    return tuple(ScheduleRange(m) for m in months)


def check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UserError(f"time zone {name!r} is unknown; use an IANA name like Europe/Berlin "
                        "or UTC") from exc
    return name


# --- the schedules ---------------------------------------------------------------------------


@dataclass
class ScheduleSummary:
    id: str
    runbook: str | None
    calendars: list[str]
    time_zone: str
    paused: bool
    note: str | None
    next_runs: list[datetime]
    recent_runs: list[dict[str, Any]] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    source: str | None = None
    actions: int = 0
    skipped_overlap: int = 0
    missed_catchup: int = 0

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["next_runs"] = [t.isoformat() for t in self.next_runs]
        for run in document["recent_runs"]:
            for key in ("scheduled_at", "started_at"):
                run[key] = run[key].isoformat()
        return document


@dataclass(frozen=True)
class TriggerResult:
    schedule_id: str
    workflow_id: str | None
    skipped: bool = False
    running: tuple[str, ...] = ()


def _as_list(calendar: ScheduleCalendarSpec | Sequence[ScheduleCalendarSpec]) -> list[ScheduleCalendarSpec]:
    return [calendar] if isinstance(calendar, ScheduleCalendarSpec) else list(calendar)


async def create(client: Client, runbook: Runbook, source: str,
                 calendar: ScheduleCalendarSpec | Sequence[ScheduleCalendarSpec],
                 schedule_id: str | None = None, time_zone: str | None = None,
                 paused: bool = False, note: str | None = None,
                 created_by: str | None = None) -> ScheduleHandle:
    """A schedule that starts a GameDay of `runbook` at each time of `calendar`."""
    problems = static_refusals(runbook)
    if problems:
        raise UserError("; ".join(problems))
    calendars = _as_list(calendar)
    if not calendars:
        raise UserError("a schedule needs at least one calendar")
    schedule_id = schedule_id or runbook.name
    if not schedule_id.strip() or len(schedule_id) > 170:
        raise UserError("the schedule id must be 1 to 170 characters")
    if time_zone:
        check_time_zone(time_zone)
    options = start_options(runbook, Settings.from_env())
    action = ScheduleActionStartWorkflow(
        WORKFLOW,
        GameDayInput(runbook=runbook, source=source, started_by=f"schedule:{schedule_id}"),
        id=schedule_id,  # Temporal appends the scheduled time: <id>-2027-01-12T13:00:00Z
        task_queue=options["task_queue"],
        typed_search_attributes=options["search_attributes"],
        static_summary=options["static_summary"],
        static_details=options["static_details"],
        memo={"runbook": runbook.name, "schedule": schedule_id},
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(calendars=calendars, time_zone_name=time_zone),
        policy=SchedulePolicy(overlap=OVERLAP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(paused=paused, note=note or f"GameDay {runbook.name} from {source}"
                            + (f", created by {created_by}" if created_by else "")),
    )
    try:
        return await client.create_schedule(
            schedule_id, schedule,
            memo={"runbook": runbook.name, "source": source, "created_by": created_by},
            search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK_ATTRIBUTE,
                                                                         runbook.name)]),
        )
    except ScheduleAlreadyRunningError as exc:
        raise UserError(f"a schedule with id {schedule_id} already exists; delete it first "
                        "or choose another --id") from exc
    except RPCError as exc:
        raise UserError(f"Temporal refused schedule {schedule_id}: {exc.message}") from exc


async def _describe(client: Client, schedule_id: str) -> tuple[ScheduleHandle, ScheduleDescription]:
    handle = client.get_schedule_handle(schedule_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"no schedule with id {schedule_id}") from exc
        raise UserError(f"cannot read schedule {schedule_id}: {exc.message}") from exc
    action = description.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or action.workflow != WORKFLOW:
        raise UserError(f"schedule {schedule_id} does not start GameDays")
    return handle, description


async def _summary(description: ScheduleDescription, next_runs: int = 3) -> ScheduleSummary:
    memo = await description.memo()
    spec = description.schedule.spec
    info = description.info
    return ScheduleSummary(
        id=description.id,
        runbook=memo.get("runbook"),
        source=memo.get("source"),
        calendars=[format_calendar(c) for c in spec.calendars] + list(spec.cron_expressions),
        time_zone=spec.time_zone_name or "UTC",
        paused=description.schedule.state.paused,
        note=description.schedule.state.note,
        next_runs=list(info.next_action_times[:next_runs]),
        recent_runs=[
            {"workflow_id": _workflow_id(r.action), "scheduled_at": r.scheduled_at,
             "started_at": r.started_at}
            for r in info.recent_actions
        ],
        running=[_workflow_id(r) for r in info.running_actions],
        actions=info.num_actions,
        skipped_overlap=info.num_actions_skipped_overlap,
        missed_catchup=info.num_actions_missed_catchup_window,
    )


def _workflow_id(action: Any) -> str:
    return action.workflow_id if isinstance(action, ScheduleActionExecutionStartWorkflow) else ""


async def describe(client: Client, schedule_id: str, next_runs: int = 3) -> ScheduleSummary:
    _, description = await _describe(client, schedule_id)
    return await _summary(description, next_runs)


async def list_schedules(client: Client, next_runs: int = 3) -> list[ScheduleSummary]:
    """Every schedule that starts GameDays, by id."""
    ids = []
    try:
        async for entry in await client.list_schedules():
            action = entry.schedule.action if entry.schedule else None
            if isinstance(action, ScheduleListActionStartWorkflow) and action.workflow == WORKFLOW:
                ids.append(entry.id)
    except RPCError as exc:
        raise UserError(f"cannot list schedules: {exc.message}") from exc
    summaries = []
    for schedule_id in sorted(ids):
        try:
            summaries.append(await describe(client, schedule_id, next_runs))
        except UserError:
            continue  # deleted since it was listed
    return summaries


async def pause(client: Client, schedule_id: str, note: str | None = None) -> None:
    handle, _ = await _describe(client, schedule_id)
    await handle.pause(note=note or "paused with gameday schedule pause")


async def unpause(client: Client, schedule_id: str, note: str | None = None) -> None:
    handle, _ = await _describe(client, schedule_id)
    await handle.unpause(note=note or "unpaused with gameday schedule unpause")


async def delete(client: Client, schedule_id: str) -> None:
    """Delete the schedule; GameDays it started keep running."""
    handle, _ = await _describe(client, schedule_id)
    try:
        await handle.delete()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"no schedule with id {schedule_id}") from exc
        raise UserError(f"cannot delete schedule {schedule_id}: {exc.message}") from exc


async def trigger(client: Client, schedule_id: str, timeout: float = 10) -> TriggerResult:
    """Start the schedule's GameDay now (it waits for approval); the started workflow id.

    With a run of this schedule still open, nothing starts (overlap policy SKIP): UserError.
    `workflow_id` is None when the server took the trigger but did not act within `timeout`.
    """
    handle, before = await _describe(client, schedule_id)
    seen = {_workflow_id(r.action) for r in before.info.recent_actions}
    await handle.trigger()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        info = (await handle.describe()).info
        started = [_workflow_id(r.action) for r in info.recent_actions
                   if _workflow_id(r.action) not in seen]
        if info.num_actions > before.info.num_actions and started:
            return TriggerResult(schedule_id, started[-1])
        if info.num_actions_skipped_overlap > before.info.num_actions_skipped_overlap:
            running = tuple(_workflow_id(r) for r in info.running_actions)
            raise UserError(f"schedule {schedule_id} started nothing: GameDay "
                            f"{', '.join(running) or 'of this schedule'} is still open, and a "
                            "schedule runs one GameDay at a time")
    return TriggerResult(schedule_id, None)


def local_time(moment: datetime, time_zone: str) -> str:
    """`moment` in the schedule's time zone, for people: 2027-01-12 14:00 CET."""
    zone = UTC if time_zone in ("", "UTC") else ZoneInfo(time_zone)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
