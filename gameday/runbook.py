"""The runbook: what a GameDay breaks, in what order, for how long, and who may say go.

A closed set of pydantic models (unknown fields are errors) for contract §3. Targets are
discriminated by `cloud`, steps by `action`; a list item with `parallel` is a group of steps that
start together. Everything a runbook can get wrong on its own is caught here, before any cloud is
asked anything: identities (normalised, distinct), step ids another unit of the run could have
(gameday.units), targets outside the runbook's own guardrails, durations beyond max_duration (at most
7 days), faults held for no time. What needs a cloud (does the zone have subnets?) is checked by
`plan`. The workflow validates its input with these same models, so every check is deterministic and
reads neither the environment nor files (`${VAR}` is filled in by the loader).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from gameday.durations import Duration, format_duration
from gameday.identity import Identity, normalize_identity
from gameday.signatures import PublicKey, SignatureRefused, parse_public_key
from gameday.targets import (
    SLUG,
    AwsAccount,
    AwsRegion,
    AzureSubscription,
    CapacityTarget,
    Count,
    DatabaseTarget,
    GcpProject,
    InstancesTarget,
    PartitionTarget,
    RegionTarget,
    RegionTraffic,
    Strict,
    ZoneTarget,
    ZoneTraffic,
)
from gameday.units import zone_unit_id

Cloud = Literal["aws", "gcp", "azure"]
FaultAction = Literal["blackhole_zone", "blackhole_region", "evacuate_region", "stop_instances",
                      "deny_capacity", "failover_database", "partition_regions", "evacuate_zone"]

# --- steps ------------------------------------------------------------------------------------


class StepBase(Strict):
    id: str = Field(pattern=SLUG, description="unique within the runbook: [a-z0-9-]")
    description: str | None = None
    approval: Literal["required", "none"] = Field(
        "none", description="required: a second approval, for this step, before it starts"
    )


class Expectation(Strict):
    """What the runbook expects of the system while and after the fault holds (contract §10)."""

    recover_within: Duration = Field(
        description="from the fault's apply until every steady-state probe passes again")


class FaultStepBase(StepBase):
    expect: Expectation | None = Field(
        None, description="an objective measured against the steady-state checks: "
        "{recover_within: 5m}; needs steady_state")
    duration: Duration | None = Field(
        None, description="held this long, then restored; omitted: held until the run ends"
    )
    restore: Literal["after_duration", "with_run"] | None = Field(
        None, description="with_run: held until the run ends and restored with it, newest first "
        "(the default without a duration); after_duration: restored when its duration is over"
    )

    @model_validator(mode="after")
    def _restore_matches_duration(self) -> FaultStepBase:
        if self.restore == "with_run" and self.duration is not None:
            raise ValueError("a step restored with the run has no duration of its own")
        if self.restore == "after_duration" and self.duration is None:
            raise ValueError("restore: after_duration needs a duration")
        return self

    @property
    def held_for(self) -> timedelta | None:
        """How long the fault is held before its own restore; None: until the run ends."""
        return None if self.restore == "with_run" else self.duration


class BlackholeZoneStep(FaultStepBase):
    action: Literal["blackhole_zone"]
    target: ZoneTarget


class BlackholeRegionStep(FaultStepBase):
    """Every zone of a region at once: one checkpoint per zone, restored zone by zone."""

    action: Literal["blackhole_region"]
    target: RegionTarget

    def zone_step(self, zone: str) -> BlackholeZoneStep:
        return BlackholeZoneStep(id=zone_unit_id(self.id, zone), action="blackhole_zone",
                                 target=self.target.zone_target(zone), duration=self.duration,
                                 description=self.description)


zone_step_id = zone_unit_id
"""The id under which one zone of a region step is checkpointed and tagged (see gameday.units)."""


class EvacuateRegionStep(FaultStepBase):
    action: Literal["evacuate_region"]
    target: RegionTraffic


class StopInstancesStep(FaultStepBase):
    """A zone's power interruption: its running instances stopped abruptly, then started again."""

    action: Literal["stop_instances"]
    target: InstancesTarget


class DenyCapacityStep(FaultStepBase):
    """No new capacity where the zone was: groups stop launching into it, scaling and healing."""

    action: Literal["deny_capacity"]
    target: CapacityTarget


class FailoverDatabaseStep(FaultStepBase):
    """The zone's database writers fail over to a replica in another zone, and back."""

    action: Literal["failover_database"]
    target: DatabaseTarget
    fail_back: bool = Field(True, description="on restore, make each original writer the writer "
                            "again; false: leave the database where the failover put it")


class PartitionRegionsStep(FaultStepBase):
    """Both sides up, unable to reach each other: the region loses its peer regions."""

    action: Literal["partition_regions"]
    target: PartitionTarget


class EvacuateZoneStep(FaultStepBase):
    """Traffic moved off one zone, as a zonal shift or per-zone weights do in an incident."""

    action: Literal["evacuate_zone"]
    target: ZoneTraffic


class WaitStep(StepBase):
    action: Literal["wait"]
    duration: Duration


FaultStep = (BlackholeZoneStep | BlackholeRegionStep | EvacuateRegionStep | StopInstancesStep
             | DenyCapacityStep | FailoverDatabaseStep | PartitionRegionsStep | EvacuateZoneStep)
Step = Annotated[
    Annotated[BlackholeZoneStep, Tag("blackhole_zone")]
    | Annotated[BlackholeRegionStep, Tag("blackhole_region")]
    | Annotated[EvacuateRegionStep, Tag("evacuate_region")]
    | Annotated[StopInstancesStep, Tag("stop_instances")]
    | Annotated[DenyCapacityStep, Tag("deny_capacity")]
    | Annotated[FailoverDatabaseStep, Tag("failover_database")]
    | Annotated[PartitionRegionsStep, Tag("partition_regions")]
    | Annotated[EvacuateZoneStep, Tag("evacuate_zone")]
    | Annotated[WaitStep, Tag("wait")],
    Discriminator("action"),
]


class ParallelGroup(Strict):
    parallel: list[Step] = Field(min_length=1)


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "parallel" if "parallel" in value else "step"
    return "parallel" if isinstance(value, ParallelGroup) else "step"


Item = Annotated[
    Annotated[Step, Tag("step")] | Annotated[ParallelGroup, Tag("parallel")],
    Discriminator(_item_kind),
]


# --- the rest -----------------------------------------------------------------------------------


class Guardrails(Strict):
    aws_accounts: list[AwsAccount] = []
    gcp_projects: list[GcpProject] = []
    azure_subscriptions: list[AzureSubscription] = []
    max_resources_per_step: Count = Field(500, ge=1)


class HttpProbe(Strict):
    url: str = Field(pattern=r"^https?://")
    expect_status: int = Field(200, ge=100, le=599)
    timeout: Duration = timedelta(seconds=2)
    max_latency: Duration | None = Field(None, description="slower answers fail the check")
    body_contains: str | None = Field(None, description="the body must contain this text")


class TcpProbe(Strict):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    timeout: Duration = timedelta(seconds=2)


class CloudWatchAlarmProbe(Strict):
    """Passes while the alarm is not in ALARM (OK and INSUFFICIENT_DATA pass)."""

    alarm_name: str = Field(min_length=1)
    region: AwsRegion


class PrometheusProbe(Strict):
    """An instant PromQL query; its single value must stay below and/or above the thresholds."""

    url: str = Field(pattern=r"^https?://", description="the Prometheus base URL")
    query: str = Field(min_length=1)
    below: float | None = None
    above: float | None = None
    timeout: Duration = timedelta(seconds=5)

    @model_validator(mode="after")
    def _a_threshold(self) -> PrometheusProbe:
        if self.below is None and self.above is None:
            raise ValueError("a prometheus probe needs below, above or both")
        return self


PROBE_KINDS = ("http", "tcp", "cloudwatch_alarm", "prometheus")


class Probe(Strict):
    name: str = Field(pattern=SLUG)
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    cloudwatch_alarm: CloudWatchAlarmProbe | None = None
    prometheus: PrometheusProbe | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Probe:
        kinds = [k for k in PROBE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a probe has exactly one of: {', '.join(PROBE_KINDS)}")
        return self


SHORTEST_INTERVAL = timedelta(seconds=1)


class SteadyState(Strict):
    interval: Duration = timedelta(seconds=15)
    tolerance: Count = Field(2, ge=1, description="consecutive failed checks that abort the GameDay")
    recovery_timeout: Duration = Field(
        timedelta(minutes=2), description="after the restore, how long the probes may take to pass"
    )
    probes: list[Probe] = Field(min_length=1)

    @field_validator("interval")
    @classmethod
    def _at_least_a_second(cls, interval: timedelta) -> timedelta:
        if interval < SHORTEST_INTERVAL:
            raise ValueError(f"{format_duration(interval)} is too short; check the steady state at "
                             f"most once every {format_duration(SHORTEST_INTERVAL)}")
        return interval

    @field_validator("probes")
    @classmethod
    def _unique_names(cls, probes: list[Probe]) -> list[Probe]:
        names = [p.name for p in probes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"probe names must be unique; repeated: {', '.join(duplicates)}")
        return probes


class RunbookSchedule(Strict):
    """When `gameday schedule create FILE` runs this GameDay, unless its flags say otherwise."""

    calendar: dict[str, str | int] | None = Field(
        None, description='as `temporal schedule create --calendar` takes it, e.g. {"month": '
        '"1,4,7,10", "dayOfMonth": "8-14", "dayOfWeek": "TUE", "hour": "14"}')
    quarterly: str | None = Field(None, description='e.g. "2nd tuesday 14:00 Europe/Berlin"')
    monthly: str | None = Field(None, description='e.g. "last friday 09:30 UTC"')
    time_zone: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RunbookSchedule:
        kinds = [k for k in ("calendar", "quarterly", "monthly") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("a schedule has exactly one of: calendar, quarterly, monthly")
        return self


NotifyEvent = Literal["approval", "abort", "end"]


class Notify(Strict):
    """Where to tell people: a webhook taking Slack-compatible JSON (`{"text": ...}`)."""

    webhook: str = Field(pattern=r"^https?://")
    events: list[NotifyEvent] = Field(["approval", "abort", "end"], min_length=1)


Loc = tuple[str | int, ...]


def _public_key(line: str) -> str:
    try:
        parse_public_key(line)
    except SignatureRefused as refused:
        raise ValueError(str(refused)) from None
    return line.strip()


SshPublicKey = Annotated[str, AfterValidator(_public_key)]
"""One OpenSSH public key line, as `~/.ssh/id_ed25519.pub` holds it (contract §8)."""


class KeyedApprover(Strict):
    """An approver whose approvals are checked against their own key (contract §8)."""

    id: Identity
    key: SshPublicKey = Field(description="OpenSSH public key: ssh-ed25519, ecdsa-sha2-nistp256/384/521 "
                              "or ssh-rsa (2048 bits or more)")


_IDENTITY: TypeAdapter[str] = TypeAdapter(Identity)


def _approver(value: Any, handler: Any) -> Any:
    """A mapping is a keyed approver, anything else an identity: one error per mistake, at its
    own field, instead of one per member of the union."""
    if isinstance(value, dict | KeyedApprover):
        return KeyedApprover.model_validate(value)
    return _IDENTITY.validate_python(value)


Approver = Annotated[Identity | KeyedApprover, WrapValidator(_approver)]
"""An identity alone (`approvals: asserted`, v1), or `{id, key}`."""


class Runbook(Strict):
    """A whole GameDay, as the incident commander approves it."""

    name: str = Field(pattern=SLUG)
    description: str | None = None
    approvers: list[Approver] = Field(
        min_length=1, description="identities allowed to approve, compared without case and "
        "surrounding spaces; {id, key} with an OpenSSH public key for signed approvals")
    approvals: Literal["asserted", "signed"] = Field(
        "asserted", description="signed: an approval counts only with a signature by the approver's "
        "key over this run, gate and plan (`gameday approve --sign-with KEYFILE`); asserted: the "
        "identity alone")
    approvals_required: Count = Field(1, ge=1, description="distinct approvers needed per gate")
    approval_timeout: Duration = timedelta(minutes=30)
    max_duration: Duration = Field(description="at most 168h (7 days): every fault is restored by "
                                   "start + max_duration")
    guardrails: Guardrails
    steady_state: SteadyState | None = None
    drift_interval: Duration | None = Field(
        timedelta(minutes=1), description="how often a held blackhole looks for new resources in its "
        "zone and brings them under the fault; null: never"
    )
    notify: Notify | None = None
    schedule: RunbookSchedule | None = None
    steps: list[Item] = Field(min_length=1)

    @field_validator("drift_interval")
    @classmethod
    def _drift_at_least_a_second(cls, interval: timedelta | None) -> timedelta | None:
        if interval is not None and interval < SHORTEST_INTERVAL:
            raise ValueError(f"{format_duration(interval)} is too short; look for new resources at "
                             f"most once every {format_duration(SHORTEST_INTERVAL)}")
        return interval

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        """Everything wrong across fields, each a problem at the field it is about."""
        problems = problems_of(self)
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError("runbook", "{message}", {"message": message}),
                                 loc=loc, input=None)
                for loc, message in problems
            ])
        return self

    def approver_ids(self) -> list[str]:
        """The approvers' identities, normalised (contract §7): what signals are compared with."""
        return [a.id if isinstance(a, KeyedApprover) else normalize_identity(a) for a in self.approvers]

    def approver_key(self, identity: str) -> PublicKey | None:
        """The key listed for this approver (any spelling of the identity), or None."""
        wanted = normalize_identity(identity)
        for approver in self.approvers:
            if isinstance(approver, KeyedApprover) and approver.id == wanted:
                return parse_public_key(approver.key)
        return None

    def all_steps(self) -> list[FaultStep | WaitStep]:
        steps: list[FaultStep | WaitStep] = []
        for item in self.steps:
            steps.extend(item.parallel if isinstance(item, ParallelGroup) else [item])
        return steps

    def fault_steps(self) -> list[FaultStep]:
        return [s for s in self.all_steps() if not isinstance(s, WaitStep)]

    def clouds(self) -> list[str]:
        return sorted({s.target.cloud for s in self.fault_steps()})

    def minimum_duration(self) -> timedelta:
        """The least time the steps need: sequential items add up, a group takes its longest."""
        return sum((item_time(item) for item in self.steps), timedelta())


def item_time(item: FaultStep | WaitStep | ParallelGroup) -> timedelta:
    members = item.parallel if isinstance(item, ParallelGroup) else [item]
    return max((s.duration or timedelta() for s in members), default=timedelta())


# The cross-field rules live beside the models they read; imported last, once every model exists
# (and so with this module, also where the workflow sandbox passes gameday.runbook through).
from gameday.runbook_checks import problems_of  # noqa: E402
