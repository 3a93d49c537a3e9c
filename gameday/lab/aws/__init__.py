"""The lab's AWS side: moto (a real EC2/Auto Scaling/Route53/STS emulator) behind a
fault-injecting proxy that also shows EC2's power states in between (`power`)."""

from gameday.lab.aws.fleet import power_snapshot
from gameday.lab.aws.proxy import AwsFaultProxy
from gameday.lab.aws.seed import acl_snapshot, route53_snapshot, seed_aws

__all__ = ["AwsFaultProxy", "acl_snapshot", "power_snapshot", "route53_snapshot", "seed_aws"]
