output "role_arn" {
  description = "ARN of the target role: list it (or a wildcard over accounts) in the worker module's target_role_arns."
  value       = module.target.role_arn
}

output "policy_json" {
  description = "The policy document, for review: the worker's least-privilege policy."
  value       = module.target.policy_json
}
