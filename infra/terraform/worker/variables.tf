variable "name" {
  description = "Prefix of the deployments and Kubernetes service accounts, one each per role: <name>-<role>."
  type        = string
  default     = "gameday-worker"
}

variable "roles" {
  description = "Worker roles, one Deployment and service account each (`gameday worker --role ROLE`): workflows (the GameDay workflows and the activities that touch no cloud, on task_queue) and aws, gcp, azure (that cloud's activities on <task_queue>-<cloud>). A cloud's identity is given to its own role only."
  type        = list(string)
  default     = ["workflows", "aws", "gcp", "azure"]

  validation {
    condition     = length(var.roles) > 0 && alltrue([for role in var.roles : contains(["workflows", "aws", "gcp", "azure"], role)])
    error_message = "Each role must be one of workflows, aws, gcp, azure."
  }
}

variable "namespace" {
  description = "Namespace to deploy into (created by this module when create_namespace is true)."
  type        = string
  default     = "gameday"
}

variable "create_namespace" {
  description = "Create the namespace."
  type        = bool
  default     = true
}

variable "image" {
  description = "The gameday image, pinned by digest (repository@sha256:...): a worker that restores faults must not change under a running GameDay."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.image))
    error_message = "Pin the image by digest: repository@sha256:<64 hex digits>."
  }
}

variable "replicas" {
  description = "Pods per role; more than one, so that restores go on while one is replaced."
  type        = number
  default     = 2
}

variable "temporal_address" {
  description = "TEMPORAL_ADDRESS: the Temporal frontend host:port."
  type        = string
}

variable "temporal_namespace" {
  description = "TEMPORAL_NAMESPACE."
  type        = string
  default     = "default"
}

variable "task_queue" {
  description = "GAMEDAY_TASK_QUEUE."
  type        = string
  default     = "gameday"
}

variable "temporal_tls" {
  description = "TEMPORAL_TLS: connect to Temporal over TLS (Temporal Cloud, most self-hosted clusters)."
  type        = bool
  default     = true
}

variable "temporal_api_key_secret" {
  description = "An existing Secret holding the Temporal API key (TEMPORAL_API_KEY): its name and key. This module never holds the key itself."
  type = object({
    name = string
    key  = string
  })
  default = null
}

variable "temporal_tls_secret" {
  description = "An existing kubernetes.io/tls Secret with the client certificate for mTLS to Temporal (mounted, TEMPORAL_TLS_CLIENT_CERT_PATH and _KEY_PATH)."
  type        = string
  default     = null
}

variable "worker_cloud" {
  description = "GAMEDAY_WORKER_CLOUD: the cloud this cluster runs in (aws, gcp or azure); gameday refuses targets that contain the worker."
  type        = string
  default     = null
}

variable "worker_region" {
  description = "GAMEDAY_WORKER_REGION: the cluster's region. Also pins the pods there (topology.kubernetes.io/region)."
  type        = string
  default     = null
}

variable "worker_zone" {
  description = "GAMEDAY_WORKER_ZONE: pins the pods to this zone (topology.kubernetes.io/zone), so that gameday refuses to blackhole it. Null: pods spread over zones and no zone is refused."
  type        = string
  default     = null
}

variable "aws_role_arn" {
  description = "IAM role of the aws module, for IRSA (eks.amazonaws.com/role-arn on the aws role's service account)."
  type        = string
  default     = null
}

variable "gcp_service_account_email" {
  description = "Service account of the gcp module, for GKE Workload Identity (iam.gke.io/gcp-service-account on the gcp role's service account)."
  type        = string
  default     = null
}

variable "azure_client_id" {
  description = "Client id of the user-assigned identity that the azure module's role is assigned to, for Azure Workload Identity (azure.workload.identity/client-id on the azure role's service account)."
  type        = string
  default     = null
}

variable "otel_exporter_otlp_endpoint" {
  description = "OTEL_EXPORTER_OTLP_ENDPOINT; null: no export."
  type        = string
  default     = null
}

variable "env" {
  description = "More environment (not secrets), e.g. AWS_REGION or GAMEDAY_SWEEP_AWS_REGIONS."
  type        = map(string)
  default     = {}
}

variable "resources" {
  description = "Requests and limits of each worker container (idle: about 100 MB for workflows or aws, 150 MB for azure, 210 MB for gcp)."
  type = object({
    requests = map(string)
    limits   = map(string)
  })
  default = {
    requests = { cpu = "250m", memory = "256Mi" }
    limits   = { cpu = "1", memory = "512Mi" }
  }
}

variable "gcp_credential_config" {
  description = "For a worker outside GKE: the external-account credential configuration (JSON, it holds no secret) that trades the pod's projected token for the gcp module's service account through a workload identity pool; mounted in the gcp role's pods only. Its credential_source.file must be /var/run/secrets/gcp/token."
  type        = string
  default     = null
}

variable "gcp_token_audience" {
  description = "Audience of the projected token for gcp_credential_config: //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER."
  type        = string
  default     = null
}
