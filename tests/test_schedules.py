"""Recurring GameDays: Temporal Schedules on the session dev server (contract §6 `gameday schedule`).

The time-skipping test server (temporal-test-server) does not implement schedules (CreateSchedule
is UNIMPLEMENTED), so a quarter passing is shown two ways on the real server: the calendar
arithmetic (the server's next action times are the 2nd Tuesdays of Jan/Apr/Jul/Oct at 14:00) and a
backfill over the past half year, which starts the runs those quarters would have started.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.client import (
    Client,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    ScheduleRange,
)
from temporalio.service import RPCError
from typer.testing import CliRunner

from gameday import schedules
from gameday.errors import UserError
from gameday.lab.aws import acl_snapshot
from gameday.loader import load_runbook
from gameday.status import GameDayStatus
from tests.support.gameday import abort, status, wait_for

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_CALENDAR = '{"month":"1,4,7,10","dayOfMonth":"8-14","dayOfWeek":"TUE","hour":"14"}'
ACCOUNT = "123456789012"
AWS_RUNBOOK = """\
name: {name}
approvers: [ic@example.com]
approval_timeout: 5m
max_duration: 10m
guardrails: {{aws_accounts: ["{account}"]}}
steps:
  - id: blackhole-use1a
    action: blackhole_zone
    target: {{cloud: aws, account: "{account}", region: us-east-1, zone: us-east-1a,
             tags: {{gameday: enabled}}}}
    duration: 1m
"""
WAIT_RUNBOOK = """\
name: {name}
approvers: [ic@example.com]
approval_timeout: 5m
max_duration: 10m
guardrails: {{aws_accounts: ["{account}"]}}
steps:
  - id: soak
    action: wait
    duration: 5s
"""


# --- helpers ---------------------------------------------------------------------------------


def nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    """The nth `weekday` (Monday 0) of a month."""
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))


def second_tuesdays(zone: str, after: datetime, before: datetime) -> list[datetime]:
    """Every 2nd Tuesday of Jan/Apr/Jul/Oct at 14:00 in `zone`, after < t <= before, in UTC."""
    tz = ZoneInfo(zone)
    found = []
    for year in range(after.year - 1, before.year + 2):
        for month in (1, 4, 7, 10):
            moment = datetime.combine(nth_weekday(year, month, 1, 2), clock(14), tzinfo=tz)
            if after < moment <= before:
                found.append(moment.astimezone(UTC))
    return sorted(found)


def next_quarters(zone: str, count: int) -> list[datetime]:
    now = datetime.now(UTC)
    return second_tuesdays(zone, now, now + timedelta(days=400))[:count]


def write_runbook(tmp_path: Path, template: str = WAIT_RUNBOOK, name: str | None = None) -> Path:
    path = tmp_path / "runbook.yaml"
    path.write_text(template.format(name=name or f"sched-{uuid.uuid4().hex[:8]}", account=ACCOUNT))
    return path


def unique_id() -> str:
    return f"sched-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def created(client: Client, runner: Any, task_queue: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Schedule ids a test creates (on its own worker's queue); deleted, with their runs, after."""
    monkeypatch.setenv("GAMEDAY_TASK_QUEUE", task_queue)
    ids: list[str] = []
    yield ids

    async def clean() -> None:
        for schedule_id in ids:
            handle = client.get_schedule_handle(schedule_id)
            try:
                description = await handle.describe()
            except RPCError:
                continue
            for run in description.info.running_actions:
                try:
                    await client.get_workflow_handle(run.workflow_id).terminate("test cleanup")
                except RPCError:
                    pass
            await handle.delete()

    runner.run(clean())


async def _listed(client: Client, schedule_id: str, timeout: float = 15) -> schedules.ScheduleSummary:
    """The schedule as `list` shows it (the list is eventually consistent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for summary in await schedules.list_schedules(client):
            if summary.id == schedule_id:
                return summary
        await asyncio.sleep(0.2)
    raise AssertionError(f"schedule {schedule_id} was not listed within {timeout}s")


# --- calendars -------------------------------------------------------------------------------


def test_parse_calendar_reads_the_temporal_cli_form():
    calendar = schedules.parse_calendar(CONTRACT_CALENDAR)
    assert calendar.month == tuple(ScheduleRange(m) for m in (1, 4, 7, 10))
    assert calendar.day_of_month == (ScheduleRange(8, 14),)
    assert calendar.day_of_week == (ScheduleRange(2),)
    assert calendar.hour == (ScheduleRange(14),)
    assert calendar.minute == calendar.second == (ScheduleRange(0),)
    assert calendar.year == ()

    named = schedules.parse_calendar(
        '{"month":"JAN-mar,december","dayOfWeek":"sunday,Fri-7","minute":"1-5/2","hour":"*",'
        '"second":"*/15","day_of_month":"3/10","year":"2030","comment":"drill"}')
    assert named.month == (ScheduleRange(1, 3), ScheduleRange(12))
    assert named.day_of_week == (ScheduleRange(0), ScheduleRange(0), ScheduleRange(5, 6))
    assert named.minute == (ScheduleRange(1, 5, 2),)
    assert named.hour == (ScheduleRange(0, 23),)
    assert named.second == (ScheduleRange(0, 59, 15),)
    assert named.day_of_month == (ScheduleRange(3, 31, 10),)
    assert named.year == (ScheduleRange(2030),)
    assert named.comment == "drill"

    # what parse reads, format writes back
    for text in (CONTRACT_CALENDAR, '{"minute":"1-5/2","dayOfWeek":"1-7/2","year":"2030-2040/5"}'):
        calendar = schedules.parse_calendar(text)
        assert schedules.parse_calendar(schedules.format_calendar(calendar)) == calendar


@pytest.mark.skipif(not shutil.which("temporal") and not (ROOT / ".venv/bin/temporal").exists(),
                    reason="no temporal CLI")
def test_parse_calendar_agrees_with_the_temporal_cli_and_server(servers, client, runner):
    """`temporal schedule create --calendar JSON` and parse_calendar give the same calendar."""
    temporal = shutil.which("temporal") or str(ROOT / ".venv/bin/temporal")
    cases = [CONTRACT_CALENDAR, '{"dayOfWeek":"Fri","hour":"17","minute":"5"}',
             '{"minute":"1-5/2","hour":"*","month":"JAN-mar","dayOfWeek":"7"}',
             '{"dayOfWeek":"5-7","year":"2027","second":"*/15"}',
             '{"dayOfWeek":"1-7/2","hour":"3/6","day_of_month":"3"}', '{"year":"*"}']
    for index, text in enumerate(cases):
        schedule_id = f"{unique_id()}-cli{index}"
        done = subprocess.run(
            [temporal, "schedule", "create", "--address", servers.env["TEMPORAL_ADDRESS"],
             "--schedule-id", schedule_id, "--calendar", text, "--workflow-id", "never",
             "--task-queue", "never", "--type", "Never", "--paused"],
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        try:
            described = runner.run(client.get_schedule_handle(schedule_id).describe())
        finally:
            runner.run(client.get_schedule_handle(schedule_id).delete())
        (server,) = described.raw_description.schedule.spec.structured_calendar
        assert MessageToDict(schedules.parse_calendar(text)._to_proto()) == MessageToDict(server), text


@pytest.mark.parametrize(("text", "field"), [
    ('{"month": "1,4,7,10",', "JSON"),
    ('["hour", 14]', "JSON object"),
    ('{"hours": "14"}', "hours"),
    ('{"hour": "24"}', "hour"),
    ('{"dayOfWeek": "TUESDAYS"}', "dayOfWeek"),
    ('{"month": "13"}', "month"),
    ('{"dayOfMonth": "14-8"}', "dayOfMonth"),
    ('{"minute": "*/0"}', "minute"),
    ('{"minute": "1,,2"}', "minute"),
    ('{"year": "1999"}', "year"),
    ('{"hour": ["14"]}', "hour"),
])
def test_a_bad_calendar_is_one_sentence_naming_the_problem(text, field):
    with pytest.raises(UserError) as caught:
        schedules.parse_calendar(text)
    message = str(caught.value)
    assert field in message
    assert "\n" not in message and "Traceback" not in message


def test_quarterly_and_monthly_presets():
    preset = schedules.quarterly_preset("2nd tuesday 14:00 Europe/Berlin")
    assert preset.time_zone == "Europe/Berlin"
    (calendar,) = preset.calendars
    contract = schedules.parse_calendar(CONTRACT_CALENDAR)
    assert (calendar.month, calendar.day_of_month, calendar.day_of_week, calendar.hour,
            calendar.minute, calendar.second) == (contract.month, contract.day_of_month,
                                                  contract.day_of_week, contract.hour,
                                                  contract.minute, contract.second)
    for text, days in (("1st mon 09:30", (1, 7)), ("third Friday at 6:05", (15, 21)),
                       ("4th sun 23:59 UTC", (22, 28))):
        (calendar,) = schedules.quarterly_preset(text).calendars
        assert calendar.day_of_month == (ScheduleRange(*days),)
    assert schedules.quarterly_preset("1st mon 09:30").time_zone is None

    last = schedules.quarterly_preset("last thursday 10:00").calendars
    assert [(c.month, c.day_of_month) for c in last] == [
        ((ScheduleRange(1), ScheduleRange(7), ScheduleRange(10)), (ScheduleRange(25, 31),)),
        ((ScheduleRange(4),), (ScheduleRange(24, 30),)),
    ]
    monthly = schedules.monthly_preset("2nd tue 14:00").calendars
    assert monthly[0].month == (ScheduleRange(1, 12),)
    assert len(schedules.monthly_preset("last fri 09:00").calendars) == 4  # 31, 30, Feb, leap Feb

    for bad, word in (("5th tuesday 14:00", "5th"), ("2nd tuesday 25:00", "HH:MM"),
                      ("2nd funday 14:00", "weekday"), ("2nd tuesday 14:00 Mars/Olympus", "Mars"),
                      ("every quarter", "not understood")):
        with pytest.raises(UserError, match=word):
            schedules.quarterly_preset(bad)


async def _server_next_times(client: Client, schedule_id: str) -> list[datetime]:
    return list((await client.get_schedule_handle(schedule_id).describe()).info.next_action_times)


def test_last_weekday_preset_matches_the_calendar(client, runner, created, tmp_path):
    """The "last" preset, month lengths and leap years included, as the server computes it."""
    book = load_runbook(write_runbook(tmp_path))
    preset = schedules.monthly_preset("last friday 09:30 UTC")
    schedule_id = unique_id()
    created.append(schedule_id)
    runner.run(schedules.create(client, book, "test", preset.calendars, schedule_id,
                                preset.time_zone, paused=True))
    times = runner.run(_server_next_times(client, schedule_id))
    assert len(times) == 10
    for moment in times:
        assert moment.weekday() == 4 and (moment.hour, moment.minute) == (9, 30)
        assert (moment + timedelta(days=7)).month != moment.month  # no Friday after it this month


# --- schedules on the dev server -------------------------------------------------------------


def test_create_from_a_runbook_file_lists_the_next_quarters(client, runner, created, tmp_path):
    path = write_runbook(tmp_path)
    book = load_runbook(path)
    created.append(book.name)
    handle = runner.run(schedules.create(client, book, str(path),
                                         schedules.parse_calendar(CONTRACT_CALENDAR),
                                         time_zone="Europe/Berlin"))
    assert handle.id == book.name  # the id defaults to the runbook's name

    listed = runner.run(_listed(client, book.name))
    assert listed.runbook == book.name
    assert listed.time_zone == "Europe/Berlin"
    assert not listed.paused
    assert listed.next_runs == next_quarters("Europe/Berlin", 3)
    for moment in listed.next_runs:
        local = moment.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.month, local.weekday(), local.hour, local.minute) in {
            (m, 1, 14, 0) for m in (1, 4, 7, 10)}
        assert 8 <= local.day <= 14
    assert json.loads(listed.calendars[0]) == json.loads(
        '{"hour":"14","dayOfMonth":"8-14","month":"1,4,7,10","dayOfWeek":"TUE"}')
    # the next four quarters, as the server computes them
    assert runner.run(schedules.describe(client, book.name, 4)).next_runs == next_quarters(
        "Europe/Berlin", 4)

    description = runner.run(client.get_schedule_handle(book.name).describe())
    assert description.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert description.schedule.policy.catchup_window == timedelta(minutes=10)
    action = description.schedule.action
    assert action.workflow == "GameDayWorkflow" and action.id == book.name
    assert action.task_queue == os.environ["GAMEDAY_TASK_QUEUE"]
    summary = action.static_summary  # described from the raw action: a payload, not text
    summary = summary if isinstance(summary, str) else json.loads(summary.data)
    assert summary == f"GameDay {book.name}"

    with pytest.raises(UserError, match=f"a schedule with id {book.name} already exists"):
        runner.run(schedules.create(client, book, str(path), schedules.parse_calendar("{}")))


def test_trigger_starts_a_gameday_that_waits_for_approval_and_never_two(
        aws, client, runner, created, tmp_path):
    before = acl_snapshot()
    path = write_runbook(tmp_path, AWS_RUNBOOK)
    book = load_runbook(path)
    schedule_id = unique_id()
    created.append(schedule_id)
    runner.run(schedules.create(client, book, str(path), schedules.parse_calendar(CONTRACT_CALENDAR),
                                schedule_id))

    result = runner.run(schedules.trigger(client, schedule_id))
    assert result.workflow_id and result.workflow_id.startswith(f"{schedule_id}-")
    handle = client.get_workflow_handle(result.workflow_id, result_type=GameDayStatus)
    waiting = runner.run(wait_for(handle, lambda s: s.phase == "awaiting_approval",
                                  what="awaiting_approval"))
    assert waiting.pending_approval == "start"
    assert waiting.active_faults == []
    assert [s.state for s in waiting.steps] == ["pending"]
    assert waiting.steps[0].resources > 0  # planned: it knows what it would change
    assert f"by schedule:{schedule_id}" in waiting.events[0].detail
    assert acl_snapshot() == before  # nothing injected

    # overlap SKIP: a second trigger while the first run is open starts nothing
    with pytest.raises(UserError, match="started nothing"):
        runner.run(schedules.trigger(client, schedule_id))
    listed = runner.run(_listed(client, schedule_id))
    assert listed.actions == 1 and listed.skipped_overlap == 1
    assert listed.running == [result.workflow_id]
    assert [r["workflow_id"] for r in listed.recent_runs] == [result.workflow_id]

    runner.run(abort(handle, reason="schedule test over"))
    final = runner.run(handle.result())
    assert final.outcome == "aborted" and final.restored
    assert acl_snapshot() == before


def test_pause_unpause_delete_and_unknown_ids(client, runner, created, tmp_path):
    book = load_runbook(write_runbook(tmp_path))
    schedule_id = unique_id()
    created.append(schedule_id)
    runner.run(schedules.create(client, book, "test", schedules.parse_calendar(CONTRACT_CALENDAR),
                                schedule_id, paused=True))
    assert runner.run(schedules.describe(client, schedule_id)).paused
    runner.run(schedules.unpause(client, schedule_id, "back on"))
    shown = runner.run(schedules.describe(client, schedule_id))
    assert not shown.paused and shown.note == "back on"
    runner.run(schedules.pause(client, schedule_id, "change freeze"))
    shown = runner.run(schedules.describe(client, schedule_id))
    assert shown.paused and shown.note == "change freeze"

    runner.run(schedules.delete(client, schedule_id))
    for operation in (schedules.describe, schedules.trigger, schedules.pause, schedules.unpause,
                      schedules.delete):
        with pytest.raises(UserError, match=f"^no schedule with id {schedule_id}$"):
            runner.run(operation(client, schedule_id))


def test_a_quarter_passing_starts_a_run_per_quarter(client, runner, created, tmp_path):
    """Backfill the last half year: each 2nd Tuesday of a quarter that passed starts a GameDay
    named after its scheduled time, waiting for approval."""
    book = load_runbook(write_runbook(tmp_path))
    schedule_id = unique_id()
    created.append(schedule_id)
    preset = schedules.quarterly_preset("2nd tuesday 14:00 Europe/Berlin")
    handle = runner.run(schedules.create(client, book, "test", preset.calendars, schedule_id,
                                         preset.time_zone))
    end = datetime.now(UTC)
    start = end - timedelta(days=190)
    expected = second_tuesdays("Europe/Berlin", start, end)
    assert len(expected) >= 2
    runner.run(handle.backfill(ScheduleBackfill(start_at=start, end_at=end,
                                                overlap=ScheduleOverlapPolicy.ALLOW_ALL)))

    async def runs() -> list[Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = (await handle.describe()).info
            if info.num_actions >= len(expected):
                return list(info.recent_actions)
            await asyncio.sleep(0.2)
        raise AssertionError("the backfill did not start a run per quarter")

    recent = runner.run(runs())
    assert [r.scheduled_at for r in recent] == expected
    ids = [r.action.workflow_id for r in recent]
    assert ids == [f"{schedule_id}-{t:%Y-%m-%dT%H:%M:%SZ}" for t in expected]
    for workflow_id in ids:
        run = client.get_workflow_handle(workflow_id, result_type=GameDayStatus)
        waiting = runner.run(wait_for(run, lambda s: s.phase == "awaiting_approval"))
        assert waiting.active_faults == []
        runner.run(abort(run, reason="backfill test over"))
        assert runner.run(run.result()).outcome == "aborted"


def test_time_skipping_server(runner, tmp_path):
    """A quarter passing in the time-skipping test server, if it implements schedules."""
    from temporalio.testing import WorkflowEnvironment

    from gameday.codec import DATA_CONVERTER

    server = shutil.which("temporal-test-server") or str(ROOT / ".venv/bin/temporal-test-server")
    if not Path(server).exists():
        pytest.skip("no temporal-test-server")
    book = load_runbook(write_runbook(tmp_path))

    async def go() -> list[Any] | None:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=server, data_converter=DATA_CONVERTER)
        try:
            try:
                handle = await schedules.create(env.client, book, "test",
                                                schedules.parse_calendar(CONTRACT_CALENDAR),
                                                time_zone="UTC", paused=False)
            except UserError as exc:
                if "unimplemented" in str(exc).lower():
                    return None
                raise
            await env.sleep(timedelta(days=100))
            return list((await handle.describe()).info.recent_actions)
        finally:
            await env.shutdown()

    recent = runner.run(go())
    if recent is None:
        pytest.skip("temporal-test-server does not implement schedules (CreateSchedule is "
                    "UNIMPLEMENTED); see test_a_quarter_passing_starts_a_run_per_quarter")
    assert recent, "no run started in 100 days"


# --- the command line ------------------------------------------------------------------------


def test_schedule_commands(client, runner, created, tmp_path):
    from gameday.cli_schedule import schedule_app

    cli = CliRunner()
    path = write_runbook(tmp_path)
    schedule_id = unique_id()
    created.append(schedule_id)

    done = cli.invoke(schedule_app, ["create", str(path), "--quarterly",
                                     "2nd tuesday 14:00 Europe/Berlin", "--id", schedule_id])
    assert done.exit_code == 0, done.output
    assert f"schedule {schedule_id} created (active)" in done.output

    listed = cli.invoke(schedule_app, ["list"])
    assert listed.exit_code == 0, listed.output
    first = next_quarters("Europe/Berlin", 1)[0].astimezone(ZoneInfo("Europe/Berlin"))
    assert f"{schedule_id}: GameDay" in listed.output
    assert first.strftime("%Y-%m-%d 14:00 %Z") in listed.output
    as_json = json.loads(cli.invoke(schedule_app, ["list", "--json"]).output)
    (mine,) = [s for s in as_json if s["id"] == schedule_id]
    assert [datetime.fromisoformat(t) for t in mine["next_runs"]] == next_quarters("Europe/Berlin", 3)

    triggered = cli.invoke(schedule_app, ["trigger", schedule_id])
    assert triggered.exit_code == 0, triggered.output
    workflow_id = triggered.stdout.strip().splitlines()[0]
    assert workflow_id.startswith(f"{schedule_id}-")
    handle = client.get_workflow_handle(workflow_id, result_type=GameDayStatus)
    runner.run(wait_for(handle, lambda s: s.phase == "awaiting_approval"))
    runner.run(abort(handle))
    assert runner.run(status(handle)).phase in ("aborted", "restoring")

    paused = cli.invoke(schedule_app, ["pause", schedule_id, "--note", "freeze"])
    assert paused.exit_code == 0 and "paused" in paused.output
    assert cli.invoke(schedule_app, ["unpause", schedule_id]).exit_code == 0

    bad = cli.invoke(schedule_app, ["create", str(path), "--calendar", '{"hour":"25"}'])
    assert isinstance(bad.exception, UserError) and "hour" in str(bad.exception)
    both = cli.invoke(schedule_app, ["create", str(path), "--calendar", "{}", "--quarterly", "x"])
    assert isinstance(both.exception, UserError)

    deleted = cli.invoke(schedule_app, ["delete", schedule_id])
    assert deleted.exit_code == 0 and f"schedule {schedule_id} deleted" in deleted.output


def test_unknown_schedule_is_one_sentence_on_stderr(servers):
    done = subprocess.run([sys.executable, "-m", "gameday.cli_schedule", "trigger", "no-such-one"],
                          env={**os.environ, **servers.env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "gameday: no schedule with id no-such-one"
    assert done.stdout == ""


def test_a_runbook_can_carry_its_own_schedule(client, runner, created, tmp_path):
    from gameday.cli_schedule import schedule_app

    path = write_runbook(tmp_path)
    path.write_text(path.read_text() + '\nschedule:\n  quarterly: "2nd tuesday 14:00 Europe/Berlin"\n')
    schedule_id = unique_id()
    created.append(schedule_id)
    done = CliRunner().invoke(schedule_app, ["create", str(path), "--id", schedule_id])
    assert done.exit_code == 0, done.output
    described = runner.run(schedules.describe(client, schedule_id))
    assert described.next_runs[:3] == next_quarters("Europe/Berlin", 3)
