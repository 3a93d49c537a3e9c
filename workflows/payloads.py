"""The payloads of signals and updates, checked by the workflow itself: a malformed one is refused
in one sentence (or, for a signal, recorded as refused) instead of failing the workflow task."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def parse(model: type[Any], payload: Any) -> Any:
    """The payload as `model`, or one sentence saying what is wrong with it."""
    if isinstance(payload, model):
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: "
                    f"{e['msg'].removeprefix('Value error, ')}" for e in error.errors()[:3]]
        return "; ".join(problems)


def malformed(model: type[Any], payload: Any) -> None:
    """Update validators: refuse a payload that is not a `model`, in one sentence."""
    parsed = parse(model, payload)
    if isinstance(parsed, str):
        raise ValueError(f"malformed {model.__name__.lower()} request: {parsed}")


def first_error(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
