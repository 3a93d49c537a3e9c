"""Activities: one module per cloud, each a thin activity layer over a plain class."""

from typing import Any

from activities.aws import AwsActivities
from activities.azure import AzureActivities
from activities.gcp import GcpActivities
from activities.notify import post as post_notification
from activities.probes import probe_activities


def cloud_activities() -> dict[str, list[Any]]:
    """Each cloud's activities, served on that cloud's own task queue."""
    return {"aws": AwsActivities().all(), "gcp": GcpActivities().all(),
            "azure": AzureActivities().all()}


def general_activities() -> list[Any]:
    """Activities that touch no cloud's network: probes and notifications."""
    return [*probe_activities(), post_notification]


def all_activities() -> list[Any]:
    return [*general_activities(), *(a for acts in cloud_activities().values() for a in acts)]
