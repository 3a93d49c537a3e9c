output "namespace" {
  description = "Namespace of the worker."
  value       = local.namespace
}

output "service_account_names" {
  description = "Kubernetes service account of each role: trust the aws one in the IRSA trust policy, the gcp one as GKE workload identity member, the azure one in the Azure federated credential."
  value       = { for role, account in kubernetes_service_account_v1.gameday : role => account.metadata[0].name }
}

output "deployment_names" {
  description = "Name of each role's deployment."
  value       = { for role, deployment in kubernetes_deployment_v1.gameday : role => deployment.metadata[0].name }
}
