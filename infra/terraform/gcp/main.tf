# The gameday worker on GCP: a custom role with exactly GCP_PERMISSIONS of
# tests/support/permissions.py (tests/test_terraform.py fails when they drift apart), a service
# account, and the role bound to it in the project.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

locals {
  service_account_email = var.create_service_account ? google_service_account.gameday[0].email : var.service_account_email
}

resource "google_project_iam_custom_role" "gameday" {
  project     = var.project_id
  role_id     = var.role_id
  title       = "gameday worker"
  description = "Zone and region outage GameDays: deny rules, instance tags and power, backend capacity."
  stage       = "GA"
  permissions = [
    # resolve_blackhole_zone / _region
    "compute.zones.get",
    "compute.zones.list",
    "compute.instances.list",
    # apply_ and restore_blackhole_zone: instance network tags
    "compute.instances.get",
    "compute.instances.setTags",
    # apply_ and restore_blackhole_zone: the deny rules
    "compute.firewalls.create",
    "compute.firewalls.delete",
    "compute.networks.updatePolicy",
    # *_evacuate_region: backends' capacityScaler
    "compute.backendServices.get",
    "compute.backendServices.update",
    "compute.instanceGroups.use",
    "compute.networkEndpointGroups.use",
    # sweep: gameday's leftover deny rules
    "compute.firewalls.list",
    "compute.firewalls.get",
    # *_stop_instances and sweep: mark (labels), stop and start each instance
    "compute.instances.setLabels",
    "compute.instances.stop",
    "compute.instances.start",
    # every mutation: its operation
    "compute.zoneOperations.get",
    "compute.globalOperations.get",
    # *_deny_capacity: regional MIGs' autohealing and their autoscalers' mode; *_stop_instances:
    # the defaultActionOnFailure of the regional MIGs whose members it stops (get, update, and
    # the regional operation)
    "compute.instanceGroupManagers.get",
    "compute.instanceGroupManagers.update",
    "compute.healthChecks.useReadOnly",
    "compute.autoscalers.get",
    "compute.autoscalers.update",
    "compute.regionOperations.get",
    # *_failover_database and sweep: Cloud SQL instances read, labelled and failed over
    "cloudsql.instances.get",
    "cloudsql.instances.list",
    "cloudsql.instances.update",
    "cloudsql.instances.failover",
    # resolve_partition_regions: the network's subnets (the deny rules are the firewall calls)
    "compute.subnetworks.list",
  ]
}

resource "google_service_account" "gameday" {
  count        = var.create_service_account ? 1 : 0
  project      = coalesce(var.service_account_project_id, var.project_id)
  account_id   = var.service_account_id
  display_name = "gameday worker"
  description  = "Runs gameday's activities; holds only the gameday worker custom role."
}

resource "google_project_iam_member" "gameday" {
  project = var.project_id
  role    = google_project_iam_custom_role.gameday.name
  member  = "serviceAccount:${local.service_account_email}"

  lifecycle {
    precondition {
      condition     = var.create_service_account || var.service_account_email != null
      error_message = "Set service_account_email when create_service_account is false."
    }
  }
}

resource "google_service_account_iam_member" "workload_identity" {
  # count, not for_each: members may name resources created in the same apply
  count              = var.create_service_account ? length(var.workload_identity_members) : 0
  service_account_id = google_service_account.gameday[0].name
  role               = "roles/iam.workloadIdentityUser"
  member             = var.workload_identity_members[count.index]
}
