variable "aws_region" {
  description = "Region of the EKS cluster that runs the worker."
  type        = string
  default     = "us-east-1"
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "eks_oidc_issuer" {
  description = "Issuer host and path of the EKS cluster's OIDC provider, without https://."
  type        = string
}

variable "route53_hosted_zone_ids" {
  description = "Hosted zones whose weighted records AWS evacuations may change."
  type        = list(string)
  default     = []
}

variable "gcp_project_id" {
  description = "Project the GCP GameDays target."
  type        = string
}

variable "azure_subscription_id" {
  description = "Subscription the Azure GameDays target."
  type        = string
}

variable "azure_resource_group_names" {
  description = "Resource groups the Azure GameDays touch."
  type        = list(string)
}

variable "azure_identity_resource_group" {
  description = "Resource group of the worker's user-assigned managed identity."
  type        = string
}

variable "azure_identity_location" {
  description = "Location of the worker's managed identity."
  type        = string
  default     = "eastus"
}

variable "worker_image" {
  description = "The gameday image, pinned by digest."
  type        = string
}

variable "temporal_address" {
  description = "Temporal frontend host:port."
  type        = string
}

variable "temporal_namespace" {
  description = "Temporal namespace."
  type        = string
}

variable "temporal_api_key_secret_name" {
  description = "Existing Secret (in the gameday namespace) whose key `api-key` holds the Temporal API key."
  type        = string
  default     = "temporal-api-key"
}

variable "worker_zone" {
  description = "Zone the workers are pinned to, and which gameday will therefore never blackhole."
  type        = string
  default     = "us-east-1a"
}
