"""How ARM names things: the resource group and name in a resource id, and a reference's id."""

from __future__ import annotations

from typing import Any

from gameday.lab.azure.arm import ArmError


def owner_of(resource_id: str) -> tuple[str, str]:
    """(subscription, resource group) of an ARM id."""
    parts = resource_id.split("/")
    return parts[2], parts[4]


def ref_id(value: Any) -> str | None:
    """The `id` of a `{"id": ...}` reference, or None when absent or null."""
    if isinstance(value, dict) and value.get("id"):
        return str(value["id"])
    return None


def invalid_reference(target: str, user: str) -> ArmError:
    return ArmError(400, "InvalidResourceReference", f"Resource {target} referenced by resource "
                    f"{user} was not found. Please make sure that the referenced resource exists, "
                    "and that both resources are in the same region.")
