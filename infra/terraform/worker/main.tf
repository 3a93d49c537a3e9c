# The gameday worker as a Kubernetes Deployment. One manifest runs on EKS, GKE or AKS and holds
# all three clouds' identities through workload identity (no keys anywhere), which ECS, tied to
# AWS, could not. Configuration is contract §2's environment; secrets are only referenced.

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
  labels = {
    "app.kubernetes.io/name"      = "gameday"
    "app.kubernetes.io/component" = "worker"
    "app.kubernetes.io/instance"  = var.name
  }
  identity_annotations = {
    for key, value in {
      "eks.amazonaws.com/role-arn"        = var.aws_role_arn
      "iam.gke.io/gcp-service-account"    = var.gcp_service_account_email
      "azure.workload.identity/client-id" = var.azure_client_id
    } : key => value if value != null
  }
  environment = merge(
    var.env,
    {
      TEMPORAL_ADDRESS   = var.temporal_address
      TEMPORAL_NAMESPACE = var.temporal_namespace
      TEMPORAL_TLS       = tostring(var.temporal_tls)
      GAMEDAY_TASK_QUEUE = var.task_queue
      OTEL_SERVICE_NAME  = "gameday-worker"
      HOME               = "/tmp"
    },
    { for key, value in {
      GAMEDAY_WORKER_CLOUD           = var.worker_cloud
      GAMEDAY_WORKER_REGION          = var.worker_region
      GAMEDAY_WORKER_ZONE            = var.worker_zone
      OTEL_EXPORTER_OTLP_ENDPOINT    = var.otel_exporter_otlp_endpoint
      TEMPORAL_TLS_CLIENT_CERT_PATH  = var.temporal_tls_secret == null ? null : "/etc/temporal-tls/tls.crt"
      TEMPORAL_TLS_CLIENT_KEY_PATH   = var.temporal_tls_secret == null ? null : "/etc/temporal-tls/tls.key"
      GOOGLE_APPLICATION_CREDENTIALS = var.gcp_credential_config == null ? null : "/etc/gcp/credentials.json"
    } : key => value if value != null },
  )
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
  count = var.gcp_credential_config == null ? 0 : 1
  metadata {
    name      = "${var.name}-gcp-credentials"
    namespace = local.namespace
    labels    = local.labels
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
  metadata {
    name        = var.name
    namespace   = local.namespace
    labels      = local.labels
    annotations = local.identity_annotations
  }
  # The workload identity webhooks of EKS and AKS project their own token; GKE uses the metadata
  # server: the Kubernetes API token is not needed.
  automount_service_account_token = false
}

resource "kubernetes_deployment_v1" "gameday" {
  #checkov:skip=CKV_K8S_8:The worker serves no port; Temporal's heartbeat timeouts detect a stuck worker and move its activities to the others.
  #checkov:skip=CKV_K8S_9:No port to be ready on: a worker takes tasks only once connected to Temporal.
  #checkov:skip=CKV_K8S_14:var.image must match repository@sha256:<digest> (its validation); checkov cannot see a variable's value.
  #checkov:skip=CKV_K8S_43:var.image must match repository@sha256:<digest> (its validation); checkov cannot see a variable's value.
  #checkov:skip=CKV_K8S_35:temporalio reads the API key from TEMPORAL_API_KEY only; it comes from an existing Secret, never from this module.
  metadata {
    name      = var.name
    namespace = local.namespace
    labels    = local.labels
  }

  spec {
    replicas = var.replicas
    selector {
      match_labels = local.labels
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
        labels = merge(local.labels, var.azure_client_id == null ? {} : { "azure.workload.identity/use" = "true" })
      }

      spec {
        service_account_name             = kubernetes_service_account_v1.gameday.metadata[0].name
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
              match_labels = local.labels
            }
          }
        }

        container {
          name              = "worker"
          image             = var.image
          image_pull_policy = "Always"
          command           = ["gameday", "worker"]

          dynamic "env" {
            for_each = local.environment
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
            for_each = var.gcp_credential_config == null ? [] : ["/etc/gcp", "/var/run/secrets/gcp"]
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
          for_each = var.gcp_credential_config == null ? [] : [kubernetes_config_map_v1.gcp_credentials[0].metadata[0].name]
          content {
            name = "gcp-credentials"
            config_map {
              name = volume.value
            }
          }
        }

        dynamic "volume" {
          for_each = var.gcp_credential_config == null ? [] : [var.gcp_token_audience]
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
