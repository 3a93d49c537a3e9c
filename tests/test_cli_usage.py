"""Usage errors, --version and --help through the installed `gameday` entry point (contract §9)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = Path(sys.executable).with_name("gameday")


def _gameday(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "100"}
    return subprocess.run([str(ENTRY_POINT), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("args", "usage", "error"), [
    (["no-such-command"], "Usage: gameday [OPTIONS] COMMAND [ARGS]...",
     "Error: No such command 'no-such-command'."),
    (["run"], "Usage: gameday run [OPTIONS]", "Error: Missing argument"),
    (["abort", "--no-such-option"], "Usage: gameday abort [OPTIONS]",
     "Error: No such option: --no-such-option"),
    (["approve", "some-run"], "Usage: gameday approve [OPTIONS]", "Error: Missing option '--as'"),
    (["schedule", "create"], "Usage: gameday schedule create [OPTIONS]", "Error: Missing argument"),
    (["sweep", "--cloud", "ibm"], "Usage: gameday sweep [OPTIONS]",
     "Error: Invalid value for --cloud: ibm is not one of aws, gcp, azure"),
])
def test_usage_errors_print_the_usage_and_exit_2(tmp_path, args, usage, error):
    done = _gameday(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert usage in done.stderr
    assert error in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "state" / "gameday" / "gameday.log").exists()


def test_version_comes_from_the_package_metadata(tmp_path):
    done = _gameday(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"gameday {version('gameday')}\n"


@pytest.mark.parametrize("command", [[], ["abort"], ["sweep"], ["run"], ["schedule", "create"],
                                     ["lab", "up"]])
def test_help_shows_no_type_beside_flags(tmp_path, command):
    done = _gameday(tmp_path, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--help" in done.stdout
    assert "<bool>" not in done.stdout


def test_a_blank_identity_is_one_sentence(tmp_path):
    done = _gameday(tmp_path, "approve", "some-run", "--as", "  ")
    assert done.returncode == 1
    assert done.stderr == "gameday: --as: an identity must not be blank\n"
