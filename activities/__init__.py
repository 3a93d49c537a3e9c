"""Activities: one module per cloud, each a thin activity layer over a plain class.

A cloud's module, and so its SDK, is imported only when that cloud's activities are asked for: a
worker process that serves the workflows or one cloud never loads the other clouds' SDKs (about
110 MB for google-cloud-compute, 45 MB for the azure-mgmt packages), nor needs their credentials.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from activities.notify import post as post_notification
from activities.probes import probe_activities

CLOUDS = ("aws", "gcp", "azure")

_CLOUD_CLASSES = {
    # cloud: (module, class whose `all()` lists the cloud's activities)
    "aws": ("activities.aws", "AwsActivities"),
    "gcp": ("activities.gcp", "GcpActivities"),
    "azure": ("activities.azure", "AzureActivities"),
}


def cloud_activities(clouds: Iterable[str] = CLOUDS) -> dict[str, list[Any]]:
    """Each asked-for cloud's activities, served on that cloud's own task queue; only those
    clouds' modules are imported."""
    found: dict[str, list[Any]] = {}
    for cloud in clouds:
        if cloud not in _CLOUD_CLASSES:
            raise ValueError(f"unknown cloud {cloud!r}; gameday knows {', '.join(CLOUDS)}")
        module, name = _CLOUD_CLASSES[cloud]
        found[cloud] = getattr(importlib.import_module(module), name)().all()
    return found


def general_activities() -> list[Any]:
    """Activities that touch no cloud's network: probes and notifications."""
    return [*probe_activities(), post_notification]


def all_activities() -> list[Any]:
    return [*general_activities(), *(a for acts in cloud_activities().values() for a in acts)]
