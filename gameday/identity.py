"""Identities of people (approvers, `--as`, a signal's `approver` or `by`), compared one way only.

Contract §7: one normalisation at the boundary, surrounding whitespace stripped and case folded,
so two spellings of one person never count twice towards a quorum.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator


def normalize_identity(value: str) -> str:
    """`" IC@Example.com "` and `"ic@example.com"` are one person: `"ic@example.com"`."""
    return value.strip().casefold()


def _identity(value: str) -> str:
    normalized = normalize_identity(value)
    if not normalized:
        raise ValueError("an identity must not be blank")
    return normalized


def _text(value: object) -> object:
    return value if not isinstance(value, int) or isinstance(value, bool) else str(value)


Identity = Annotated[str, BeforeValidator(_text), AfterValidator(_identity)]
"""A person's identity as every model at a boundary stores it: normalised, never blank."""
