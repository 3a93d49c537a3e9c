"""Measuring a GameDay's Temporal history: what the benchmark reports and the bounded-history
test asserts."""

from __future__ import annotations

from typing import Any


def payload_sizes(message: Any) -> list[int]:
    """Sizes of every temporal.api.common.v1.Payload inside a protobuf message."""
    sizes: list[int] = []
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif (descriptor.is_repeated if hasattr(descriptor, "is_repeated")
              else descriptor.label == descriptor.LABEL_REPEATED):
            items = list(value)
        else:
            items = [value]
        for item in items:
            if not hasattr(item, "DESCRIPTOR"):
                continue
            if item.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
                sizes.append(item.ByteSize())
            else:
                sizes += payload_sizes(item)
    return sizes
