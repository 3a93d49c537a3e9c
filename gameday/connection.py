"""Connecting to Temporal the way the `temporal` CLI does, with gameday's converter and tracing."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError

from gameday.codec import DATA_CONVERTER
from gameday.config import DEFAULT_TEMPORAL_ADDRESS, SEARCH_ATTRIBUTES
from gameday.errors import UserError


def connect_options() -> dict[str, Any]:
    """Keyword arguments for `Client.connect`: env and config files as the CLI reads them."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    options.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    if not options.get("target_host"):
        options["target_host"] = DEFAULT_TEMPORAL_ADDRESS
    options.setdefault("namespace", "default")
    return options


async def connect() -> Client:
    options = connect_options()
    try:
        return await Client.connect(
            **options,
            data_converter=DATA_CONVERTER,
            plugins=[OpenTelemetryPlugin(add_temporal_spans=True)],
        )
    except RuntimeError as exc:
        raise UserError(
            f"cannot reach Temporal at {options['target_host']} (namespace "
            f"{options['namespace']}): {str(exc).splitlines()[0]}"
        ) from exc


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register gameday's search attributes where the server lets us; returns those added."""
    namespace = client.namespace
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    kinds = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
             "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST}
    missing = {name: kinds[kind] for name, kind in SEARCH_ATTRIBUTES.items() if name not in known}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as exc:
        raise UserError(
            f"search attributes {', '.join(sorted(missing))} are not registered in namespace "
            f"{namespace} and could not be added ({exc.message}); add them as Keyword"
        ) from exc
    return sorted(missing)
