"""Where a fault lands: one model per cloud for a zone, a region, and a region's traffic.

Closed pydantic models (unknown fields are errors), discriminated by `cloud`; names and ids are
checked for the shape each cloud gives them (an AWS account is 12 digits, a GCP zone is
`<region>-<letter>`, an Azure zone is 1 to 3) before any cloud is asked anything. A new fault that
needs a new kind of target adds its models here; `gameday.runbook` holds the steps that use them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

SLUG = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$")
_AWS_ZONE_ID = re.compile(r"^[a-z]{2,}[0-9]+(-[a-z]+[0-9]+)?-az[0-9]+$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_GCP_ZONE = re.compile(r"^([a-z]+-[a-z]+\d+)-[a-z]$")
_AZURE_REGION = re.compile(r"^[a-z][a-z0-9]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _aws_account(value: object) -> object:
    """YAML reads an unquoted account id as a number; AWS account ids are always 12 digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:012d}"
    return value


def _as_text(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _shaped(pattern: re.Pattern[str], what: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


AwsAccount = Annotated[str, BeforeValidator(_aws_account), Field(pattern=r"^\d{12}$")]
AwsRegion = Annotated[str, _shaped(_AWS_REGION, "an AWS region name like us-east-1")]
AwsZoneId = Annotated[str, _shaped(_AWS_ZONE_ID, "an AWS zone ID like use1-az1")]
GcpProject = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
GcpRegion = Annotated[str, _shaped(_GCP_REGION, "a Compute Engine region like us-central1")]
GcpZone = Annotated[str, _shaped(_GCP_ZONE, "a Compute Engine zone like us-central1-a")]
AzureRegion = Annotated[str, _shaped(_AZURE_REGION, "an Azure region name like eastus")]
AzureSubscription = Annotated[
    str, AfterValidator(str.lower), _shaped(_UUID, "a subscription id (a UUID)")
]
AzureResourceGroup = Annotated[str, Field(min_length=1, max_length=90)]
AzureZone = Annotated[str, BeforeValidator(_as_text), Field(pattern=r"^[1-3]$")]
Tags = dict[str, Annotated[str, BeforeValidator(_as_text)]]
Count = Annotated[int, Field(strict=True)]
"""A number of things: YAML's `true` is not 1."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- targets ----------------------------------------------------------------------------------
# The bases hold what every target of a cloud names (and checks) the same way; each target adds
# what it picks out. Their fields come first, in this order, in the JSON schema too.


class AwsPlaced(Strict):
    cloud: Literal["aws"]
    account: AwsAccount
    region: AwsRegion


class AwsZoned(AwsPlaced):
    """A zone named by its name in the account (`zone`) or by its AWS zone ID (`zone_id`), the
    same physical zone in every account: exactly one of the two. The resolve fills in the other
    (`named`), so faults act on the physical zone the runbook names."""

    zone: str | None = Field(None, description="availability zone name, like us-east-1a")
    zone_id: AwsZoneId | None = Field(None, description="AWS availability zone ID, like use1-az1: "
                                      "the same physical zone in every account (instead of zone)")

    @model_validator(mode="after")
    def _zone_in_region(self) -> AwsZoned:
        if (self.zone is None) == (self.zone_id is None):
            raise ValueError("name the zone by exactly one of zone (like us-east-1a) and zone_id "
                             "(like use1-az1)")
        if self.zone is not None and not re.fullmatch(re.escape(self.region) + r"[a-z]", self.zone):
            raise ValueError(f"zone {self.zone!r} is not in region {self.region}")
        return self

    @property
    def zone_name(self) -> str:
        """The zone's name in the target account; a `zone_id` target has one once resolved."""
        if self.zone is None:
            raise ValueError(f"zone {self.zone_id} has not been resolved to its name in account "
                             f"{self.account}")
        return self.zone

    def named(self, zone: str, zone_id: str) -> Self:
        """This target with both the zone's name in its account and its zone ID."""
        return self.model_copy(update={"zone": zone, "zone_id": zone_id})


class GcpPlaced(Strict):
    cloud: Literal["gcp"]
    project: GcpProject


class GcpZoned(GcpPlaced):
    zone: GcpZone

    @property
    def region(self) -> str:
        match = _GCP_ZONE.match(self.zone)
        return match.group(1) if match else self.zone


class AzureGrouped(Strict):
    cloud: Literal["azure"]
    subscription: AzureSubscription
    resource_group: AzureResourceGroup


class AzureZoned(AzureGrouped):
    region: AzureRegion
    zone: AzureZone


class AwsZoneTarget(AwsZoned):
    vpc_ids: list[Annotated[str, Field(pattern=r"^vpc-[0-9a-f]+$")]] = []
    tags: Tags = Field({}, description="only subnets carrying all of these tags")


class GcpZoneTarget(GcpZoned):
    network: str | None = None
    labels: Tags = Field({}, description="only instances carrying all of these labels")


class AzureZoneTarget(AzureZoned):
    tags: Tags = Field({}, description="only VMs carrying all of these tags")


class AwsRegionTarget(AwsPlaced):
    """Every zone of a region (blackhole_region): as AwsZoneTarget, with the region only."""

    vpc_ids: list[Annotated[str, Field(pattern=r"^vpc-[0-9a-f]+$")]] = []
    tags: Tags = Field({}, description="only subnets carrying all of these tags")

    def zone_target(self, zone: str) -> AwsZoneTarget:
        return AwsZoneTarget(cloud="aws", account=self.account, region=self.region, zone=zone,
                             vpc_ids=self.vpc_ids, tags=self.tags)


class GcpRegionTarget(GcpPlaced):
    region: GcpRegion
    network: str | None = None
    labels: Tags = Field({}, description="only instances carrying all of these labels")

    def zone_target(self, zone: str) -> GcpZoneTarget:
        return GcpZoneTarget(cloud="gcp", project=self.project, zone=zone, network=self.network,
                             labels=self.labels)


class AzureRegionTarget(AzureGrouped):
    region: AzureRegion
    tags: Tags = Field({}, description="only VMs carrying all of these tags")

    def zone_target(self, zone: str) -> AzureZoneTarget:
        return AzureZoneTarget(cloud="azure", subscription=self.subscription,
                               resource_group=self.resource_group, region=self.region, zone=zone,
                               tags=self.tags)


class AwsRegionTraffic(AwsPlaced):
    hosted_zone_id: str = Field(min_length=1, description="the zone's id, or its DNS name")
    record_names: list[str] = Field(min_length=1)


class GcpRegionTraffic(GcpPlaced):
    region: GcpRegion
    backend_services: list[str] = Field(min_length=1)


class AzureRegionTraffic(AzureGrouped):
    region: AzureRegion
    traffic_manager_profiles: list[str] = Field(min_length=1)


class AwsInstancesTarget(AwsZoned):
    """The EC2 instances of one zone (stop_instances)."""

    tags: Tags = Field({}, description="only instances carrying all of these tags")


class GcpInstancesTarget(GcpZoned):
    """The Compute Engine instances of one zone (stop_instances)."""

    labels: Tags = Field({}, description="only instances carrying all of these labels")


class AzureInstancesTarget(AzureZoned):
    """The virtual machines of one zone of a resource group (stop_instances)."""

    tags: Tags = Field({}, description="only VMs carrying all of these tags")


class AwsCapacityTarget(AwsZoned):
    """Auto Scaling groups that may launch into the zone (deny_capacity)."""

    auto_scaling_groups: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        min_length=1, description="group names; each with subnets in the zone stops launching there")


class GcpCapacityTarget(GcpPlaced):
    """Regional managed instance groups that stop scaling and healing (deny_capacity)."""

    region: GcpRegion
    instance_group_managers: list[Annotated[str, Field(pattern=SLUG)]] = Field(
        min_length=1, description="regional managed instance group names")


class AzureCapacityTarget(AzureGrouped):
    """Virtual machine scale sets that stop scaling and repairing (deny_capacity)."""

    region: AzureRegion | None = Field(None, description="the scale sets' region, when known")
    scale_sets: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description="scale set names in the resource group")


class AwsDatabaseTarget(AwsZoned):
    """Aurora (or Multi-AZ DB) clusters whose writer may be in the zone (failover_database)."""

    db_clusters: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        min_length=1, description="cluster identifiers; those whose writer is in the zone fail over")


class GcpDatabaseTarget(GcpZoned):
    """Cloud SQL HA instances whose primary may be in the zone (failover_database)."""

    instances: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class AzureDatabaseTarget(AzureGrouped):
    """PostgreSQL flexible servers (zone-redundant HA) whose primary may be in the zone."""

    region: AzureRegion | None = Field(None, description="the servers' region, when known")
    zone: AzureZone
    servers: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


class AwsPartitionTarget(AwsPlaced):
    """The region's subnets, cut off from the peer regions (partition_regions)."""

    peer_regions: list[AwsRegion] = Field(min_length=1, description="regions the region can no "
                                          "longer reach over peering or transit gateways")
    vpc_ids: list[Annotated[str, Field(pattern=r"^vpc-[0-9a-f]+$")]] = []

    @model_validator(mode="after")
    def _peers_elsewhere(self) -> AwsPartitionTarget:
        _check_peers(self.region, self.peer_regions)
        return self


class GcpPartitionTarget(GcpPlaced):
    """The region's subnet ranges of one VPC network, cut off from the peer regions' ranges."""

    region: GcpRegion
    peer_regions: list[GcpRegion] = Field(min_length=1)
    network: str = Field(pattern=SLUG, description="the VPC network's name")

    @model_validator(mode="after")
    def _peers_elsewhere(self) -> GcpPartitionTarget:
        _check_peers(self.region, self.peer_regions)
        return self


class AzurePartitionTarget(AzureGrouped):
    """The subnets of the group's VNets in the region, cut off from VNets in the peer regions."""

    region: AzureRegion
    peer_regions: list[AzureRegion] = Field(min_length=1)

    @model_validator(mode="after")
    def _peers_elsewhere(self) -> AzurePartitionTarget:
        _check_peers(self.region, self.peer_regions)
        return self


def _check_peers(region: str, peers: list[str]) -> None:
    if region in peers:
        raise ValueError(f"peer_regions names the region itself ({region})")
    if len(set(peers)) != len(peers):
        raise ValueError("peer_regions names a region twice")


class AwsZoneTraffic(AwsZoned):
    """Load balancers whose traffic moves off the zone through ARC zonal shift (evacuate_zone)."""

    resources: list[Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:[a-z0-9-]+:")]] = Field(
        min_length=1, description="ARNs of load balancers (or other resources) registered with "
        "ARC zonal shift")


class GcpZoneTraffic(GcpZoned):
    """Backend services whose backends in the zone stop taking traffic (evacuate_zone)."""

    backend_services: list[Annotated[str, Field(pattern=SLUG)]] = Field(min_length=1)


class AzureZoneTraffic(AzureGrouped):
    """Load balancers whose backend pool members in the zone are taken out (evacuate_zone)."""

    region: AzureRegion | None = Field(None, description="the load balancers' region, when known")
    zone: AzureZone
    load_balancers: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(min_length=1)


ZoneTarget = Annotated[AwsZoneTarget | GcpZoneTarget | AzureZoneTarget, Field(discriminator="cloud")]
RegionTarget = Annotated[
    AwsRegionTarget | GcpRegionTarget | AzureRegionTarget, Field(discriminator="cloud")
]
RegionTraffic = Annotated[
    AwsRegionTraffic | GcpRegionTraffic | AzureRegionTraffic, Field(discriminator="cloud")
]
InstancesTarget = Annotated[
    AwsInstancesTarget | GcpInstancesTarget | AzureInstancesTarget, Field(discriminator="cloud")
]
CapacityTarget = Annotated[
    AwsCapacityTarget | GcpCapacityTarget | AzureCapacityTarget, Field(discriminator="cloud")
]
DatabaseTarget = Annotated[
    AwsDatabaseTarget | GcpDatabaseTarget | AzureDatabaseTarget, Field(discriminator="cloud")
]
PartitionTarget = Annotated[
    AwsPartitionTarget | GcpPartitionTarget | AzurePartitionTarget, Field(discriminator="cloud")
]
ZoneTraffic = Annotated[
    AwsZoneTraffic | GcpZoneTraffic | AzureZoneTraffic, Field(discriminator="cloud")
]
Target = (
    AwsZoneTarget | GcpZoneTarget | AzureZoneTarget
    | AwsRegionTarget | GcpRegionTarget | AzureRegionTarget
    | AwsRegionTraffic | GcpRegionTraffic | AzureRegionTraffic
    | AwsInstancesTarget | GcpInstancesTarget | AzureInstancesTarget
    | AwsCapacityTarget | GcpCapacityTarget | AzureCapacityTarget
    | AwsDatabaseTarget | GcpDatabaseTarget | AzureDatabaseTarget
    | AwsPartitionTarget | GcpPartitionTarget | AzurePartitionTarget
    | AwsZoneTraffic | GcpZoneTraffic | AzureZoneTraffic
)


def target_scope(target: Target) -> str:
    """The account, project or subscription a target lives in."""
    if isinstance(target, AwsPlaced):
        return target.account
    if isinstance(target, GcpPlaced):
        return target.project
    return target.subscription
