"""Durations as runbooks write them: `90s`, `15m`, `2h`, `250ms`, or combined like `1h30m`.

No duration is longer than `LONGEST` (7 days): a GameDay is restored by start + max_duration, and
every timer, deadline and datetime the workflow derives from a duration must stay representable.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

LONGEST = timedelta(days=7)
"""The longest any runbook duration may be, `max_duration` included."""

_PART = re.compile(r"(\d+)(ms|h|m|s)")
_WHOLE = re.compile(r"^(\d+(ms|h|m|s))+$")
_UNIT_MILLISECONDS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_SHOWN = 40
"""Messages quote at most this much of what was written."""
_MOST_DIGITS = 12
"""A number with more digits is far beyond `LONGEST` in any unit (and int() stays cheap)."""


def parse_duration(value: object) -> timedelta:
    """Parse `90s`, `15m`, `2h`, `250ms` or `1h30m`, longer than zero and at most `LONGEST`.

    Anything else is a ValueError whose message is one sentence naming the format or the bound;
    no input raises anything else (a number of any size included)."""
    if isinstance(value, timedelta):
        return _bounded(value, format_duration(value) if value > timedelta() else str(value))
    text = value.strip() if isinstance(value, str) else None
    if not text or not _WHOLE.match(text):
        raise ValueError(f"{_shown(value)} is not a duration; write it like 90s, 15m or 2h")
    parts = _PART.findall(text)
    if any(len(number.lstrip("0")) > _MOST_DIGITS for number, _ in parts):
        raise ValueError(f"{_shown(text)} is {_TOO_LONG}")
    milliseconds = sum(int(n) * _UNIT_MILLISECONDS[unit] for n, unit in parts)
    if milliseconds > LONGEST // timedelta(milliseconds=1):
        raise ValueError(f"{_shown(text)} is {_TOO_LONG}")
    return _bounded(timedelta(milliseconds=milliseconds), _shown(text))


_TOO_LONG = "longer than 168h (7 days), the longest a GameDay may last"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _bounded(value: timedelta, shown: str) -> timedelta:
    if value <= timedelta():
        raise ValueError(f"{shown} must be longer than zero")
    if value > LONGEST:
        raise ValueError(f"{shown} is {_TOO_LONG}")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest runbook spelling of a duration: 5400 s is `1h30m`, 1.5 s is `1s500ms`."""
    milliseconds = round(value / timedelta(milliseconds=1))
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+(ms|h|m|s))+$",
                    "examples": ["90s", "15m", "2h", "250ms"]}),
]
