"""Microsoft.Authorization's permissions of the caller on a scope, which `gameday plan` asks
before a run: `GET /subscriptions/{s}[/resourceGroups/{rg}]/providers/Microsoft.Authorization/
permissions` answers ARM's shape, `{"value": [{"actions", "notActions", "dataActions",
"notDataActions"}]}`. The lab's caller is an Owner (`actions: ["*"]`) whose `notActions` are the
actions the fault config's `deny` names (`POST /_emulator/faults`); a resource group must exist
(404 `ResourceGroupNotFound`). The deny list is not enforced on the other ARM calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gameday.lab.azure.arm import GROUP, SUB, Json
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

PERMISSIONS = "/providers/Microsoft.Authorization/permissions"


class AuthorizationProvider:
    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        arm.route("GET", SUB + PERMISSIONS, self.of_subscription)
        arm.route("GET", GROUP + PERMISSIONS, self.of_group)

    def _answer(self) -> Response:
        entry: Json = {"actions": ["*"], "notActions": list(self.arm.faults.config.deny),
                       "dataActions": [], "notDataActions": []}
        return Response(200, {"value": [entry]})

    def of_subscription(self, request: Request) -> Response:
        return self._answer()

    def of_group(self, request: Request) -> Response:
        self.arm.group(request)
        return self._answer()
