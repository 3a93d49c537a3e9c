output "role_definition_id" {
  description = "Resource id of the custom role definition."
  value       = azurerm_role_definition.gameday.role_definition_resource_id
}

output "scopes" {
  description = "Where the role is assigned to the worker's identity."
  value       = local.scopes
}

output "actions" {
  description = "The actions of the custom role, for review."
  value       = one(azurerm_role_definition.gameday.permissions).actions
}
