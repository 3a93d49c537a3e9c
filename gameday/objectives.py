"""Recovery objectives (contract §10, `expect: {recover_within: 5m}`): how long after a fault's
apply every steady-state probe passes again, measured from the checks the run recorded.

A check is one round of every probe; it passes when every probe passed, and its time is when its
last probe answered. For one fault step, from its apply (`injected_at`: its first apply done)
until its window closes (a fault of a later runbook item begins its apply, or the run ends):

- time-to-detect: from the apply to the first failed check; none when no check failed;
- time-to-recover: from the apply to the first passing check after the last failed check of the
  window; 0 when no check failed (recovered at once);
- met: recovered, and time-to-recover at most `recover_within`; missed: recovered later, or still
  failing more than `recover_within` after the apply, or still failing when the run ended;
  unmeasured (null): the fault was never applied, no check ran in the window, or the window was
  closed by the next fault while the probes still failed within the objective (the next fault's
  failures cannot be told from this one's).

While the window is open a verdict is final only when it is missed (time cannot go back); a
recovery within the objective may still be undone by a later failure, so it reads null until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gameday.durations import format_duration
from gameday.status import Expectation, ProbeResult


@dataclass(frozen=True)
class Check:
    """One round of every probe: when its last probe answered, and what failed (empty: passed)."""

    at: datetime
    failures: str

    @property
    def ok(self) -> bool:
        return not self.failures


def as_check(results: list[ProbeResult], probes: int) -> Check | None:
    """One round's results as a check; a round cut short (fewer than `probes` results) passes
    for nobody: it counts only when something in it failed."""
    if not results:
        return None
    failures = "; ".join(f"{r.name}: {r.value}" for r in results if not r.ok)
    if not failures and len(results) < probes:
        return None
    return Check(at=max(r.at for r in results), failures=failures)


def split_rounds(results: list[ProbeResult]) -> list[list[ProbeResult]]:
    """Consecutive results of one watch, oldest first, cut into rounds: a round ends where a probe
    it already has answers again."""
    rounds: list[list[ProbeResult]] = []
    names: set[str] = set()
    for result in results:
        if not rounds or result.name in names:
            rounds.append([])
            names = set()
        rounds[-1].append(result)
        names.add(result.name)
    return rounds


@dataclass(frozen=True)
class Verdict:
    """What `status` shows of one step's objective."""

    met: bool | None
    note: str
    final: bool
    """False while later checks may still change the verdict."""
    detected_at: datetime | None = None
    detect_seconds: float | None = None
    recovered_at: datetime | None = None
    recover_seconds: float | None = None

    @property
    def expectation(self) -> Expectation:
        if self.met is not None:
            return "met" if self.met else "missed"
        return "not measured" if self.final else "measuring"


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


def _span(length: timedelta) -> str:
    """`4.2s` under a minute, else the runbook's spelling to the second (`2m30s`)."""
    seconds = length.total_seconds()
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(timedelta(seconds=round(seconds)))


@dataclass
class Recovery:
    """One fault step's recovery, measured from the checks after its apply, fed oldest first."""

    recover_within: timedelta
    applied_at: datetime
    checks: int = 0
    detected_at: datetime | None = None
    detected_by: str = ""
    last_failure_at: datetime | None = None
    recovered_at: datetime | None = None
    last_check_at: datetime | None = None

    def observe(self, check: Check, window_end: datetime | None) -> None:
        """Count `check` if it ran in the window: at or after the apply, before `window_end`."""
        if check.at < self.applied_at or (window_end is not None and check.at >= window_end):
            return
        self.checks += 1
        self.last_check_at = check.at
        if check.ok:
            if self.last_failure_at is not None and self.recovered_at is None:
                self.recovered_at = check.at
            return
        if self.detected_at is None:
            self.detected_at, self.detected_by = check.at, check.failures
        self.last_failure_at = check.at
        self.recovered_at = None

    def verdict(self, window_end: datetime | None, closed: bool, next_fault: str | None) -> Verdict:
        """The objective met, missed or unmeasured, with the measured times and why, in a sentence;
        `window_end` and `next_fault`: the apply that closed the window, if any; `closed`: the run
        has ended."""
        met, note = self._judge(window_end, closed, next_fault)
        recovered = self.recovered_at
        return Verdict(
            met=met, note=note, final=met is False or closed or window_end is not None,
            detected_at=self.detected_at,
            detect_seconds=_seconds(self.applied_at, self.detected_at) if self.detected_at else None,
            recovered_at=recovered,
            recover_seconds=(_seconds(self.applied_at, recovered) if recovered is not None
                             else 0.0 if met and self.last_failure_at is None else None))

    def _judge(self, window_end: datetime | None, closed: bool,
               next_fault: str | None) -> tuple[bool | None, str]:
        objective = f"objective {format_duration(self.recover_within)}"
        final = closed or window_end is not None
        when = (f"the next fault ({next_fault}) began its apply" if window_end is not None
                else "the run ended")
        if self.checks == 0:
            if final:
                return None, f"could not be measured: no steady-state check ran from the apply until {when}"
            return None, "no steady-state check since the apply yet"
        if self.last_failure_at is None:
            counted = f"{self.checks} check{'' if self.checks == 1 else 's'}"
            if final:
                return True, (f"met: no check failed after the apply ({counted}): recovered at once "
                              f"({objective})")
            return None, f"measuring: no check failed since the apply ({counted})"
        if self.recovered_at is not None:
            took = _span(self.recovered_at - self.applied_at)
            if self.recovered_at - self.applied_at > self.recover_within:
                return False, f"missed: every probe passed again {took} after the apply ({objective})"
            if final:
                return True, f"met: every probe passed again {took} after the apply ({objective})"
            return None, (f"measuring: every probe passes again {took} after the apply ({objective}); "
                          "final once the next fault begins its apply or the run ends")
        assert self.last_check_at is not None
        failing = self.last_check_at - self.applied_at
        if failing > self.recover_within or (closed and window_end is None):
            return False, (f"missed: still failing {_span(failing)} after the apply when "
                           f"{when if final else 'last checked'} ({objective})")
        if final:
            return None, (f"could not be measured: still failing when {when}, {_span(failing)} "
                          f"after the apply ({objective})")
        return None, f"measuring: still failing {_span(failing)} after the apply ({objective})"
