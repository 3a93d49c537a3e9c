"""The lab's "shop": an HTTP service whose health really follows the faults that gameday injects.

Nothing in the lab carries traffic, so the shop decides whether it would serve by reading the
emulated control planes through the real SDKs (the variables of `gameday lab env`), as a load
balancer's health checks would see the data plane:

- `GET /aws/<region>/health`: 200 when at least one zone of the region has a subnet tagged
  `tier=web` in the VPC named `shop` that is not on a deny-all network ACL (one gameday made,
  tagged `gameday:run`, or any ACL whose first rule matching 0.0.0.0/0 in a direction is a deny
  that comes before every allow, or that allows nothing in a direction) and holds a running
  `tier=web` instance (a power interruption stops them);
- `GET /gcp/<region>/health`: 200 when at least one instance labelled `tier=web` in a zone of the
  region is not cut off: no enabled deny-all firewall rule of its network (protocol `all`, from or
  to 0.0.0.0/0) that targets it (by one of its tags, or all instances) takes precedence over every
  allow rule that targets it in that direction (as gameday's tag plus priority-0 rules do) and
  it is RUNNING;
- `GET /azure/<region>/health`: 200 when at least one web VM (tag `tier=web`, or a name starting
  `web-`) located in the region has a NIC not on a deny-all NSG (one gameday made, tagged
  `gameday-managed-by=gameday`, or one whose deny-all rule comes before every allow in a
  direction) and the VM is running;
- `GET /<cloud>/global/health`: 200 when the global routing sends traffic to at least one serving
  region: AWS, the weighted records `www.shop.example.com` with weight > 0 (the region is the
  `SetIdentifier`); GCP, the backends of backend service `web` with capacityScaler > 0 (the region
  of the backend's group); Azure, the `Enabled` endpoints of Traffic Manager profile `shop-tm` (the
  endpoint's location);
- `GET /health`: 200 only when all three global endpoints serve; the body lists each.

A region where the lab builds no shop at all (no `shop` VPC, no web instance, no web VM; e.g. the
lab's us-west-2 or westus, which only appear in the global routing) stands for a healthy region
outside the lab: it serves, and its answer says `"modelled": false`.

Every answer is JSON with `serving` and a `reason`; 503 when not serving. Each control-plane read
is cached for `CACHE_SECONDS` (probes every second do not hammer the emulators), shared by
concurrent requests, and when a read fails its last good value is used for up to `STALE_SECONDS`
(the answer notes it). Every answer comes within `ANSWER_SECONDS`: a control plane that does not
answer by then makes the endpoint 503.

`python -m gameday.lab.shop [--port P]` serves on 127.0.0.1, port 8270 when free, else a free one; it prints
its URL. `start_shop(env)` does the same in a thread. The lab exports the URL as `GAMEDAY_SHOP_URL`
(`gameday lab env`), and the lab's runbooks probe `${GAMEDAY_SHOP_URL:-http://127.0.0.1:8270}`.

Modules: `reading` (the lab's topology, the read cache, each cloud's clients), `verdicts` (the
answers and the global routing rule), `aws`, `gcp`, `azure` (how each cloud's faults are read),
`server` (the HTTP service).
"""

from gameday.lab.shop.aws import AWS_ACL_RUN_TAG, AwsShop, aws_acl_cut
from gameday.lab.shop.azure import ANYWHERE, AZURE_MANAGED_TAG, AZURE_RUN_TAG, AzureShop, azure_nsg_cut
from gameday.lab.shop.gcp import GcpShop, gcp_group_region, gcp_instance_cut
from gameday.lab.shop.reading import (
    CACHE_SECONDS,
    CALL_TIMEOUT,
    STALE_SECONDS,
    CloudReader,
    NotConfigured,
    ReadCache,
    ShopConfig,
)
from gameday.lab.shop.server import ANSWER_SECONDS, CLOUDS, DEFAULT_PORT, LOOPBACK, Shop, main, start_shop
from gameday.lab.shop.verdicts import route_verdict

__all__ = [
    "ANSWER_SECONDS", "ANYWHERE", "AWS_ACL_RUN_TAG", "AZURE_MANAGED_TAG", "AZURE_RUN_TAG",
    "CACHE_SECONDS", "CALL_TIMEOUT", "CLOUDS", "DEFAULT_PORT", "LOOPBACK", "STALE_SECONDS",
    "AwsShop", "AzureShop", "CloudReader", "GcpShop", "NotConfigured", "ReadCache", "Shop",
    "ShopConfig", "aws_acl_cut", "azure_nsg_cut", "gcp_group_region", "gcp_instance_cut", "main",
    "route_verdict", "start_shop",
]
