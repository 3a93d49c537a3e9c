"""Activities: one module per cloud, each a thin activity layer over a plain class."""

from typing import Any

from activities.aws import AwsActivities


def all_activities() -> list[Any]:
    return [*AwsActivities().all()]
