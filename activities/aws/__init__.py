"""AWS faults with boto3: one module per fault (`blackhole`, `evacuation`), the sweeper (`sweep`),
and the plumbing they share (`api`). The registry (`activities.registry`) makes them activities."""

from activities.aws.api import TAG_RUN, AwsApi
from activities.aws.blackhole import AwsZoneBlackhole
from activities.aws.evacuation import AwsRegionEvacuation
from activities.aws.sweep import AwsSweeper

__all__ = ["TAG_RUN", "AwsApi", "AwsRegionEvacuation", "AwsSweeper", "AwsZoneBlackhole"]
