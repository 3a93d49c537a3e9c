"""Signed approvals (contract §8, issue 13): the runbook's keys, the workflow's refusals with their
reasons, a two-person signed start, and `gameday approve --sign-with`, on the real dev server with
signatures made by the real `ssh-keygen`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.worker import Replayer

from gameday.lab.aws import acl_snapshot
from gameday.loader import parse_runbook
from gameday.report import build_report, render_html
from gameday.runbook import Runbook
from gameday.signatures import approval_text, parse_public_key
from gameday.status import UpdateAnswer
from tests.support.gameday import aws_zone_step, final, phase_is, runbook, start, status, wait_for
from workflows.gameday import GameDayWorkflow

ROOT = Path(__file__).resolve().parent.parent
IC, SRE = "ic@example.com", "sre-lead@example.com"


def make_key(directory: Path, name: str, *kind: str) -> Path:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", *kind, "-N", "", "-C", f"{name}@laptop", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def sign(key: Path, text: str, namespace: str = "gameday") -> str:
    return subprocess.run(["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key)],
                          input=text.encode(), capture_output=True, check=True).stdout.decode()


def public_line(key: Path) -> str:
    return key.with_suffix(".pub").read_text().strip()


def fingerprint(key: Path) -> str:
    return parse_public_key(public_line(key)).fingerprint


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("approver-keys")
    return {"ic": make_key(directory, "ic", "-t", "ed25519"),
            "sre": make_key(directory, "sre", "-t", "ecdsa", "-b", "256"),
            "mallory": make_key(directory, "mallory", "-t", "ed25519")}


def signed_runbook(keys: dict[str, Path], *steps: dict[str, Any], **fields: Any) -> Runbook:
    return runbook(*steps, approvers=[{"id": IC, "key": public_line(keys["ic"])},
                                      {"id": SRE, "key": public_line(keys["sre"])}],
                   approvals="signed", **fields)


# --- the runbook ------------------------------------------------------------------------------

HEAD = "name: signed\n"
TAIL = """\
max_duration: 2h
guardrails:
  aws_accounts: ["123456789012"]
steps:
  - id: blackhole-aws-use1a
    action: blackhole_zone
    target: {cloud: aws, account: "123456789012", region: us-east-1, zone: us-east-1a}
    duration: 15m
"""


def problems(approvers: str) -> list[str]:
    runbook, found = parse_runbook(HEAD + approvers + TAIL, "rb.yaml")
    assert (runbook is None) == bool(found)
    return [str(p) for p in found]


def test_a_signed_runbook_keeps_normalised_ids_and_gives_each_key(keys):
    text = (f'approvers:\n  - id: " IC@Example.com"\n    key: "{public_line(keys["ic"])}"\n'
            f'  - {{id: {SRE}, key: "{public_line(keys["sre"])}"}}\napprovals: signed\n'
            "approvals_required: 2\n")
    book, found = parse_runbook(HEAD + text + TAIL, "rb.yaml")
    assert found == [] and book is not None
    assert book.approver_ids() == [IC, SRE]
    assert book.approver_key(" ic@EXAMPLE.com").fingerprint == fingerprint(keys["ic"])
    assert book.approver_key(SRE).kind == "ecdsa-sha2-nistp256"
    assert Runbook.model_validate_json(book.model_dump_json()) == book
    plain, found = parse_runbook(HEAD + "approvers: [ic@example.com]\n" + TAIL)
    assert found == [] and plain.approvals == "asserted" and plain.approver_key(IC) is None


def test_validate_refuses_signed_approvals_without_a_key_on_its_line(keys):
    text = f'approvers:\n  - {{id: {IC}, key: "{public_line(keys["ic"])}"}}\n  - {SRE}\napprovals: signed\n'
    assert problems(text) == [
        f"rb.yaml:4: approvers[1]: {SRE} has no key, and approvals: signed needs one per approver; "
        f'write it as {{id: {SRE}, key: "ssh-ed25519 AAAA..."}}']


def test_validate_refuses_malformed_keys_naming_the_line(keys):
    ic = public_line(keys["ic"])
    text = (f"approvers:\n  - id: {IC}\n    key: \"{ic[:40]}\"\n  - {{id: {SRE}, key: not-a-key}}\n"
            f"  - {{id: x@example.com, key: \"ssh-dss AAAAB3NzaC1kc3M=\"}}\n  - {{id: y@example.com}}\n"
            "approvals: signed\n")
    assert problems(text) == [
        "rb.yaml:4: approvers[0].key: the ssh-ed25519 key is truncated: it ends inside its public key",
        "rb.yaml:5: approvers[1].key: not an OpenSSH public key line (like 'ssh-ed25519 AAAAC3Nz... "
        "you@laptop', the contents of ~/.ssh/id_ed25519.pub)",
        "rb.yaml:6: approvers[2].key: key type 'ssh-dss' is not supported (use one of: ssh-ed25519, "
        "ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa)",
        "rb.yaml:7: approvers[3].key: required field is missing",
    ]


def test_validate_refuses_one_key_for_two_approvers(keys):
    """A quorum of distinct approvers must be a quorum of distinct keys."""
    ic = public_line(keys["ic"])
    text = (f'approvers:\n  - {{id: {IC}, key: "{ic}"}}\n  - {{id: {SRE}, key: "{ic}"}}\n'
            "approvals: signed\napprovals_required: 2\n")
    assert problems(text) == [f"rb.yaml:4: approvers[1].key: this key is also listed for {IC}; each "
                              "approver needs a key of their own"]


# --- the workflow -----------------------------------------------------------------------------


async def _approve(handle, **payload: Any) -> UpdateAnswer:
    return await handle.execute_update("approve", payload, result_type=UpdateAnswer)


def test_a_signed_two_person_start_refuses_every_bad_signature_with_its_reason(
        aws, client, runner, task_queue, keys):
    before = acl_snapshot()
    book = signed_runbook(keys, aws_zone_step(duration="1s"), approvals_required=2)
    ic_fp, sre_fp, mallory_fp = (fingerprint(keys[k]) for k in ("ic", "sre", "mallory"))

    async def scenario():
        handle = await start(client, book, task_queue)
        waiting = await wait_for(handle, phase_is("awaiting_approval"))
        assert waiting.approvals == "signed"
        run, plan = handle.id, waiting.plan_hash
        text = approval_text(run, "start", plan)
        good = sign(keys["ic"], text)
        lines = good.splitlines()
        other_run = approval_text("test-another-run", "start", plan)
        other_gate = approval_text(run, "blackhole-use1a", plan)
        other_plan = approval_text(run, "start", "sha256:" + "0" * 32)
        attempts = {
            "no signature": {"approver": IC},
            "malformed armor": {"approver": IC, "signature": "ssh-ed25519 AAAA I approve"},
            "truncated": {"approver": IC, "signature": "\n".join(lines[:-2])},
            "wrong namespace": {"approver": IC, "signature": sign(keys["ic"], text, "git")},
            "another person's key": {"approver": IC, "signature": sign(keys["mallory"], text)},
            "another approver's key": {"approver": IC, "signature": sign(keys["sre"], text)},
            "another run": {"approver": IC, "signature": sign(keys["ic"], other_run),
                            "signed_text": other_run},
            "another gate": {"approver": IC, "signature": sign(keys["ic"], other_gate),
                             "signed_text": other_gate},
            "another plan": {"approver": IC, "signature": sign(keys["ic"], other_plan),
                             "signed_text": other_plan},
            "another plan, sent as the plan": {"approver": IC, "signature": sign(keys["ic"], other_plan),
                                               "plan_hash": "sha256:" + "0" * 32},
            "another run, unexplained": {"approver": IC, "signature": sign(keys["ic"], other_run)},
        }
        answers = {why: await _approve(handle, **payload) for why, payload in attempts.items()}
        still = await status(handle)
        counted = await _approve(handle, approver=" IC@example.com", signature=good, signed_text=text,
                                 note="go")
        board = (await handle.query("__temporal_workflow_metadata")).current_details
        again = await _approve(handle, approver=IC, signature=good)
        # the second approver through the plain signal, as `temporal workflow signal` sends it
        await handle.signal("approve", {"approver": SRE, "signature": sign(keys["sre"], text)})
        started = await wait_for(handle, lambda s: s.phase != "awaiting_approval", what="the start")
        closed = await final(handle)
        # replay-safe: the recorded history replays to the same decisions, in the sandbox
        replayer = Replayer(workflows=[GameDayWorkflow], data_converter=client.data_converter)
        await replayer.replay_workflow(await handle.fetch_history())
        return run, plan, answers, still, counted, again, started, closed, board

    run, plan, answers, still, counted, again, started, result, board = runner.run(scenario())
    text = approval_text(run, "start", plan)
    assert not any(a.accepted for a in answers.values())
    reasons = {why: a.detail for why, a in answers.items()}
    prefix = f"{IC}'s signature for start does not count: "
    assert reasons == {
        "no signature": f"approvals of this runbook must be signed, and {IC}'s approval of start carries "
                        f"no signature (gameday approve {run} --as {IC} --sign-with KEYFILE)",
        "malformed armor": prefix + "the signature is not an armored SSH signature (it must start "
                           "with -----BEGIN SSH SIGNATURE-----, as ssh-keygen -Y sign writes it)",
        "truncated": prefix + "the signature is truncated: it has no -----END SSH SIGNATURE----- line",
        "wrong namespace": prefix + "the signature is for namespace 'git', not 'gameday' (sign with "
                           "ssh-keygen -Y sign -n gameday)",
        "another person's key": prefix + f"the signature was made with key {mallory_fp}, not the "
                                f"approver's key {ic_fp}",
        "another approver's key": prefix + f"the signature was made with key {sre_fp}, not the "
                                  f"approver's key {ic_fp}",
        "another run": prefix + f"the signature by key {ic_fp} is genuine but it was made for run "
                       f"test-another-run, not this run {run}",
        "another gate": prefix + f"the signature by key {ic_fp} is genuine but it was made for gate "
                        f"blackhole-use1a, not start",
        "another plan": prefix + f"the signature by key {ic_fp} is genuine but it was made for plan "
                        f"sha256:{'0' * 32}, not this run's plan {plan}",
        "another plan, sent as the plan": f"plan hash sha256:{'0' * 32} does not match the plan {plan}",
        "another run, unexplained": prefix + f"the signature by key {ic_fp} is not over the text {text} "
                                    "(it was made for another run, gate or plan, or altered)",
    }
    # every refusal is in the status, with its reason, and nothing started
    assert still.phase == "awaiting_approval"
    refused = [e for e in still.events if e.kind == "approval_refused"]
    assert [e.detail for e in refused] == list(reasons.values())
    assert all(e.by == IC for e in refused)
    assert counted.accepted and counted.detail == f"{IC} approved start (1/2) with key {ic_fp}: go"
    assert (again.accepted, again.detail) == (False, f"{IC} has already approved start")
    # the Temporal UI's board: the signed command, who approved with which key, the last refusal
    assert f"`gameday approve {run} --as <approver> --sign-with <your key file>`" in board
    assert f"approved by {IC} (key {ic_fp})" in board
    assert f"refused approvals of start: {len(reasons)}; the last: {reasons['another run, unexplained']}" \
        in board
    assert started.phase in ("running", "completed")
    approved = [e for e in result.events if e.kind == "approved"]
    assert [(e.by, e.fingerprint) for e in approved] == [(IC, ic_fp), (SRE, sre_fp)]
    assert approved[-1].detail == f"{SRE} approved start (2/2) with key {sre_fp}"
    assert (result.outcome, result.restored) == ("completed", True)
    assert acl_snapshot() == before

    report = build_report(run, result, book)
    (gate,) = report.gates
    assert [(a.by, a.fingerprint) for a in gate.approvals] == [(IC, ic_fp), (SRE, sre_fp)]
    assert gate.refusals == len(reasons) + 1
    page = render_html(report)
    assert ic_fp in page and sre_fp in page
    assert "is genuine but it was made for run test-another-run" in page


def test_a_signed_step_gate_and_an_unsigned_rejection(aws, client, runner, task_queue, keys):
    """A step's gate is signed over the step's id; stopping is always safe, so a rejection needs no
    signature."""
    before = acl_snapshot()
    book = signed_runbook(keys, aws_zone_step(duration="1s", approval="required"),
                          aws_zone_step("blackhole-use1b", "us-east-1b", duration="1s",
                                        approval="required"))

    async def scenario():
        handle = await start(client, book, task_queue)
        waiting = await wait_for(handle, phase_is("awaiting_approval"))
        run, plan = handle.id, waiting.plan_hash
        start_signed = await _approve(handle, approver=SRE,
                                      signature=sign(keys["sre"], approval_text(run, "start", plan)))
        await wait_for(handle, lambda s: s.pending_approval == "blackhole-use1a", what="the step gate")
        reused = await _approve(handle, approver=SRE, step="blackhole-use1a",
                                signature=sign(keys["sre"], approval_text(run, "start", plan)))
        step_signed = await _approve(handle, approver=IC, step="blackhole-use1a",
                                     signature=sign(keys["ic"], approval_text(run, "blackhole-use1a", plan)))
        await wait_for(handle, lambda s: s.pending_approval == "blackhole-use1b", what="the second gate")
        rejected = await handle.execute_update("reject", {"approver": SRE, "reason": "enough"},
                                               result_type=UpdateAnswer)
        return start_signed, reused, step_signed, rejected, await final(handle)

    start_signed, reused, step_signed, rejected, result = runner.run(scenario())
    assert start_signed.accepted and step_signed.accepted
    assert not reused.accepted and "is not over the text gameday-approval:v1:" in reused.detail
    assert ":blackhole-use1a:" in reused.detail
    assert rejected.accepted
    assert result.outcome == "rejected" and result.restored is True
    assert result.steps[0].approved_by == [IC] and result.steps[1].state == "skipped"
    assert acl_snapshot() == before


def test_an_asserted_runbook_checks_a_signature_it_is_given(aws, client, runner, task_queue, keys):
    """`approvals: asserted` (v1) counts an identity alone, but a signature that fails is never
    taken as an approval, and a good one records its key."""
    book = runbook(aws_zone_step(duration="1s"), approvers=[{"id": IC, "key": public_line(keys["ic"])},
                                                             SRE], approvals_required=2)

    async def scenario():
        handle = await start(client, book, task_queue)
        waiting = await wait_for(handle, phase_is("awaiting_approval"))
        text = approval_text(handle.id, "start", waiting.plan_hash)
        bad = await _approve(handle, approver=IC, signature=sign(keys["mallory"], text))
        good = await _approve(handle, approver=IC, signature=sign(keys["ic"], text))
        plain = await _approve(handle, approver=SRE)
        return bad, good, plain, await final(handle)

    bad, good, plain, result = runner.run(scenario())
    assert not bad.accepted and "not the approver's key" in bad.detail
    assert good.accepted and good.detail.endswith(f"with key {fingerprint(keys['ic'])}")
    assert plain.accepted and plain.detail == f"{SRE} approved start (2/2)"
    assert result.outcome == "completed"


# --- the command line -------------------------------------------------------------------------


def _gameday(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_gameday_approve_sign_with(servers, client, runner, task_queue, aws, tmp_path, keys):
    before = acl_snapshot()
    env = {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": task_queue,
           "XDG_STATE_HOME": str(tmp_path / "state")}
    file = tmp_path / "signed.yaml"
    file.write_text(f"""\
name: signed-cli
approvers:
  - id: {IC}
    key: "{public_line(keys["ic"])}"
approvals: signed
max_duration: 10m
guardrails: {{aws_accounts: ["123456789012"]}}
steps:
  - id: blackhole-use1a
    action: blackhole_zone
    target: {{cloud: aws, account: "123456789012", region: us-east-1, zone: us-east-1a,
             tags: {{gameday: enabled}}}}
    duration: 1s
""")
    run_id = f"signed-{uuid.uuid4().hex[:8]}"
    started = _gameday(env, "run", str(file), "--id", run_id)
    assert started.returncode == 0, started.stderr
    assert f"gameday approve {run_id} --as <approver> --sign-with <your key file>" in started.stderr

    unsigned = _gameday(env, "approve", run_id, "--as", IC)
    assert unsigned.returncode == 1
    assert unsigned.stderr == (f"gameday: approval refused: approvals of this runbook must be signed, "
                               f"and {IC}'s approval of start carries no signature (gameday approve "
                               f"{run_id} --as {IC} --sign-with KEYFILE)\n")
    wrong = _gameday(env, "approve", run_id, "--as", IC, "--sign-with", str(keys["mallory"]))
    assert wrong.returncode == 1
    assert f"made with key {fingerprint(keys['mallory'])}, not the approver's key" in wrong.stderr
    missing = _gameday(env, "approve", run_id, "--as", IC, "--sign-with", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stderr) == (1, f"gameday: --sign-with: no such key file "
                                                       f"{tmp_path / 'nope'}\n")

    signed = _gameday(env, "approve", run_id, "--as", IC, "--sign-with", str(keys["ic"]))
    assert signed.returncode == 0, signed.stderr
    ic_fp = fingerprint(keys["ic"])
    assert signed.stdout == f"{IC} approved start (1/1) with key {ic_fp}\n"

    result = runner.run(final(client.get_workflow_handle(run_id)))
    assert (result.outcome, result.restored) == ("completed", True)
    assert acl_snapshot() == before
    shown = _gameday(env, "status", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [e["fingerprint"] for e in json.loads(shown.stdout)["events"] if e["kind"] == "approved"] \
        == [ic_fp]
    report = _gameday(env, "report", run_id, "--out", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    assert ic_fp in (tmp_path / "report.html").read_text()


def test_a_signed_runbook_plans_in_the_sandbox(aws, client, runner, task_queue, keys, monkeypatch):
    """Every workflow that takes the runbook loads its keys inside Temporal's sandbox: cryptography's
    backend, imported there on demand, must be the worker's own (imported anew, it aborts)."""
    from gameday import operations

    monkeypatch.setenv("GAMEDAY_TASK_QUEUE", task_queue)
    planned = runner.run(operations.plan(client, signed_runbook(keys), "test", timeout=60))
    assert [s.step_id for s in planned.steps] == ["blackhole-use1a"]
