"""Activity failures as the Temporal UI shows them: one sentence naming the cause as the failure's
message (a pending activity's "Last Failure", a failed activity's event), the full text of the
cloud's answer and of every exception it was raised from in the failure's details.

Against real servers: a GameDay on a real worker whose restore, then whose apply, meets a cloud
error of several lines injected through the lab's fault rules; and the mapping itself with the
SDKs' own exceptions, round-tripped through Temporal's failure converter.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from botocore.exceptions import ClientError
from google.api_core import exceptions as google_exceptions
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError

from activities.aws.api import _error as aws_error
from activities.base import restore_errors, temporal_errors
from gameday.codec import DATA_CONVERTER
from gameday.errors import CloudError, Refused, TargetNotFound, UserError
from gameday.lab.aws import acl_snapshot
from gameday.lab.faults import FaultRule
from tests.support.gameday import (
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.errors import describe

DENIED = ("You are not authorized to perform this operation.\n"
          "Encoded authorization failure message: 4f2a9c-denied-by-scp\n"
          "RequestId: 7d1e0c3b-aaaa-bbbb-cccc-000000000000")
"""A cloud's answer of several lines, as IAM's denials come: the cause first, the rest details."""
DENIED_AT_LENGTH = DENIED.replace("4f2a9c-denied-by-scp", "4f2a9c-denied-by-scp" + "Zm9v" * 800)
"""The same with an encoded authorization message as long as real ones: a failure over 4 KB is
kept by Temporal as "Failure exceeds size limit." instead."""
MALFORMED = ("The network ACL entry is malformed.\n"
             "Details: rule 1 overlaps rule 2\n"
             "RequestId: 0c3b7d1e-aaaa-bbbb-cccc-000000000000")


def _details(failure: Failure) -> dict[str, Any]:
    payloads = failure.application_failure_info.details.payloads
    [details] = DATA_CONVERTER.payload_converter.from_payloads(list(payloads))
    return details


def _through_temporal(error: BaseException) -> BaseException:
    """`error` as the workflow receives it: converted to a Temporal failure and back."""
    failure = Failure()
    DATA_CONVERTER.failure_converter.to_failure(error, DATA_CONVERTER.payload_converter, failure)
    return DATA_CONVERTER.failure_converter.from_failure(failure, DATA_CONVERTER.payload_converter)


def _failure_of(wrapped: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        wrapped()
    return raised.value


async def _restore_last_failure(handle: WorkflowHandle[Any, Any], timeout: float = 60) -> Failure:
    """The last failure of the pending restore, once it has failed at least once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if (pending.activity_type.name == "aws.restore_blackhole_zone"
                    and pending.HasField("last_failure")):
                return pending.last_failure
        await asyncio.sleep(0.2)
    raise AssertionError("the restore never failed")


# --- on a real worker --------------------------------------------------------------------------


def test_a_retrying_restore_shows_one_sentence_as_its_last_failure(aws, servers, client, runner,
                                                                   task_queue):
    before = acl_snapshot()

    async def scenario() -> tuple[Failure, Any]:
        handle = await start(client, runbook(aws_zone_step(duration="3s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"), what="the fault")
        servers.aws_faults(FaultRule(match="ReplaceNetworkAclAssociation", status=403,
                                     code="UnauthorizedOperation", message=DENIED_AT_LENGTH))
        try:
            last = await _restore_last_failure(handle)
        finally:
            servers.aws_faults()
        return last, await final(handle)

    last, result = runner.run(scenario())
    assert "\n" not in last.message
    assert last.message.startswith("AWS refused "), last.message
    assert last.message.endswith(
        "UnauthorizedOperation: You are not authorized to perform this operation."), last.message
    assert not last.HasField("cause"), "a cause would show the SDK's raw text first"
    assert last.ByteSize() < 4096
    assert last.application_failure_info.type == "CloudError"
    assert not last.application_failure_info.non_retryable
    details = _details(last)
    assert "Encoded authorization failure message: 4f2a9c-denied-by-scp" in details["message"]
    assert any(cause.startswith("botocore.exceptions.ClientError: ") and "RequestId: 7d1e0c3b" in cause
               for cause in details["causes"]), details["causes"]
    assert result.outcome == "completed" and result.restored is True
    assert acl_snapshot() == before


def test_a_failed_apply_is_one_sentence_in_the_history_and_the_status(aws, servers, client,
                                                                      runner, task_queue):
    before = acl_snapshot()

    async def scenario() -> tuple[Failure, Any]:
        handle = await start(client, runbook(aws_zone_step(duration="3s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        servers.aws_faults(FaultRule(match="CreateNetworkAclEntry", status=400,
                                     code="InvalidParameterValue", message=MALFORMED))
        try:
            await approve(handle)
            result = await final(handle)
        finally:
            servers.aws_faults()
        failed = [event.activity_task_failed_event_attributes.failure
                  async for event in handle.fetch_history_events()
                  if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
        assert failed, "no activity failed"
        return failed[0], result

    failure, result = runner.run(scenario())
    assert "\n" not in failure.message
    assert failure.message.startswith("AWS refused "), failure.message
    assert failure.message.endswith("InvalidParameterValue: The network ACL entry is malformed."), \
        failure.message
    assert not failure.HasField("cause")
    assert failure.application_failure_info.type == "CloudError"
    assert failure.application_failure_info.non_retryable
    assert "Details: rule 1 overlaps rule 2" in _details(failure)["message"]
    assert result.outcome == "failed"
    [step] = result.steps
    assert step.error == failure.message
    assert result.reason is not None and "\n" not in result.reason
    assert failure.message in result.reason, result.reason
    assert acl_snapshot() == before


# --- the mapping, with the SDKs' own exceptions ------------------------------------------------


def _client_error(code: str, message: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeNetworkAcls")


def test_a_cloud_error_of_several_lines_is_one_sentence_and_the_workflow_reads_it():
    def denied() -> None:
        try:
            raise _client_error("UnauthorizedOperation", DENIED, 403)
        except ClientError as exc:
            raise aws_error(exc, "reading the ACLs of vpc-1") from exc

    failure = _failure_of(temporal_errors(denied))
    sentence = ("AWS refused reading the ACLs of vpc-1: UnauthorizedOperation: You are not "
                "authorized to perform this operation.")
    assert failure.message == sentence
    assert (failure.type, failure.non_retryable, failure.next_retry_delay) == ("CloudError", True,
                                                                                 None)
    [details] = failure.details
    assert details["message"].endswith(DENIED)
    assert "RequestId: 7d1e0c3b" in details["causes"][0]
    assert describe(_through_temporal(failure)) == sentence


def test_an_unexpected_exception_is_one_retryable_sentence_with_its_traceback():
    def buggy() -> None:
        {}["x"]

    failure = _failure_of(temporal_errors(buggy))
    assert failure.message == "the activity failed: KeyError: 'x'"
    assert (failure.type, failure.non_retryable) == ("KeyError", False)
    [details] = failure.details
    assert details["error"] == "builtins.KeyError"
    assert details["traceback"].startswith("Traceback (most recent call last):")
    assert "in buggy" in details["traceback"] and details["traceback"].rstrip().endswith("KeyError: 'x'")
    assert describe(_through_temporal(failure)) == failure.message
    assert _failure_of(restore_errors(buggy)).message == failure.message


def test_an_sdk_error_that_escapes_names_its_cloud_and_never_the_raw_request():
    def not_found() -> None:
        raise google_exceptions.NotFound(
            "GET http://127.0.0.1:9/compute/v1/projects/p/zones/z/instances/web-1: The resource "
            "'projects/p/zones/z/instances/web-1' was not found\nreason: notFound")

    def azure_missing() -> None:
        raise HttpResponseError(message="(ResourceNotFound) The Resource 'web-1' was not found.\n"
                                        "Code: ResourceNotFound\nMessage: The Resource 'web-1' "
                                        "was not found.")

    gcp = _failure_of(restore_errors(not_found))
    assert gcp.message == ("the activity failed: GCP NotFound: 404 The resource "
                           "'projects/p/zones/z/instances/web-1' was not found")
    assert "GET http://127.0.0.1:9/compute" in gcp.details[0]["message"]
    azure = _failure_of(temporal_errors(azure_missing))
    assert azure.message == ("the activity failed: Azure HttpResponseError: (ResourceNotFound) "
                             "The Resource 'web-1' was not found.")
    assert azure.type == "HttpResponseError"


def test_a_failure_stays_small_enough_for_temporal_to_keep_it():
    """Under 4 KB with room for the worker's own frames in the stack trace."""
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        raise ValueError("the state was unreadable: " + "x" * 10_000)

    def long_answer() -> None:
        try:
            raise _client_error("UnauthorizedOperation", DENIED_AT_LENGTH * 3, 403)
        except ClientError as exc:
            raise aws_error(exc, "reading the ACLs of vpc-1") from exc

    for wrapped in (temporal_errors(lambda: deep(60)), restore_errors(long_answer)):
        error = _failure_of(wrapped)
        failure = Failure()
        DATA_CONVERTER.failure_converter.to_failure(error, DATA_CONVERTER.payload_converter,
                                                    failure)
        assert failure.ByteSize() < 2800, (error.message, failure.ByteSize())
    assert error.details[0]["causes"][0].rstrip().endswith("RequestId: 7d1e0c3b-aaaa-bbbb-cccc-000000000000")


def test_the_error_types_and_retry_rules_stay_as_they_were():
    def raising(error: Exception) -> Any:
        def fail() -> None:
            raise error
        return fail

    cases = [
        (temporal_errors, TargetNotFound("step s: zone z does not exist\nin project p"),
         ("TargetNotFound", True, None)),
        (temporal_errors, Refused("step s: a guardrail refuses\nthe zone"), ("Refused", True, None)),
        (temporal_errors, UserError("step s: unsupported\nhere"), ("UserError", True, None)),
        (temporal_errors, CloudError("GCP throttled x\nquota", retryable=True, retry_after=2.0),
         ("CloudThrottled", False, timedelta(seconds=2))),
        (temporal_errors, CloudError("Azure failed x\nbody", retryable=True),
         ("CloudError", False, None)),
        (restore_errors, CloudError("AWS refused x\nbody", retryable=False),
         ("CloudError", False, None)),
        (restore_errors, TargetNotFound("step s: gone\nreally"), ("RestoreBlocked", False, None)),
    ]
    for wrap, error, expected in cases:
        failure = _failure_of(wrap(raising(error)))
        assert (failure.type, failure.non_retryable, failure.next_retry_delay) == expected, error
        assert failure.message == str(error).splitlines()[0]
        assert failure.details[0]["message"] == str(error)


def test_cancellation_passes_through_untouched():
    for error in (CancelledError("the activity was cancelled"), asyncio.CancelledError()):
        def cancelled(error: BaseException = error) -> None:
            raise error

        for wrap in (temporal_errors, restore_errors):
            with pytest.raises(type(error)) as raised:
                wrap(cancelled)()
            assert raised.value is error


# --- the transient policy's leftovers ------------------------------------------------------------


def test_azure_reads_of_vms_nics_and_profiles_are_sent_again_after_a_5xx(servers):
    from activities.azure import AzureRegionEvacuation, AzureZoneBlackhole
    from gameday.plan import StepRequest
    from gameday.runbook import BlackholeZoneStep, EvacuateRegionStep
    from tests.support.clouds import AzureLab

    lab = AzureLab(servers)
    lab.seed()
    guardrails = runbook().guardrails
    zone = BlackholeZoneStep.model_validate(lab.zone_step("azure-zone", "5m"))
    lab.faults(FaultRule(match="/virtualMachines", status=503, code="ServiceUnavailable", count=2),
               FaultRule(match="/networkInterfaces", status=502, code="BadGateway", count=2))
    try:
        resolved = AzureZoneBlackhole().resolve(StepRequest(run_id="failures", step=zone,
                                                            guardrails=guardrails))
        vm_listings, nic_listings = lab.calls("/virtualMachines"), lab.calls("/networkInterfaces")
    finally:
        lab.faults()
    assert len(resolved.resources) == lab.target_count()
    assert [call["injected"] for call in vm_listings] == [True, True, False]
    assert [call["injected"] for call in nic_listings][:3] == [True, True, False]

    region = EvacuateRegionStep.model_validate({
        "id": "evacuate-eastus", "action": "evacuate_region",
        "target": {"cloud": "azure", "subscription": lab.subscription,
                   "resource_group": lab.resource_group, "region": "eastus",
                   "traffic_manager_profiles": ["shop-tm"]}})
    lab.faults(FaultRule(match="/shop-tm", status=500, code="InternalServerError", count=2))
    try:
        evacuated = AzureRegionEvacuation().resolve(StepRequest(run_id="failures", step=region,
                                                                guardrails=guardrails))
        profile_reads = lab.calls("/shop-tm")
    finally:
        lab.faults()
    assert evacuated.resources
    assert [call["injected"] for call in profile_reads] == [True, True, False]


ALARMS = "POST /"
"""The key the AWS proxy gives CloudWatch's calls (their protocol names no action it reads)."""


def test_a_cloudwatch_probe_sends_its_call_once(servers, runner):
    """Probes retry on their own schedule: botocore's `total_max_attempts` 1 is one send (its
    `max_attempts` 1 would be one retry, two sends)."""
    import boto3

    from activities.probes import run_probe
    from gameday.runbook import Probe

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    cloudwatch.put_metric_alarm(AlarmName="failures-5xx", MetricName="5xx", Namespace="shop",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanThreshold")
    probe = Probe.model_validate({"name": "alarm", "cloudwatch_alarm": {
        "alarm_name": "failures-5xx", "region": "us-east-1"}})
    servers.aws_faults(FaultRule(match=ALARMS, status=503, code="ServiceUnavailable"))
    try:
        import httpx

        async def check() -> Any:
            async with httpx.AsyncClient() as http:
                return await run_probe(probe, http)

        result = runner.run(check())
        sent = servers.aws_calls(ALARMS)
    finally:
        servers.aws_faults()
    assert not result.ok
    assert len(sent) == 1, [call["key"] for call in sent]


def test_an_activity_that_touches_no_cloud_fails_in_one_sentence_too(servers, runner):
    """Run state and leases ask Temporal; a failure there reads like a fault's: one sentence
    naming what failed, the traceback in the details, retried as any exception is."""
    from temporalio.client import Client
    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from activities.runs import RunStateActivities

    async def asking():
        client = await Client.connect(servers.env["TEMPORAL_ADDRESS"])
        try:  # Temporal refuses an empty workflow id as an invalid argument
            await ActivityEnvironment().run(RunStateActivities(client).run_state, "")
        except ApplicationError as failure:
            return failure
        raise AssertionError("asking about an empty workflow id succeeded")

    failure = runner.run(asking())
    assert failure.message.startswith("the activity failed: RPCError: "), failure.message
    assert "\n" not in failure.message and not failure.non_retryable
    assert "Traceback" in failure.details[0]["traceback"]
