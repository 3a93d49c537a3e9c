# The worker on EKS, one deployment per role, with three least-privilege identities: the AWS role
# through IRSA, the GCP service account and the Azure managed identity through workload identity
# federation with the cluster's OIDC issuer. Each cloud trusts only its own role's Kubernetes
# service account, so a pod holds one cloud's identity at most. No key or password appears anywhere.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 3.90"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23"
    }
  }
}

provider "aws" {
  region = var.aws_region
}

provider "google" {
  project = var.gcp_project_id
}

provider "azurerm" {
  features {}
  subscription_id = var.azure_subscription_id
}

# Point this at the EKS cluster (e.g. from `aws eks update-kubeconfig`).
provider "kubernetes" {
  config_path = "~/.kube/config"
}

locals {
  namespace = "gameday"
  name      = "gameday-worker"
  # The worker module names each role's service account <name>-<role>.
  subject = { for cloud in ["aws", "gcp", "azure"] : cloud => "system:serviceaccount:${local.namespace}:${local.name}-${cloud}" }
}

data "aws_iam_policy_document" "trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_issuer}:sub"
      values   = [local.subject["aws"]]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

module "aws" {
  source                  = "../aws"
  assume_role_policy      = data.aws_iam_policy_document.trust.json
  regions                 = [var.aws_region]
  route53_hosted_zone_ids = var.route53_hosted_zone_ids
}

# GCP trusts the EKS cluster's tokens through a workload identity pool; the worker trades its
# projected token for the gcp module's service account (external-account credentials, no key).
resource "google_iam_workload_identity_pool" "gameday" {
  workload_identity_pool_id = "gameday"
  display_name              = "gameday workers"
}

resource "google_iam_workload_identity_pool_provider" "eks" {
  workload_identity_pool_id          = google_iam_workload_identity_pool.gameday.workload_identity_pool_id
  workload_identity_pool_provider_id = "eks"
  attribute_mapping                  = { "google.subject" = "assertion.sub" }
  attribute_condition                = "assertion.sub == '${local.subject["gcp"]}'"
  oidc {
    issuer_uri = "https://${var.eks_oidc_issuer}"
  }
}

module "gcp" {
  source                    = "../gcp"
  project_id                = var.gcp_project_id
  workload_identity_members = ["principal://iam.googleapis.com/${google_iam_workload_identity_pool.gameday.name}/subject/${local.subject["gcp"]}"]
}

locals {
  gcp_audience = "//iam.googleapis.com/${google_iam_workload_identity_pool_provider.eks.name}"
  gcp_credential_config = jsonencode({
    type                              = "external_account"
    audience                          = local.gcp_audience
    subject_token_type                = "urn:ietf:params:oauth:token-type:jwt"
    token_url                         = "https://sts.googleapis.com/v1/token"
    service_account_impersonation_url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${module.gcp.service_account_email}:generateAccessToken"
    credential_source                 = { file = "/var/run/secrets/gcp/token" }
  })
}

resource "azurerm_user_assigned_identity" "gameday" {
  name                = "gameday-worker"
  resource_group_name = var.azure_identity_resource_group
  location            = var.azure_identity_location
}

resource "azurerm_federated_identity_credential" "gameday" {
  name                = "gameday-worker-eks"
  resource_group_name = var.azure_identity_resource_group
  parent_id           = azurerm_user_assigned_identity.gameday.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = "https://${var.eks_oidc_issuer}"
  subject             = local.subject["azure"]
}

module "azure" {
  source               = "../azure"
  subscription_id      = var.azure_subscription_id
  resource_group_names = var.azure_resource_group_names
  principal_id         = azurerm_user_assigned_identity.gameday.principal_id
}

module "worker" {
  source             = "../worker"
  name               = local.name
  namespace          = local.namespace
  image              = var.worker_image
  temporal_address   = var.temporal_address
  temporal_namespace = var.temporal_namespace
  temporal_api_key_secret = {
    name = var.temporal_api_key_secret_name
    key  = "api-key"
  }
  worker_cloud          = "aws"
  worker_region         = var.aws_region
  worker_zone           = var.worker_zone
  aws_role_arn          = module.aws.role_arn
  azure_client_id       = azurerm_user_assigned_identity.gameday.client_id
  gcp_credential_config = local.gcp_credential_config
  gcp_token_audience    = local.gcp_audience
  env = {
    AWS_REGION = var.aws_region
  }
}
