output "service_account_email" {
  description = "The worker's service account: annotate its Kubernetes service account with it (iam.gke.io/gcp-service-account)."
  value       = local.service_account_email
}

output "role_name" {
  description = "Full name of the custom role (projects/PROJECT/roles/ROLE_ID)."
  value       = google_project_iam_custom_role.gameday.name
}

output "permissions" {
  description = "The permissions of the custom role, for review."
  value       = google_project_iam_custom_role.gameday.permissions
}
