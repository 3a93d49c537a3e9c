"""Hostile YAML (defect 3): each file gets one sentence per problem, quickly and in bounded memory,
because the size, depth, aliases and expanded values are limited before Python objects are built."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from gameday.loader import MAX_BYTES, check_runbook, parse_runbook

ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f'{name}: &{name} [{", ".join(["*" + previous] * 9)}]\n'
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True))
NESTED = "name: x\nsteps: " + "[" * 400 + "]" * 400 + "\n"
NESTED_BLOCK = "name: x\n" + "".join(" " * i + "steps:\n" for i in range(400))
HUGE_NUMBER = "name: x\nmax_resources_per_step: " + "9" * 100_000 + "\n"
HUGE_DURATION = """\
name: x
approvers: [ic@example.com]
max_duration: 99999999999999999999999s
guardrails: {}
steps: [{id: soak, action: wait, duration: 1m}]
"""
MANY_VALUES = "".join(f"k{i}: {i}\n" for i in range(50_000))


def measured(text: str):
    """(problems as lines, CPU seconds, peak bytes allocated) of parsing `text`; the time is taken
    without tracemalloc, which slows allocation several times."""
    started = time.process_time()
    runbook, problems = parse_runbook(text, "rb.yaml")
    elapsed = time.process_time() - started
    tracemalloc.start()
    try:
        parse_runbook(text, "rb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert runbook is None
    return [str(p) for p in problems], elapsed, peak


@pytest.mark.parametrize("text, expected", [
    (ALIAS_BOMB, ["rb.yaml:4: yaml: more than 5000 values once aliases are expanded; a runbook needs "
                  "a few hundred"]),
    (NESTED, ["rb.yaml:2: yaml: nested more than 64 levels deep"]),
    ("[" * 1_000_000, ["rb.yaml:1: yaml: nested more than 64 levels deep"]),
    (NESTED_BLOCK, ["rb.yaml:66: yaml: nested more than 64 levels deep"]),
    (HUGE_NUMBER, ["rb.yaml:2: yaml: a number of more than 1000 digits"]),
    (HUGE_DURATION, ["rb.yaml:3: max_duration: '99999999999999999999999s' is longer than 168h (7 days), "
                     "the longest a GameDay may last"]),
    ("".join(f"a{i}: &a{i} x\n" for i in range(101)) + "b: [" + ", ".join(f"*a{i}" for i in range(101))
     + "]\n", ["rb.yaml:102: yaml: more than 100 aliases (*name); write the values out"]),
    (MANY_VALUES, ["rb.yaml:2500: yaml: more than 5000 values once aliases are expanded; a runbook "
                   "needs a few hundred"]),
], ids=["alias-bomb", "nested-flow", "nested-flow-1MB", "nested-block", "huge-number", "huge-duration",
        "many-aliases", "many-values"])
def test_hostile_yaml_is_one_sentence_quickly_in_bounded_memory(text, expected):
    problems, elapsed, peak = measured(text)
    assert problems == expected
    assert elapsed < 2.0, f"{elapsed:.2f}s of CPU"  # seconds, not minutes: 1.01 s seen on a loaded machine
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_a_100_MB_file_is_refused_without_being_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.write(b"name: x\n")
        file.truncate(100 * 2**20)
    tracemalloc.start()
    started = time.process_time()
    try:
        runbook, problems = check_runbook(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert runbook is None
    assert [str(p) for p in problems] == [
        f"{path}:0: file: is larger than 1024 KiB; a runbook is a few kilobytes of YAML"]
    assert time.process_time() - started < 0.5
    assert peak < 4 * MAX_BYTES


def test_text_over_the_limit_is_refused_before_parsing():
    problems, elapsed, _ = measured("a: b\n" * (MAX_BYTES // 4))
    assert problems == ["rb.yaml:0: file: is larger than 1024 KiB; a runbook is a few kilobytes of YAML"]
    assert elapsed < 0.1


def test_a_runbook_near_the_limits_is_still_read():
    anchors = "".join(f"x{i}: &t{i} {{gameday: enabled}}\n" for i in range(50))
    text = (anchors + "name: x\n" + "steps:\n" + "".join(
        f"  - {{id: s{i}, action: wait, duration: 1s, description: *t{i % 50}}}\n" for i in range(90)))
    problems, _, _ = measured(text)
    assert any("x0: unknown field" in p for p in problems)  # validated, not refused as YAML
    assert not any(": yaml:" in p for p in problems)
