output "aws_role_arn" {
  description = "The worker's AWS role."
  value       = module.aws.role_arn
}

output "gcp_service_account_email" {
  description = "The worker's GCP service account."
  value       = module.gcp.service_account_email
}

output "azure_client_id" {
  description = "Client id of the worker's Azure managed identity."
  value       = azurerm_user_assigned_identity.gameday.client_id
}

output "worker_namespace" {
  description = "Namespace of the worker deployment."
  value       = module.worker.namespace
}
