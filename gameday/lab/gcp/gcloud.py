"""A private gcloud configuration directory (`CLOUDSDK_CONFIG`) that points gcloud at the emulator.

With `CLOUDSDK_CONFIG` set to the directory `write_gcloud_config` prepares, the operator's own
`gcloud compute ...` talks to the lab's Compute Engine emulator: no credentials
(`auth/disable_credentials`), the compute endpoint overridden to the emulator
(`api_endpoint_overrides/compute`), the lab's project as the default (`core/project`), and no
update checks, surveys or usage reports (nothing leaves the machine). The operator's own
`~/.config/gcloud` is never touched.
"""

from __future__ import annotations

from pathlib import Path

LAB_PROJECT = "gameday-lab"


def gcloud_properties(endpoint: str, project: str = LAB_PROJECT) -> dict[str, dict[str, str]]:
    """The properties of the lab's gcloud configuration, by section."""
    return {
        "core": {"project": project, "disable_usage_reporting": "true"},
        "auth": {"disable_credentials": "true"},
        "api_endpoint_overrides": {"compute": f"{endpoint.rstrip('/')}/compute/v1/"},
        "component_manager": {"disable_update_check": "true"},
        "survey": {"disable_prompts": "true"},
    }


def write_gcloud_config(directory: Path, endpoint: str, project: str = LAB_PROJECT) -> Path:
    """Make `directory` a gcloud configuration directory whose active configuration `lab`
    points at the emulator serving `endpoint`; return `directory` (the `CLOUDSDK_CONFIG`)."""
    configurations = directory / "configurations"
    configurations.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for section, values in gcloud_properties(endpoint, project).items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    (configurations / "config_lab").write_text("\n".join(lines))
    (directory / "active_config").write_text("lab")
    return directory
