variable "worker_role_arn" {
  description = "ARN of the gameday worker's role (the aws module's role_arn output), the only principal that may assume this role."
  type        = string
}

variable "role_name" {
  description = "Name of the target role: the worker's GAMEDAY_AWS_TARGET_ROLE (same name in every account)."
  type        = string
  default     = "gameday-target"
}

variable "regions" {
  description = "Regions of this account whose resources gameday may change; [\"*\"] for every region."
  type        = list(string)
  default     = ["*"]
}

variable "route53_hosted_zone_ids" {
  description = "Hosted zones of this account whose weighted records evacuate_region may change."
  type        = list(string)
  default     = []
}

variable "route53_record_names" {
  description = "If set, the only record names that gameday may change in those zones."
  type        = list(string)
  default     = []
}

variable "permissions_boundary" {
  description = "ARN of a permissions boundary for the role, if your organisation requires one."
  type        = string
  default     = null
}

variable "max_session_duration" {
  description = "Longest session of the role, in seconds (gameday asks for one hour and refreshes before it ends)."
  type        = number
  default     = 3600
}

variable "tags" {
  description = "Tags of the role and its policy."
  type        = map(string)
  default     = {}
}
