"""Durations as runbooks write them: `90s`, `15m`, `2h`, or combined like `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+)([hms])")
_WHOLE = re.compile(r"^(\d+[hms])+$")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(value: object) -> timedelta:
    """Parse `90s`, `15m`, `2h` or `1h30m`; anything else is a ValueError naming the format."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    if not text or not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration; write it like 90s, 15m or 2h")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest runbook spelling of a duration: 5400 s is `1h30m`."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+[hms])+$", "examples": ["90s", "15m", "2h"]}),
]
