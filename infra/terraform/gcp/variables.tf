variable "project_id" {
  description = "Project gameday may act on: the custom role and its binding live here."
  type        = string
}

variable "role_id" {
  description = "Id of the custom role (letters, digits, underscores and dots)."
  type        = string
  default     = "gamedayWorker"
}

variable "create_service_account" {
  description = "Create the worker's service account; false to bind an existing one (service_account_email)."
  type        = bool
  default     = true
}

variable "service_account_id" {
  description = "Account id of the service account to create."
  type        = string
  default     = "gameday-worker"
}

variable "service_account_project_id" {
  description = "Project of the created service account; null: project_id. One service account can then hold the role in several projects (call this module once per project)."
  type        = string
  default     = null
}

variable "service_account_email" {
  description = "Existing service account to bind, when create_service_account is false."
  type        = string
  default     = null
}

variable "workload_identity_members" {
  description = "Kubernetes service accounts that may act as the service account through Workload Identity, e.g. serviceAccount:PROJECT.svc.id.goog[gameday/gameday-worker]."
  type        = list(string)
  default     = []
}
