"""Activities: one module per cloud, each a thin activity layer over a plain class."""

from typing import Any

from activities.aws import AwsActivities
from activities.azure import AzureActivities
from activities.gcp import GcpActivities
from activities.notify import post as post_notification
from activities.probes import probe_activities


def all_activities() -> list[Any]:
    return [*AwsActivities().all(), *GcpActivities().all(), *AzureActivities().all(),
            *probe_activities(), post_notification]
