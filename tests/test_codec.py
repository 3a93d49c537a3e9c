"""The converter keeps ordinary payloads readable JSON and compresses only the huge ones, so that a
plan or checkpoint of a very large zone stays far under Temporal's 2 MB payload limit."""

from __future__ import annotations

import asyncio

from temporalio.api.common.v1 import Payload

from gameday.codec import DATA_CONVERTER, ENCODING, LargePayloadCodec
from gameday.plan import ResolvedStep, Resource, Scope

PAYLOAD_LIMIT = 2 * 1024 * 1024


def _zone_of(count: int) -> ResolvedStep:
    """A GCP zone of `count` instances as resolve describes them."""
    return ResolvedStep(
        step_id="blackhole-gcp", action="blackhole_zone",
        scope=Scope(cloud="gcp", account="shop-prod", region="us-central1", zone="us-central1-a"),
        resources=[Resource(id=f"web-{i:05d}", kind="instance", name=f"web-{i:05d}",
                            detail={"zone": "us-central1-a", "networks": "shop-vpc",
                                    "tags": "http-server,https-server"})
                   for i in range(count)])


def test_small_payloads_stay_plain_json():
    [payload] = asyncio.run(DATA_CONVERTER.encode([_zone_of(10)]))
    assert payload.metadata["encoding"] == b"json/plain"
    assert b'"web-00009"' in payload.data


def test_twenty_thousand_instances_fit_one_payload_and_round_trip():
    zone = _zone_of(20_000)
    [payload] = asyncio.run(DATA_CONVERTER.encode([zone]))
    plain = len(zone.model_dump_json())
    assert plain > PAYLOAD_LIMIT  # without the codec Temporal would refuse it
    assert payload.metadata["encoding"] == ENCODING
    assert len(payload.data) < PAYLOAD_LIMIT / 4, (plain, len(payload.data))
    [back] = asyncio.run(DATA_CONVERTER.decode([payload], [ResolvedStep]))
    assert back == zone


def test_the_codec_leaves_foreign_and_already_compressed_payloads_alone():
    codec = LargePayloadCodec(threshold=8)
    foreign = Payload(metadata={"encoding": b"binary/protobuf"}, data=b"\x00" * 4)
    [same] = asyncio.run(codec.encode([foreign]))
    assert same == foreign
    [decoded] = asyncio.run(codec.decode([foreign]))
    assert decoded == foreign
    big = Payload(metadata={"encoding": b"json/plain"}, data=b"[" + b"1," * 100 + b"1]")
    [once] = asyncio.run(codec.encode([big]))
    [twice] = asyncio.run(codec.encode([once]))
    assert twice == once and once.metadata["encoding"] == ENCODING
    [back] = asyncio.run(codec.decode([twice]))
    assert back == big

