output "role_arn" {
  description = "ARN of the worker's role: annotate its Kubernetes service account with it (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.gameday.arn
}

output "role_name" {
  description = "Name of the worker's role."
  value       = aws_iam_role.gameday.name
}

output "policy_arn" {
  description = "ARN of the least-privilege policy attached to the role."
  value       = aws_iam_policy.gameday.arn
}

output "policy_json" {
  description = "The policy document, for review."
  value       = data.aws_iam_policy_document.gameday.json
}
