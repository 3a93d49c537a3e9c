"""Activities: one package per cloud, one module per fault, made into activities by the registry.

A cloud's package, and so its SDK, is imported only when that cloud's activities are asked for: a
worker process that serves the workflows or one cloud never loads the other clouds' SDKs (about
110 MB for google-cloud-compute, 45 MB for the azure-mgmt packages), nor needs their credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from activities.notify import post as post_notification
from activities.probes import probe_activities

CLOUDS = ("aws", "gcp", "azure")


def cloud_activities(clouds: Iterable[str] = CLOUDS) -> dict[str, list[Any]]:
    """Each asked-for cloud's activities, generated from `activities.registry` and served on that
    cloud's own task queue; only those clouds' packages are imported."""
    from activities.registry import CloudActivities

    return {cloud: CloudActivities(cloud).all() for cloud in clouds}


def general_activities() -> list[Any]:
    """Activities that touch no cloud's network: probes and notifications."""
    return [*probe_activities(), post_notification]


def all_activities() -> list[Any]:
    return [*general_activities(), *(a for acts in cloud_activities().values() for a in acts)]
