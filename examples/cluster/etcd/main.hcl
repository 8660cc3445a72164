# One node of an xlb cluster whose services live in etcd (docs/sources.md,
# docs/cluster.md). This file holds what is the node's own: the pipeline,
# the route announcer and where the services are. Every node runs it with
# its own -var node=N and -node lbN; the VIPs and pools are the values of
# the keys under /xlb/services/ (services/*.hcl here, loaded with etcdctl
# put), which every node reads, so every node builds the same tables. Each
# node publishes what it applied under /xlb/status/ and checks that the
# others, reading the same keys, built the same tables.
#
# In the lab (e2e/README.md) node N is the namespace lbN, at 10.90.2.(9+N)
# and fd00:90:2::(9+N); the router's BIRD (AS 65000) peers with each at
# 10.90.2.1 and fd00:90:2::1 and installs each VIP as one ECMP route.

variable "node" {
  description = "this node's number, 1 to 10: its addresses are 10.90.2.(9+node) and fd00:90:2::(9+node)"
}

variable "interface" {
  default     = "eth0"
  description = "the interface xlb receives VIP traffic on and sends encapsulated packets from"
}

locals {
  address4 = "10.90.2.${9 + var.node}"
  address6 = "fd00:90:2::${9 + var.node}"
}

variable "hash_seed" {
  default     = 20261121
  description = "the same on every node: with the same VIPs, pools and backend names it makes the same Maglev tables"
}

hash_seed = var.hash_seed

variable "etcd" {
  default     = "http://10.90.2.1:2379"
  description = "the etcd client URL: in the lab, etcd runs in the router namespace"
}

source "etcd" {
  endpoints = [var.etcd]
  prefix    = "/xlb/services/"
}

pipeline {
  element "RxXDP" "rx" {
    interface = var.interface
  }
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity = 65536
  }
  element "MaglevSelect" "sel" {}
  element "GREEncap" "encap" {
    source4 = local.address4
    source6 = local.address6
    # Outer packets fit the interface's MTU; too big: ICMP to the client.
    interface = var.interface
  }
  element "TxXDP" "tx" {
    interface = var.interface
    gateway   = "10.90.2.1"
  }
  element "Discard" "drop" {}
  connect = default_graph()
}

# Each VIP is announced while it has a healthy backend and this node
# forwards (its self-check passes); on SIGTERM every route is withdrawn,
# then the node keeps forwarding for drain_time while the router moves
# the flows to the other nodes, then it stops.
announce "bgp" {
  drain_time            = "2s"
  local_as              = 65001
  router_id             = local.address4
  graceful_restart_time = "15s"
  neighbors = [
    { address = "10.90.2.1", peer_as = 65000, hold_time = "3s", keepalive = "1s" },
    { address = "fd00:90:2::1", peer_as = 65000, hold_time = "3s", keepalive = "1s" },
  ]
}
