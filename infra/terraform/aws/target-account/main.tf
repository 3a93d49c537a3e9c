# The target role of one account a GameDay may reach from another: the worker's own role module
# (../), so the policy is the worker's least-privilege policy to the letter, with a trust policy
# that lets only the worker's role assume it. Apply it with a provider of the target account.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "GamedayWorker"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.worker_role_arn]
    }
  }
}

module "target" {
  source                  = "../"
  role_name               = var.role_name
  assume_role_policy      = data.aws_iam_policy_document.trust.json
  regions                 = var.regions
  route53_hosted_zone_ids = var.route53_hosted_zone_ids
  route53_record_names    = var.route53_record_names
  permissions_boundary    = var.permissions_boundary
  max_session_duration    = var.max_session_duration
  tags                    = var.tags
  target_role_arns        = []
}
