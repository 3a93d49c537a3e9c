"""gameday's data converter: pydantic JSON, and zlib for the rare payload too large to carry.

Payloads under `COMPRESS_ABOVE` stay plain JSON, so the Temporal UI and `temporal workflow show`
read them as they are; a larger one (a plan or checkpoint of thousands of resources) is stored
compressed (`encoding: binary/zlib`, its own encoding kept in `gameday-encoding`). JSON of
resource ids compresses 5-10 times, which keeps a zone of 10,000 resources far below Temporal's
2 MB payload limit. Every client and worker of one namespace must use this converter.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

COMPRESS_ABOVE = 128 * 1024
ENCODING = b"binary/zlib"
ORIGINAL = "gameday-encoding"


class LargePayloadCodec(PayloadCodec):
    """Compresses payloads larger than `COMPRESS_ABOVE` bytes; leaves every other one as it is."""

    def __init__(self, threshold: int = COMPRESS_ABOVE, level: int = 6):
        self.threshold = threshold
        self.level = level

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encode(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode(p) for p in payloads]

    def _encode(self, payload: Payload) -> Payload:
        if len(payload.data) <= self.threshold or payload.metadata.get("encoding") == ENCODING:
            return payload
        metadata = dict(payload.metadata)
        metadata[ORIGINAL] = metadata.get("encoding", b"")
        metadata["encoding"] = ENCODING
        return Payload(metadata=metadata, data=zlib.compress(payload.data, self.level))

    @staticmethod
    def _decode(payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        metadata = dict(payload.metadata)
        metadata["encoding"] = metadata.pop(ORIGINAL, b"json/plain")
        return Payload(metadata=metadata, data=zlib.decompress(payload.data))


DATA_CONVERTER: DataConverter = dataclasses.replace(pydantic_data_converter,
                                                    payload_codec=LargePayloadCodec())
"""The converter of every gameday client and worker."""
