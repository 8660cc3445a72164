# One node of an xlb cluster behind a BGP router that spreads each VIP's
# flows over the nodes by ECMP (docs/cluster.md). Every node runs this
# same file with its own -var node=N: the hash seed, VIPs, pools and
# backend names are identical, so every node builds the same Maglev
# tables and a flow that ECMP moves to another node keeps its backend.
#
# In the lab (e2e/README.md) node N is the namespace lbN, at 10.90.2.(9+N)
# and fd00:90:2::(9+N); the router's BIRD (AS 65000) peers with each at
# 10.90.2.1 and fd00:90:2::1 and installs each VIP as one ECMP route.

variable "node" {
  description = "this node's number, 1 to 10: its addresses are 10.90.2.(9+node) and fd00:90:2::(9+node)"
}

variable "nodes" {
  default     = 3
  description = "how many nodes the cluster has, lb1 to lbN: the same on every node (FragRedirect's node list); a node numbered above it lists itself too, as it joins"
}

variable "shard" {
  default     = ""
  description = "this node's shard, \"a\" or \"b\" (docs/cluster.md, VIP sharding): it serves and announces only that shard's VIPs and those of none; empty: every VIP"
}

variable "interface" {
  default     = "eth0"
  description = "the interface xlb receives VIP traffic on and sends encapsulated packets from"
}

locals {
  address4 = "10.90.2.${9 + var.node}"
  address6 = "fd00:90:2::${9 + var.node}"
}

# The same on every node: with the same VIPs, pools and backend names it
# makes the same Maglev tables, so every node picks the same backend for a
# flow.
hash_seed = 20261121

# VIP sharding, as Maglev does it: the fleet's shards, the same on every
# node, and this node's (docs/cluster.md). In this example web4 stands for
# a service of shard a and web6 for one of shard b; api4 names no shard,
# so every node serves it.
shard_names = ["a", "b"]
shards      = var.shard == "" ? [] : [var.shard]

pipeline {
  element "RxXDP" "rx" {
    interface = var.interface
  }
  # The router's ECMP hashes a later fragment on (source, destination,
  # protocol) only, so a datagram's fragments may reach another node than
  # its flow's packets. Every node sends each fragment to the node this
  # list and the 3-tuple's hash choose, the same on every node, which
  # steers them with the others (docs/cluster.md).
  element "FragRedirect" "frag" {
    interface = var.interface
    self      = "lb${var.node}"
    nodes = [for n in range(1, max(var.nodes, var.node) + 1) :
      { name = "lb${n}", address = "10.90.2.${9 + n}" }
    ]
  }
  # Fragments for another node: to its MAC address on the shared link,
  # kept by a TxXDP without gateway.
  element "TxXDP" "peers" {
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
  # The default graph with FragRedirect before Parse5Tuple.
  connect = [
    "rx -> frag -> parse -> ct",
    "frag.redirect -> peers",
    "ct.hit -> encap -> tx",
    "encap.icmp -> tx",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend -> drop",
    "encap.bad -> drop",
  ]
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

vip "web4" {
  address  = "10.90.100.10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
  shards   = ["a"]
  announce "bgp" {
    communities = ["65000:80"]
  }
}

vip "web6" {
  address  = "fd00:90:100::10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
  shards   = ["b"]
}

# A VIP with a single backend: when be4 fails its health check, no node
# can serve api4, and every node withdraws it.
vip "api4" {
  address  = "10.90.100.11"
  protocol = "tcp"
  ports    = [80]
  pool     = "api"
}

pool "web" {
  health_check "http" {
    interval = "500ms"
    timeout  = "300ms"
    fall     = 2
    rise     = 2
    port     = 80
  }
  backend "be1" { address = "10.90.2.21" }
  backend "be2" { address = "10.90.2.22" }
  backend "be3" { address = "10.90.2.23" }
}

pool "api" {
  health_check "http" {
    interval = "500ms"
    timeout  = "300ms"
    fall     = 2
    rise     = 2
    port     = 80
  }
  backend "be4" { address = "10.90.2.24" }
}
