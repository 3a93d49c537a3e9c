"""Resource Manager's `projects.testIamPermissions` (v1), which `gameday plan` asks before a run:
`POST /v1/projects/{project}:testIamPermissions` with `{"permissions": [...]}` answers the subset
the caller holds. The lab's caller holds every permission except those the fault config's `deny`
names (`POST /_emulator/faults`); like Google, the answer leaves out `permissions` when it holds
none. Any project id is accepted. The deny list is not enforced on the Compute calls themselves.
"""

from __future__ import annotations

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.core import ComputeCore


class IamApi(ComputeCore):
    def register_iam(self) -> None:
        self.add_route("POST", r"/v1/projects/(?P<project>[^/:]+):testIamPermissions",
                       self.test_iam_permissions)

    def test_iam_permissions(self, request: Request) -> Response:
        asked = request.json().get("permissions")
        if not isinstance(asked, list) or not all(isinstance(p, str) for p in asked):
            raise ApiError(400, "invalid", "permissions must be a list of permission names")
        held = [p for p in asked if not self.faults.denied(p)]
        return Response(200, {"permissions": held} if held else {})
