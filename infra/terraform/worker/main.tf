# The gameday worker as Kubernetes Deployments, one per role (`gameday worker --role ROLE`): the
# workflows, and each cloud's activities. One manifest runs on EKS, GKE or AKS and reaches all
# three clouds through workload identity (no keys anywhere), which ECS, tied to AWS, could not;
# each cloud's identity is bound to its own role's service account only, so the AWS role is held
# by the aws pods alone, and so on. Configuration is contract §2's environment; secrets are only
# referenced.

terraform {
  required_version = ">= 1.5"
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23"
    }
  }
}

locals {
  namespace = var.create_namespace ? kubernetes_namespace_v1.gameday[0].metadata[0].name : var.namespace
  roles     = toset(var.roles)
  labels = { for role in local.roles : role => {
    "app.kubernetes.io/name"      = "gameday"
    "app.kubernetes.io/component" = "worker"
    "app.kubernetes.io/instance"  = var.name
    "gameday/role"                = role
  } }
  # Each cloud's identity goes to that cloud's role only; the workflows role holds none.
  identity_annotations = {
    workflows = {}
    aws       = var.aws_role_arn == null ? {} : { "eks.amazonaws.com/role-arn" = var.aws_role_arn }
    gcp       = var.gcp_service_account_email == null ? {} : { "iam.gke.io/gcp-service-account" = var.gcp_service_account_email }
    azure     = var.azure_client_id == null ? {} : { "azure.workload.identity/client-id" = var.azure_client_id }
  }
  gcp_credential_file = contains(var.roles, "gcp") && var.gcp_credential_config != null
  environment = { for role in local.roles : role => merge(
    var.env,
    {
      TEMPORAL_ADDRESS         = var.temporal_address
      TEMPORAL_NAMESPACE       = var.temporal_namespace
      TEMPORAL_TLS             = tostring(var.temporal_tls)
      GAMEDAY_TASK_QUEUE       = var.task_queue
      OTEL_SERVICE_NAME        = "gameday-worker"
      OTEL_RESOURCE_ATTRIBUTES = "gameday.worker.role=${role}"
      HOME                     = "/tmp"
    },
    { for key, value in {
      GAMEDAY_WORKER_CLOUD           = var.worker_cloud
      GAMEDAY_WORKER_REGION          = var.worker_region
      GAMEDAY_WORKER_ZONE            = var.worker_zone
      OTEL_EXPORTER_OTLP_ENDPOINT    = var.otel_exporter_otlp_endpoint
      TEMPORAL_TLS_CLIENT_CERT_PATH  = var.temporal_tls_secret == null ? null : "/etc/temporal-tls/tls.crt"
      TEMPORAL_TLS_CLIENT_KEY_PATH   = var.temporal_tls_secret == null ? null : "/etc/temporal-tls/tls.key"
      GOOGLE_APPLICATION_CREDENTIALS = role == "gcp" && local.gcp_credential_file ? "/etc/gcp/credentials.json" : null
    } : key => value if value != null },
  ) }
  node_selector = { for key, value in {
    "topology.kubernetes.io/region" = var.worker_region
    "topology.kubernetes.io/zone"   = var.worker_zone
  } : key => value if value != null }
}

resource "kubernetes_namespace_v1" "gameday" {
  count = var.create_namespace ? 1 : 0
  metadata {
    name   = var.namespace
    labels = { "pod-security.kubernetes.io/enforce" = "restricted" }
  }
}

resource "kubernetes_config_map_v1" "gcp_credentials" {
  count = local.gcp_credential_file ? 1 : 0
  metadata {
    name      = "${var.name}-gcp-credentials"
    namespace = local.namespace
    labels    = local.labels["gcp"]
  }
  data = {
    "credentials.json" = var.gcp_credential_config
  }

  lifecycle {
    precondition {
      condition     = var.gcp_token_audience != null
      error_message = "Set gcp_token_audience together with gcp_credential_config."
    }
  }
}

resource "kubernetes_service_account_v1" "gameday" {
  for_each = local.roles
  metadata {
    name        = "${var.name}-${each.key}"
    namespace   = local.namespace
    labels      = local.labels[each.key]
    annotations = local.identity_annotations[each.key]
  }
  # The workload identity webhooks of EKS and AKS project their own token; GKE uses the metadata
  # server: the Kubernetes API token is not needed.
  automount_service_account_token = false
}

resource "kubernetes_deployment_v1" "gameday" {
  for_each = local.roles
  #checkov:skip=CKV_K8S_8:The worker serves no port; Temporal's heartbeat timeouts detect a stuck worker and move its activities to the others.
  #checkov:skip=CKV_K8S_9:No port to be ready on: a worker takes tasks only once connected to Temporal.
  #checkov:skip=CKV_K8S_14:var.image must match repository@sha256:<digest> (its validation); checkov cannot see a variable's value.
  #checkov:skip=CKV_K8S_43:var.image must match repository@sha256:<digest> (its validation); checkov cannot see a variable's value.
  #checkov:skip=CKV_K8S_35:temporalio reads the API key from TEMPORAL_API_KEY only; it comes from an existing Secret, never from this module.
  metadata {
    name      = "${var.name}-${each.key}"
    namespace = local.namespace
    labels    = local.labels[each.key]
  }

  spec {
    replicas = var.replicas
    selector {
      match_labels = local.labels[each.key]
    }
    strategy {
      type = "RollingUpdate"
      rolling_update {
        max_unavailable = "0"
        max_surge       = "1"
      }
    }

    template {
      metadata {
        labels = merge(local.labels[each.key], each.key == "azure" && var.azure_client_id != null ? { "azure.workload.identity/use" = "true" } : {})
      }

      spec {
        service_account_name             = kubernetes_service_account_v1.gameday[each.key].metadata[0].name
        automount_service_account_token  = false
        termination_grace_period_seconds = 60
        node_selector                    = local.node_selector

        security_context {
          run_as_non_root = true
          run_as_user     = 10001
          run_as_group    = 10001
          fs_group        = 10001
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        dynamic "topology_spread_constraint" {
          for_each = var.worker_zone == null ? [1] : []
          content {
            max_skew           = 1
            topology_key       = "topology.kubernetes.io/zone"
            when_unsatisfiable = "ScheduleAnyway"
            label_selector {
              match_labels = local.labels[each.key]
            }
          }
        }

        container {
          name              = "worker"
          image             = var.image
          image_pull_policy = "Always"
          command           = ["gameday", "worker", "--role", each.key]

          dynamic "env" {
            for_each = local.environment[each.key]
            content {
              name  = env.key
              value = env.value
            }
          }

          dynamic "env" {
            for_each = var.temporal_api_key_secret == null ? [] : [var.temporal_api_key_secret]
            content {
              name = "TEMPORAL_API_KEY"
              value_from {
                secret_key_ref {
                  name = env.value.name
                  key  = env.value.key
                }
              }
            }
          }

          resources {
            requests = var.resources.requests
            limits   = var.resources.limits
          }

          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = true
            run_as_non_root            = true
            run_as_user                = 10001
            capabilities {
              drop = ["ALL"]
            }
          }

          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }

          dynamic "volume_mount" {
            for_each = each.key == "gcp" && local.gcp_credential_file ? ["/etc/gcp", "/var/run/secrets/gcp"] : []
            content {
              name       = volume_mount.value == "/etc/gcp" ? "gcp-credentials" : "gcp-token"
              mount_path = volume_mount.value
              read_only  = true
            }
          }

          dynamic "volume_mount" {
            for_each = var.temporal_tls_secret == null ? [] : [var.temporal_tls_secret]
            content {
              name       = "temporal-tls"
              mount_path = "/etc/temporal-tls"
              read_only  = true
            }
          }
        }

        volume {
          name = "tmp"
          empty_dir {
            size_limit = "64Mi"
          }
        }

        dynamic "volume" {
          for_each = each.key == "gcp" && local.gcp_credential_file ? [kubernetes_config_map_v1.gcp_credentials[0].metadata[0].name] : []
          content {
            name = "gcp-credentials"
            config_map {
              name = volume.value
            }
          }
        }

        dynamic "volume" {
          for_each = each.key == "gcp" && local.gcp_credential_file ? [var.gcp_token_audience] : []
          content {
            name = "gcp-token"
            projected {
              sources {
                service_account_token {
                  audience           = volume.value
                  expiration_seconds = 3600
                  path               = "token"
                }
              }
            }
          }
        }

        dynamic "volume" {
          for_each = var.temporal_tls_secret == null ? [] : [var.temporal_tls_secret]
          content {
            name = "temporal-tls"
            secret {
              secret_name  = volume.value
              default_mode = "0440"
            }
          }
        }
      }
    }
  }
}
