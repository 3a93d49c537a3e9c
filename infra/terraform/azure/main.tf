# The gameday worker on Azure: a custom role with exactly AZURE_ACTIONS of
# tests/support/permissions.py (tests/test_terraform.py fails when they drift apart), assignable
# and assigned only on the given resource groups (or the subscription).

terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 3.90"
    }
  }
}

locals {
  subscription = "/subscriptions/${var.subscription_id}"
  scopes       = length(var.resource_group_names) > 0 ? [for group in var.resource_group_names : "${local.subscription}/resourceGroups/${group}"] : [local.subscription]
}

resource "azurerm_role_definition" "gameday" {
  name        = var.role_name
  scope       = local.subscription
  description = "Region-outage GameDays: deny-all NSGs on NICs, VM power off and start, Traffic Manager endpoint status."

  permissions {
    actions = [
      # resolve_blackhole_zone; *_stop_instances: each VM with its instance view
      "Microsoft.Compute/virtualMachines/read",
      # apply and restore_stop_instances: gameday's tags on each VM it powers off (PATCH), the
      # power-off without shutdown and the start
      "Microsoft.Compute/virtualMachines/write",
      "Microsoft.Compute/virtualMachines/powerOff/action",
      "Microsoft.Compute/virtualMachines/start/action",
      # *_blackhole_zone: each NIC, read-modify-write
      "Microsoft.Network/networkInterfaces/read",
      "Microsoft.Network/networkInterfaces/write",
      # a NIC write is checked against everything the NIC refers to
      "Microsoft.Network/networkSecurityGroups/join/action",
      "Microsoft.Network/virtualNetworks/subnets/join/action",
      "Microsoft.Network/publicIPAddresses/join/action",
      "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
      "Microsoft.Network/loadBalancers/inboundNatRules/join/action",
      "Microsoft.Network/applicationSecurityGroups/joinIpConfiguration/action",
      "Microsoft.Network/applicationGateways/backendAddressPools/join/action",
      # *_blackhole_zone: gameday's deny-all NSG
      "Microsoft.Network/networkSecurityGroups/read",
      "Microsoft.Network/networkSecurityGroups/write",
      "Microsoft.Network/networkSecurityGroups/delete",
      # *_evacuate_region: profiles and endpoints of every endpoint type
      "Microsoft.Network/trafficManagerProfiles/read",
      "Microsoft.Network/trafficManagerProfiles/azureEndpoints/read",
      "Microsoft.Network/trafficManagerProfiles/azureEndpoints/write",
      "Microsoft.Network/trafficManagerProfiles/externalEndpoints/read",
      "Microsoft.Network/trafficManagerProfiles/externalEndpoints/write",
      "Microsoft.Network/trafficManagerProfiles/nestedEndpoints/read",
      "Microsoft.Network/trafficManagerProfiles/nestedEndpoints/write",
      # *_failover_database, sweep: each PostgreSQL flexible server, gameday's tags on it (PATCH),
      # the restart with planned failover
      "Microsoft.DBforPostgreSQL/flexibleServers/read",
      "Microsoft.DBforPostgreSQL/flexibleServers/write",
      "Microsoft.DBforPostgreSQL/flexibleServers/restart/action",
      # *_deny_capacity, sweep: each scale set, its tags and automatic repairs policy (PATCH);
      # the autoscale settings that target it, their tags and enabled (PATCH)
      "Microsoft.Compute/virtualMachineScaleSets/read",
      "Microsoft.Compute/virtualMachineScaleSets/write",
      "Microsoft.Insights/autoscalesettings/read",
      "Microsoft.Insights/autoscalesettings/write",
      # *_partition_regions, sweep: VNets and their peerings; gameday's deny rules on each subnet
      # NSG (its marks are an NSG write, above)
      "Microsoft.Network/virtualNetworks/read",
      "Microsoft.Network/networkSecurityGroups/securityRules/read",
      "Microsoft.Network/networkSecurityGroups/securityRules/write",
      "Microsoft.Network/networkSecurityGroups/securityRules/delete",
      # *_evacuate_zone, sweep: each load balancer, written back whole (members' admin states,
      # gameday's tags); the write is checked against its frontends' subnets and public IPs
      # (joins above) and the VNets of IP-based pool members
      "Microsoft.Network/loadBalancers/read",
      "Microsoft.Network/loadBalancers/write",
      "Microsoft.Network/virtualNetworks/joinLoadBalancer/action",
      # every zone step: the subscription's logical-to-physical zone mapping (List Locations);
      # effective where the role is assigned on the subscription, else zones lease by logical name
      "Microsoft.Resources/subscriptions/locations/read",
    ]
    not_actions = []
  }

  assignable_scopes = local.scopes
}

resource "azurerm_role_assignment" "gameday" {
  for_each           = toset(local.scopes)
  scope              = each.value
  role_definition_id = azurerm_role_definition.gameday.role_definition_resource_id
  principal_id       = var.principal_id
  principal_type     = var.principal_type
  description        = "gameday worker"
}
