"""A restore under sustained throttling must finish in a handful of attempts, not starve.

Found by the fault runs: with 30% of GCP calls failing (429/503), a GameDay's GCP restore kept
failing attempt after attempt for many minutes, its deny rules still in place (a leak while it
lasts). Each attempt calls the SDK with its retries off (`retry=None`), re-reads every instance
already restored by earlier attempts and polls each operation, so one transient failure among
a dozen calls throws the whole attempt away; with RESTORE_RETRY's 30 s ceiling the restore is
expected to take tens of minutes.
"""

from __future__ import annotations

from activities.gcp import GcpZoneBlackhole
from gameday.errors import CloudError
from gameday.lab.faults import FaultRule
from gameday.plan import FaultRequest, PrepareRequest, StepRequest
from gameday.runbook import BlackholeZoneStep
from tests.faults.harness import THROTTLE_CODES
from tests.support.clouds import GcpLab
from tests.support.gameday import runbook

RUN = "faults-throttled-restore"
ATTEMPTS = 10
"""About two and a half minutes of RESTORE_RETRY backoff (1, 2, 4, 8, 16, then 30 s)."""


def test_gcp_restore_finishes_within_ten_attempts_when_30_percent_of_calls_fail(servers):
    lab = GcpLab(servers)
    lab.seed()
    before = lab.snapshot()
    guardrails = runbook().guardrails
    step = BlackholeZoneStep.model_validate(lab.zone_step("gcp-zone", "5m"))
    fault = GcpZoneBlackhole()
    resolved = fault.resolve(StepRequest(run_id=RUN, step=step, guardrails=guardrails))
    checkpoint = fault.prepare(PrepareRequest(run_id=RUN, step=step, resolved=resolved,
                                              guardrails=guardrails))
    request = FaultRequest(checkpoint=checkpoint, guardrails=guardrails)
    fault.apply(request)
    assert lab.blackholed()

    codes = THROTTLE_CODES["gcp"]
    lab.faults(FaultRule(status=429, code=codes[429], rate=0.15, retry_after=0),
               FaultRule(status=503, code=codes[503], rate=0.15 / 0.85), seed=11)
    failures: list[str] = []
    try:
        for _ in range(ATTEMPTS):
            try:
                fault.restore(request)
                break
            except CloudError as error:
                failures.append(str(error))
    finally:
        lab.faults()
    restored = lab.snapshot() == before
    fault.restore(request)  # leave the lab as it was, whatever the verdict
    assert lab.snapshot() == before
    assert restored, f"{len(failures)} restore attempts failed; the last: {failures[-1]}"
