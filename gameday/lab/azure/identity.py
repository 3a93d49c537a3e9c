"""What the Azure CLI (and any MSAL client) needs to log in to the lab, served offline on loopback.

- `GET /metadata/endpoints?api-version=...`: the cloud's endpoints, as ARM publishes them, so that
  `az cloud register --endpoint-resource-manager <lab>` discovers the rest: the lab is its own
  login endpoint and ARM audience. `api-version=2019-05-01` answers the list of clouds, later
  versions one cloud (the shape `az` 2.91 asks for with `2022-09-01`).
- `GET /{tenant}/v2.0/.well-known/openid-configuration`: OIDC discovery of the lab's tenant
  (`LAB_TENANT`, or `organizations`/`common`); any other tenant is 400, as Entra ID answers it.
- `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant (a client id with a secret or an
  assertion) answered with a JWT-shaped bearer token. The lab trusts every service principal
  (the emulator checks no token); other grants are refused with `unsupported_grant_type`.
- `GET /subscriptions`, `GET /subscriptions/{id}` and `GET /tenants`: the lab's subscription (and
  any other that holds a resource group; subscriptions exist implicitly) in the lab's tenant.

MSAL looks tenants up on login.microsoftonline.com unless told not to: `core.instance_discovery`
must be false (`gameday.lab.azure.az` writes it into the configuration it prepares).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from gameday.lab.azure.arm import NAME, Json, respond
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

LAB_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
LAB_TENANT = "7a11ab00-0000-4000-8000-000000000001"
LAB_CLOUD = "GameDayLab"
LAB_DOMAIN = "gameday-lab.onmicrosoft.com"
TOKEN_SECONDS = 3599
_TENANT_ALIASES = {"organizations", "common", LAB_TENANT, LAB_DOMAIN}
#: Identity paths carry no `api-version`, unlike every ARM call.
IDENTITY_PATH = re.compile(r"^/[^/]+/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token"
                           r"|discovery/v2\.0/keys)$")


def _b64(value: Json) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def access_token(tenant: str, client_id: str, audience: str, issued: int) -> str:
    """A JWT-shaped, unsigned (`alg: none`) v1 app token: what clients decode, nothing to verify."""
    claims = {"aud": audience, "iss": f"https://sts.gameday.lab/{tenant}/", "iat": issued,
              "nbf": issued, "exp": issued + TOKEN_SECONDS, "appid": client_id, "azp": client_id,
              "idtyp": "app", "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
              "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)), "tid": tenant, "ver": "1.0"}
    return f"{_b64({'typ': 'JWT', 'alg': 'none'})}.{_b64(claims)}.lab"


def oauth_error(status: int, error: str, description: str) -> Response:
    """An Entra ID error answer: `{"error", "error_description", ...}`."""
    return respond({"error": error, "error_description": description, "error_codes": [],
                    "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                    "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}, status)


class IdentityProvider:
    """Cloud metadata, the lab's tenant and its token endpoint, and the subscriptions API."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        arm.route("GET", r"/+metadata/endpoints", self.metadata)
        arm.route("GET", rf"/(?P<tenant>{NAME})/v2\.0/\.well-known/openid-configuration",
                  self.openid_configuration)
        arm.route("GET", rf"/(?P<tenant>{NAME})/discovery/v2\.0/keys", self.keys)
        arm.route("POST", rf"/(?P<tenant>{NAME})/oauth2/v2\.0/token", self.token)
        arm.route("GET", r"/subscriptions", self.list_subscriptions)
        arm.route("GET", rf"/subscriptions/(?P<sub>{NAME})", self.get_subscription)
        arm.route("GET", r"/tenants", self.list_tenants)

    # --- metadata and OIDC -----------------------------------------------------------------

    def cloud(self, request: Request) -> Json:
        base = self.arm.base_url(request) + "/"
        return {
            "name": LAB_CLOUD, "portal": base, "resourceManager": base, "gallery": base,
            "graph": base, "graphAudience": base, "microsoftGraphResourceId": base,
            "media": base, "batch": base, "sqlManagement": base, "activeDirectoryDataLake": base,
            "authentication": {"loginEndpoint": base, "audiences": [base], "tenant": "common",
                               "identityProvider": "AAD"},
            "suffixes": {"storage": "core.gameday.lab", "keyVaultDns": "vault.gameday.lab",
                         "acrLoginServer": "azurecr.gameday.lab",
                         "sqlServerHostname": "database.gameday.lab"},
        }

    def metadata(self, request: Request) -> Response:
        cloud = self.cloud(request)
        return respond([cloud] if request.arg("api-version") == "2019-05-01" else cloud)

    def _tenant_error(self, tenant: str) -> Response:
        return oauth_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found. "
                           f"The lab's tenant is {LAB_TENANT} ({LAB_DOMAIN}).")

    def openid_configuration(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if tenant.lower() not in _TENANT_ALIASES:
            return self._tenant_error(tenant)
        base = f"{self.arm.base_url(request)}/{tenant}"
        return respond({
            "issuer": f"{self.arm.base_url(request)}/{LAB_TENANT}/v2.0",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": None, "cloud_instance_name": "gameday.lab",
        })

    def keys(self, request: Request) -> Response:
        return respond({"keys": []})

    def token(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if tenant.lower() not in _TENANT_ALIASES:
            return self._tenant_error(tenant)
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", f"AADSTS70003: The lab issues "
                               f"tokens to service principals only (grant_type=client_credentials), "
                               f"not for grant_type={grant or 'none'}: use "
                               "`az login --service-principal`.")
        client_id = form.get("client_id", "")
        if not client_id or not (form.get("client_secret") or form.get("client_assertion")
                                 or request.headers.get("authorization", "").startswith("Basic ")):
            return oauth_error(401, "invalid_client", "AADSTS7000216: 'client_assertion', "
                               "'client_secret' or 'request' is required for the "
                               "'client_credentials' grant type.")
        scope = form.get("scope", "").split()[0] if form.get("scope") else ""
        audience = scope.removesuffix(".default") or self.arm.base_url(request) + "/"
        issued = int(time.time())
        return respond({"token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                        "ext_expires_in": TOKEN_SECONDS,
                        "access_token": access_token(LAB_TENANT, client_id, audience, issued)})

    # --- subscriptions and tenants -----------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """The lab's subscription, then each other one that holds a resource group."""
        seen = [LAB_SUBSCRIPTION]
        for group in self.arm.groups.values():
            sub = group.id.split("/")[2]
            if sub.lower() not in (s.lower() for s in seen):
                seen.append(sub)
        return seen

    @staticmethod
    def render_subscription(sub: str) -> Json:
        return {"id": f"/subscriptions/{sub}", "authorizationSource": "RoleBased",
                "managedByTenants": [], "subscriptionId": sub, "tenantId": LAB_TENANT,
                "displayName": "gameday-lab" if sub == LAB_SUBSCRIPTION else f"gameday-lab {sub}",
                "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                         "quotaId": "PayAsYouGo_2014-09-01",
                                         "spendingLimit": "Off"}}

    def list_subscriptions(self, request: Request) -> Response:
        return respond({"value": [self.render_subscription(s) for s in self.subscriptions()],
                        "count": {"type": "Total", "value": len(self.subscriptions())}})

    def get_subscription(self, request: Request) -> Response:
        return respond(self.render_subscription(request.params["sub"]))

    def list_tenants(self, request: Request) -> Response:
        return respond({"value": [{
            "id": f"/tenants/{LAB_TENANT}", "tenantId": LAB_TENANT, "tenantCategory": "Home",
            "country": "US", "countryCode": "US", "displayName": "GameDay lab",
            "domains": [LAB_DOMAIN], "defaultDomain": LAB_DOMAIN, "tenantType": "AAD"}]})
