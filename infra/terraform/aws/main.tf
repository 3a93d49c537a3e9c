# The IAM role of the gameday worker on AWS: exactly the actions of AWS_ACTIONS in
# tests/support/permissions.py (tests/test_terraform.py fails when they drift apart).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  managed_by_tag = "gameday:managed-by"
  ec2_arns       = [for region in var.regions : "arn:${data.aws_partition.current.partition}:ec2:${region}:${data.aws_caller_identity.current.account_id}"]
  network_acls   = [for arn in local.ec2_arns : "${arn}:network-acl/*"]
  route_tables   = [for arn in local.ec2_arns : "${arn}:route-table/*"]
  subnets        = [for arn in local.ec2_arns : "${arn}:subnet/*"]
  vpcs           = [for arn in local.ec2_arns : "${arn}:vpc/*"]
  instances      = [for arn in local.ec2_arns : "${arn}:instance/*"]
  groups         = [for region in var.regions : "arn:${data.aws_partition.current.partition}:autoscaling:${region}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]
  gameday_marks  = ["gameday:run", "gameday:step"]
  db_clusters    = [for region in var.regions : "arn:${data.aws_partition.current.partition}:rds:${region}:${data.aws_caller_identity.current.account_id}:cluster:*"]
  hosted_zones   = [for id in var.route53_hosted_zone_ids : "arn:${data.aws_partition.current.partition}:route53:::hostedzone/${id}"]
}

data "aws_iam_policy_document" "gameday" {
  # Reads that AWS does not scope to resources: the worker's own account, zones, regions,
  # subnets, ACLs and hosted zones.
  statement {
    sid    = "Read"
    effect = "Allow"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "ec2:DescribeAvailabilityZones",
      "ec2:DescribeInstanceAttribute",
      "ec2:DescribeInstances",
      "ec2:DescribeNetworkAcls",
      "ec2:DescribeRegions",
      "ec2:DescribeRouteTables",
      "ec2:DescribeSubnets",
      "ec2:DescribeTransitGatewayPeeringAttachments",
      "ec2:DescribeVpcPeeringConnections",
      "ec2:DescribeVpcs",
      "rds:DescribeDBClusters",
      "rds:DescribeDBInstances",
      "route53:ListHostedZones",
      "sts:GetCallerIdentity",
    ]
    resources = ["*"]
  }

  # apply_blackhole_zone: a new ACL only with gameday's tag, in any VPC of the regions.
  statement {
    sid       = "CreateGamedayAcl"
    effect    = "Allow"
    actions   = ["ec2:CreateNetworkAcl"]
    resources = local.network_acls
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = ["gameday"]
    }
  }

  statement {
    sid       = "CreateAclInVpc"
    effect    = "Allow"
    actions   = ["ec2:CreateNetworkAcl"]
    resources = local.vpcs
  }

  # Tags only while creating an ACL: no tag of an existing resource can be changed.
  statement {
    sid       = "TagGamedayAclOnCreate"
    effect    = "Allow"
    actions   = ["ec2:CreateTags"]
    resources = local.network_acls
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateNetworkAcl"]
    }
  }

  # apply_ and restore_blackhole_zone: rules of, and deletion of, gameday's own ACLs only.
  statement {
    sid    = "ChangeGamedayAcls"
    effect = "Allow"
    actions = [
      "ec2:CreateNetworkAclEntry",
      "ec2:DeleteNetworkAcl",
    ]
    resources = local.network_acls
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = ["gameday"]
    }
  }

  # Moving a subnet onto gameday's ACL and back onto its own ACL: the own ACL carries no gameday
  # tag, so this one is scoped to the account and regions; the activities' guardrails do the rest.
  statement {
    sid       = "MoveSubnets"
    effect    = "Allow"
    actions   = ["ec2:ReplaceNetworkAclAssociation"]
    resources = concat(local.network_acls, local.subnets)
  }

  # partition_regions: a route table copy only with gameday's tag, in any VPC of the regions;
  # its tags only while creating it; routes of, and deletion of, gameday's own copies only.
  statement {
    sid       = "CreateGamedayRouteTable"
    effect    = "Allow"
    actions   = ["ec2:CreateRouteTable"]
    resources = local.route_tables
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_by_tag}"
      values   = ["gameday"]
    }
  }

  statement {
    sid       = "CreateRouteTableInVpc"
    effect    = "Allow"
    actions   = ["ec2:CreateRouteTable"]
    resources = local.vpcs
  }

  statement {
    sid       = "TagGamedayRouteTableOnCreate"
    effect    = "Allow"
    actions   = ["ec2:CreateTags"]
    resources = local.route_tables
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateRouteTable"]
    }
  }

  statement {
    sid       = "ChangeGamedayRouteTables"
    effect    = "Allow"
    actions   = ["ec2:CreateRoute", "ec2:DeleteRouteTable"]
    resources = local.route_tables
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_by_tag}"
      values   = ["gameday"]
    }
  }

  # Moving a subnet onto gameday's copy and back onto its own (or its VPC's main) table: the own
  # table carries no gameday tag, so this one is scoped to the account and regions.
  statement {
    sid       = "MoveSubnetsBetweenRouteTables"
    effect    = "Allow"
    actions   = ["ec2:AssociateRouteTable", "ec2:ReplaceRouteTableAssociation", "ec2:DisassociateRouteTable"]
    resources = concat(local.route_tables, local.subnets)
  }

  # stop_instances: gameday's marks on instances (run and step), and no other tag.
  statement {
    sid       = "MarkInstances"
    effect    = "Allow"
    actions   = ["ec2:CreateTags", "ec2:DeleteTags"]
    resources = local.instances
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = local.gameday_marks
    }
  }

  # stop_instances: stop and start only instances that carry gameday's mark (marked first).
  # Instances with EBS volumes encrypted by a customer managed KMS key also need kms:CreateGrant
  # on that key to start again: grant it in the key's policy, not here.
  statement {
    sid       = "PowerMarkedInstances"
    effect    = "Allow"
    actions   = ["ec2:StopInstances", "ec2:StartInstances"]
    resources = local.instances
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/gameday:run"
      values   = ["false"]
    }
  }

  # stop_instances: a group's holds (gameday:hold:*, gameday:suspended), and no other tag.
  statement {
    sid       = "HoldGroups"
    effect    = "Allow"
    actions   = ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"]
    resources = local.groups
    condition {
      test     = "ForAllValues:StringLike"
      variable = "aws:TagKeys"
      values   = ["gameday:*"]
    }
  }

  # stop_instances: suspend and resume the processes of groups gameday holds (held first).
  statement {
    sid       = "SuspendHealingOfHeldGroups"
    effect    = "Allow"
    actions   = ["autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses"]
    resources = local.groups
    condition {
      test     = "Null"
      variable = "autoscaling:ResourceTag/gameday:suspended"
      values   = ["false"]
    }
  }

  # evacuate_zone: ARC zonal shifts of the named load balancers; AWS allows no tags on a shift
  # (its comment is gameday's mark), so the statement cannot narrow by tag.
  statement {
    sid       = "ReadZonalShifts"
    effect    = "Allow"
    actions   = ["arc-zonal-shift:GetManagedResource", "arc-zonal-shift:ListZonalShifts"]
    resources = ["*"]
  }
  statement {
    sid       = "ShiftLoadBalancers"
    effect    = "Allow"
    actions   = ["arc-zonal-shift:StartZonalShift", "arc-zonal-shift:CancelZonalShift"]
    resources = ["arn:aws:elasticloadbalancing:*:*:loadbalancer/*"]
  }

  # deny_capacity: narrow the subnets of, and suspend and resume AZRebalance of, only groups
  # that carry gameday's mark (marked first, with the HoldGroups tag statement above); the
  # restore after someone removed the mark is refused and retried until it is put back.
  statement {
    sid       = "DenyCapacityOfMarkedGroups"
    effect    = "Allow"
    actions   = ["autoscaling:UpdateAutoScalingGroup", "autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses"]
    resources = local.groups
    condition {
      test     = "Null"
      variable = "autoscaling:ResourceTag/gameday:run"
      values   = ["false"]
    }
  }

  # failover_database: gameday's marks on a cluster (gameday:run, gameday:step,
  # gameday:restore:writer, gameday:fail-back), and no other tag.
  statement {
    sid       = "MarkDbClusters"
    effect    = "Allow"
    actions   = ["rds:AddTagsToResource", "rds:RemoveTagsFromResource"]
    resources = local.db_clusters
    condition {
      test     = "ForAllValues:StringLike"
      variable = "aws:TagKeys"
      values   = ["gameday:*"]
    }
  }

  # failover_database: fail over only clusters gameday marked first (and back on restore).
  statement {
    sid       = "FailOverMarkedClusters"
    effect    = "Allow"
    actions   = ["rds:FailoverDBCluster"]
    resources = local.db_clusters
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/gameday:run"
      values   = ["false"]
    }
  }

  # Targets in other accounts: the worker assumes each account's target role
  # (infra/terraform/aws/target-account); a target role itself assumes nothing.
  dynamic "statement" {
    for_each = length(var.target_role_arns) > 0 ? [var.target_role_arns] : []
    content {
      sid       = "AssumeTargetRoles"
      effect    = "Allow"
      actions   = ["sts:AssumeRole"]
      resources = statement.value
    }
  }

  # evacuate_region: the weighted records of the named hosted zones, changed by UPSERT only
  # (and, when route53_record_names is set, only those records).
  dynamic "statement" {
    for_each = length(local.hosted_zones) > 0 ? [local.hosted_zones] : []
    content {
      sid       = "ReadRecords"
      effect    = "Allow"
      actions   = ["route53:ListResourceRecordSets"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(local.hosted_zones) > 0 ? [local.hosted_zones] : []
    content {
      sid       = "UpsertWeights"
      effect    = "Allow"
      actions   = ["route53:ChangeResourceRecordSets"]
      resources = statement.value
      condition {
        test     = "ForAllValues:StringEquals"
        variable = "route53:ChangeResourceRecordSetsActions"
        values   = ["UPSERT"]
      }
      dynamic "condition" {
        for_each = length(var.route53_record_names) > 0 ? [var.route53_record_names] : []
        content {
          test     = "ForAllValues:StringEquals"
          variable = "route53:ChangeResourceRecordSetsNormalizedRecordNames"
          values   = condition.value
        }
      }
    }
  }
}

resource "aws_iam_role" "gameday" {
  name                 = var.role_name
  description          = "gameday worker: region-outage GameDays (network ACLs, Route53 weights, instance power)"
  assume_role_policy   = var.assume_role_policy
  max_session_duration = var.max_session_duration
  permissions_boundary = var.permissions_boundary
  tags                 = var.tags
}

resource "aws_iam_policy" "gameday" {
  name        = "${var.role_name}-least-privilege"
  description = "Exactly what gameday's AWS activities call (tests/support/permissions.py)."
  policy      = data.aws_iam_policy_document.gameday.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "gameday" {
  role       = aws_iam_role.gameday.name
  policy_arn = aws_iam_policy.gameday.arn
}
