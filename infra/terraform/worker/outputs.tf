output "namespace" {
  description = "Namespace of the worker."
  value       = local.namespace
}

output "service_account_name" {
  description = "Kubernetes service account of the worker: the subject to trust in each cloud (IRSA trust policy, GKE workload identity member, Azure federated credential)."
  value       = kubernetes_service_account_v1.gameday.metadata[0].name
}

output "deployment_name" {
  description = "Name of the deployment."
  value       = kubernetes_deployment_v1.gameday.metadata[0].name
}
