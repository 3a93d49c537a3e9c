variable "role_name" {
  description = "Name of the IAM role the gameday worker assumes."
  type        = string
  default     = "gameday-worker"
}

variable "assume_role_policy" {
  description = "Trust policy (JSON) of the role: who may assume it, e.g. the worker's EKS service account through IRSA, or an ECS task role."
  type        = string
}

variable "regions" {
  description = "Regions whose network ACLs gameday may change; [\"*\"] for every region."
  type        = list(string)
  default     = ["*"]
}

variable "route53_hosted_zone_ids" {
  description = "Hosted zones whose weighted records evacuate_region may change (ids like Z123ABC). Empty: the role cannot evacuate a region."
  type        = list(string)
  default     = []
}

variable "route53_record_names" {
  description = "If set, the only record names (lower case, no trailing dot) that gameday may change in those zones."
  type        = list(string)
  default     = []
}

variable "target_role_arns" {
  description = "Target roles in other accounts the worker may assume (GAMEDAY_AWS_TARGET_ROLE), e.g. [\"arn:aws:iam::*:role/gameday-target\"] or one ARN per account. Empty: the worker reaches its own account only."
  type        = list(string)
  default     = []
}

variable "permissions_boundary" {
  description = "ARN of a permissions boundary for the role, if your organisation requires one."
  type        = string
  default     = null
}

variable "max_session_duration" {
  description = "Longest session of the role, in seconds; at least the longest GameDay's max_duration is comfortable."
  type        = number
  default     = 3600
}

variable "tags" {
  description = "Tags of the role and its policy."
  type        = map(string)
  default     = {}
}
