variable "subscription_id" {
  description = "Subscription gameday may act on (a GUID)."
  type        = string
}

variable "resource_group_names" {
  description = "Resource groups the role is assigned on: those of the targeted VMs, NICs and Traffic Manager profiles, and of every NSG and subnet those NICs use. Empty: the whole subscription."
  type        = list(string)
  default     = []
}

variable "role_name" {
  description = "Name of the custom role definition."
  type        = string
  default     = "gameday worker"
}

variable "principal_id" {
  description = "Object id of the worker's identity: a user-assigned managed identity (federated with the worker's Kubernetes service account) or a service principal."
  type        = string
}

variable "principal_type" {
  description = "Type of principal_id: ServicePrincipal (managed identities included), User or Group."
  type        = string
  default     = "ServicePrincipal"
}
