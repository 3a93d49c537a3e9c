"""The lab's AWS side: moto (a real EC2/Route53/STS emulator) behind a fault-injecting proxy."""

from gameday.lab.aws.proxy import AwsFaultProxy
from gameday.lab.aws.seed import acl_snapshot, route53_snapshot, seed_aws

__all__ = ["AwsFaultProxy", "acl_snapshot", "route53_snapshot", "seed_aws"]
