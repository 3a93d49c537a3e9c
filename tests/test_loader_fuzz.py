"""A fuzz of the loader (issue 12): random YAML-ish text and random documents (aliases, deep nesting,
huge numbers, odd unicode, `${` forms) never raise, never hang and stay within a memory bound; the
inputs that broke it before are kept as examples."""

from __future__ import annotations

import time
import tracemalloc

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gameday.loader import parse_runbook

VALID = """\
name: fuzz
approvers: [ic@example.com]
max_duration: 2h
guardrails: {aws_accounts: ["123456789012"]}
steps:
  - id: s
    action: blackhole_zone
    target: {cloud: aws, account: "123456789012", region: us-east-1, zone: us-east-1a}
    duration: 15m
"""
BROKE_BEFORE = [
    # defect 3: an alias bomb (80 s and 1.2 GB), 400 levels, a huge duration
    'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f'{n}: &{n} [{",".join(["*" + p] * 9)}]\n' for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
    "a: " + "[" * 400 + "]" * 400,
    VALID.replace("max_duration: 2h", "max_duration: 99999999999999999999999s"),
    VALID.replace("max_duration: 2h", "max_duration: 100000000h"),
    # found by this fuzz: int() of thousands of digits, a validation error under a merged key
    "max_resources_per_step: " + "9" * 5000,
    "base: &b {id: s, colour: red}\nname: x\nsteps: [{<<: *b, action: wait, duration: 1s}]\n",
    VALID.replace("ic@example.com", "${APPROVER"),
    "!!int ", "!!set ",  # ruamel's constructors: IndexError, AttributeError
    "&a9 [&a0 null, &a8 [&a6 {name: &a5 {name: [[null]]}}, &a7 {<<: *a5}]]",  # a merged map's lines
    VALID.replace("ic@example.com", "$${x}${Y:-}${"),
]

YAMLISH = st.lists(st.sampled_from(list("[]{}:,-&*!|>'\"#%@`?$ \n\t.09az_=<")
                                   + ["${", "$${", ":-", "\u0085", "\u2028", "\ufeff", "\U0001f600",
                                      "\x00", "\ud800", "é", "ǅ", "- ", ": ", "  ", "&a ", "*a", "<<: ",
                                      "name", "steps", "!!int ", "!!binary ", "!!set ", "? ", "---\n"]),
                   max_size=200).map("".join)
KEYS = st.sampled_from(["name", "approvers", "approvals_required", "max_duration", "approval_timeout",
                        "guardrails", "aws_accounts", "steps", "id", "action", "target", "cloud",
                        "zone", "region", "duration", "parallel", "steady_state", "interval", "probes",
                        "http", "url", "<<", "x"])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.sampled_from(["9" * 2000, "1e999", "99999999999999999999999s", "0s", "1ms", "168h",
                              "${X}", "${X:-d}", "$${", "${", "wait", "blackhole_region", "aws",
                              "us-east-1", "us-east-1a", "\u2028", "ǅ", "", " "])
           | st.text(max_size=12))


def _render(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if not isinstance(value, float) or value == value else ".nan"


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A flow-style YAML document with anchors, aliases to them and, sometimes, deep nesting."""
    anchors: list[str] = []

    def node(depth: int) -> str:
        choice = draw(st.integers(0, 9)) if depth < draw(st.sampled_from([4, 8, 80])) else 0
        if choice <= 4:
            text = _render(draw(SCALARS))
        elif choice <= 6:
            text = "[" + ", ".join(node(depth + 1) for _ in range(draw(st.integers(0, 4)))) + "]"
        elif choice <= 8:
            pairs = {draw(KEYS): node(depth + 1) for _ in range(draw(st.integers(0, 4)))}
            text = "{" + ", ".join(f"{k}: {v}" for k, v in pairs.items()) + "}"
        else:
            text = f"*{draw(st.sampled_from(anchors))}" if anchors else "null"
        if not text.startswith("*") and draw(st.integers(0, 4)) == 0:
            anchors.append(f"a{len(anchors)}")
            text = f"&{anchors[-1]} {text}"
        return text

    return node(0)


def _check(text: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        runbook, problems = parse_runbook(text, "rb.yaml", {"X": "x", "APPROVER": "ic@example.com"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (runbook is None) == bool(problems)
    assert all(str(p).startswith("rb.yaml:") and "\n" not in str(p) for p in problems), problems
    assert time.monotonic() - started < 5
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_any_yamlish_text_is_a_runbook_or_located_problems(text):
    _check(text)


@FUZZ
@given(documents())
def test_any_document_is_a_runbook_or_located_problems(text):
    _check(text)
    _check("name: x\nsteps: " + text + "\n")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(VALID.splitlines()), st.sampled_from([*BROKE_BEFORE[2:], "*x", "&x", "${Q}"]),
       st.booleans())
def test_a_valid_runbook_with_one_line_broken(line, replacement, prefix):
    key = line.split(":")[0]
    broken = f"{key}: {replacement}" if prefix and ":" in line else replacement
    _check(VALID.replace(line, broken))


def test_the_inputs_that_broke_it_before():
    for text in BROKE_BEFORE:
        _check(text)


@example(VALID)
@settings(max_examples=1, deadline=None)
@given(st.just(VALID))
def test_the_valid_runbook_stays_valid(text):
    runbook, problems = parse_runbook(text, "rb.yaml", {})
    assert problems == [] and runbook is not None
