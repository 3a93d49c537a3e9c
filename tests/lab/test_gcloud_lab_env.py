"""After one `eval "$(gameday lab env)"`, the operator's own gcloud shows the lab (issue 17)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gameday.lab.gcp.groups_seed import MIG_MEMBERS
from gameday.lab.gcp.seed import lab_instances
from gameday.lab.manager import Lab

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")


def test_lab_env_points_the_operators_gcloud_at_the_lab(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    lab = Lab(directory, fixed_ports=False)
    try:
        lab.up(seed=True)
        # The operator's shell: their own HOME and no gcloud settings of ours.
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("CLOUDSDK_", "GOOGLE_"))}
        env.update(GAMEDAY_LAB_DIR=str(directory), HOME=str(tmp_path / "home"))
        gameday = f"{shlex.quote(sys.executable)} -m gameday.cli"
        script = f'eval "$({gameday} lab env)" && gcloud compute instances list --format=json'
        done = subprocess.run(["bash", "-c", script], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=180, check=False)
    finally:
        lab.down()
    assert done.returncode == 0, done.stderr
    assert {vm["name"] for vm in json.loads(done.stdout)} == (
        {vm.name for vm in lab_instances()} | {name for name, _ in MIG_MEMBERS})
    assert (directory / "gcloud" / "configurations" / "config_lab").is_file()
    assert not (tmp_path / "home" / ".config" / "gcloud").exists()
