"""Connecting to Temporal the way the `temporal` CLI does, with gameday's converter and tracing."""

from __future__ import annotations

import os
import re
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
from gameday.errors import UserError, first_sentence, log_details


def connect_options() -> dict[str, Any]:
    """Keyword arguments for `Client.connect`: env and config files as the CLI reads them."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    options.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    if not options.get("target_host"):
        options["target_host"] = DEFAULT_TEMPORAL_ADDRESS
    options.setdefault("namespace", "default")
    return options


def address_source() -> str:
    """Where the Temporal address came from, for an error that tells the user what to change."""
    if os.environ.get("TEMPORAL_ADDRESS"):
        return "TEMPORAL_ADDRESS"
    if os.environ.get("TEMPORAL_PROFILE") or os.environ.get("TEMPORAL_CONFIG_FILE"):
        return "the Temporal profile"
    return "the default; set TEMPORAL_ADDRESS"


def connection_failure(error: BaseException) -> str:
    """The reason in the SDK's Rust transport error (`... Os { code: 111, kind: ConnectionRefused,
    message: "Connection refused" } ...`) as a few plain words: `connection refused`."""
    text = str(error)
    found = re.search(r'message: "([^"]+)"', text)
    if found:
        return found.group(1).lower()
    for marker, words in (("dns error", "the host name does not resolve"),
                          ("timed out", "the connection timed out"),
                          ("tls", "the TLS handshake failed"),
                          ("certificate", "the server's certificate is not trusted")):
        if marker in text.lower():
            return words
    return first_sentence(text).removeprefix("Failed client connect: ")


async def connect() -> Client:
    options = connect_options()
    try:
        return await Client.connect(
            **options,
            data_converter=DATA_CONVERTER,
            plugins=[OpenTelemetryPlugin(add_temporal_spans=True)],
        )
    except RPCError as exc:
        raise UserError(
            f"Temporal at {options['target_host']} ({address_source()}) refused the connection: "
            f"{first_sentence(exc.message)}"
        ) from exc
    except RuntimeError as exc:
        log_details(f"connecting to Temporal at {options['target_host']}: {exc}")
        raise UserError(
            f"cannot reach Temporal at {options['target_host']} ({address_source()}): "
            f"{connection_failure(exc)}"
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
            f"{namespace} and could not be added ({exc.message}); add them as "
            + ", ".join(f"{name} {SEARCH_ATTRIBUTES[name]}" for name in sorted(missing))
        ) from exc
    return sorted(missing)
