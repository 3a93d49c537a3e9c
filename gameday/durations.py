"""Durations as runbooks write them: `90s`, `15m`, `2h`, `250ms`, or combined like `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_PART = re.compile(r"(\d+)(ms|h|m|s)")
_WHOLE = re.compile(r"^(\d+(ms|h|m|s))+$")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(value: object) -> timedelta:
    """Parse `90s`, `15m`, `2h`, `250ms` or `1h30m`; anything else is a ValueError naming the format."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    if not text or not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration; write it like 90s, 15m or 2h")
    milliseconds = sum(round(int(n) * _UNIT_SECONDS[unit] * 1000) for n, unit in _PART.findall(text))
    if milliseconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(milliseconds=milliseconds)


def format_duration(value: timedelta) -> str:
    """The shortest runbook spelling of a duration: 5400 s is `1h30m`, 1.5 s is `1s500ms`."""
    milliseconds = round(value.total_seconds() * 1000)
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
