"""A static bearer-token credential: what the emulator needs, since it checks no token."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken


class EmulatorCredential:
    """A `TokenCredential` whose `get_token` always returns `AccessToken(token, now + lifetime)`."""

    def __init__(self, token: str = "x", lifetime: int = 3600):
        self.token = token
        self.lifetime = lifetime

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + self.lifetime)

    def close(self) -> None:
        """Nothing to release."""
