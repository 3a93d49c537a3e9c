"""OpenTelemetry set-up: a replay-safe tracer provider, exporting over OTLP when configured."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import create_tracer_provider

_configured = False


def setup_tracing(service: str = "gameday", processor: SpanProcessor | None = None) -> None:
    """Install the global tracer provider once; OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    `processor` lets tests attach an in-memory exporter.
    """
    global _configured
    if _configured:
        return
    _configured = True
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = create_tracer_provider(resource=Resource.create({"service.name": name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
