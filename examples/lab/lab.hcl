# xlb on the wire: the default graph over AF_XDP, one-armed, as it runs in
# the network-namespace lab (e2e/README.md). Clients reach the VIP through
# the router; xlb encapsulates each packet towards its backend and sends it
# back out of the same interface to the router; backends decapsulate and
# reply to the client directly (direct server return).
#
# Change GREEncap to IPIPEncap below to use IP-in-IP; nothing else changes.

variable "interface" {
  default     = "eth0"
  description = "the interface xlb receives VIP traffic on and sends encapsulated packets from"
}

variable "gateway" {
  default     = "10.90.2.1"
  description = "next hop for encapsulated packets (the router); its MAC comes from the neighbour table"
}

# Every node of a fleet must use the same seed, so that a flow that ECMP
# moves to another node is hashed, and so balanced, the same way there.
hash_seed = 20261121

pipeline {
  # 0: one worker per RX queue of the interface, at most one per CPU.
  workers = 0

  element "RxXDP" "rx" {
    interface = var.interface
  }
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity = 65536
  }
  element "MaglevSelect" "sel" {}
  element "GREEncap" "encap" {
    source4 = "10.90.2.10"
    source6 = "fd00:90:2::10"
    # The outer packet must fit the interface's MTU; a client packet too
    # big for the tunnel is answered with ICMP (elements/encap, Path MTU).
    interface = var.interface
  }
  element "TxXDP" "tx" {
    interface = var.interface
    gateway   = var.gateway
  }
  element "Discard" "drop" {}

  # The default graph over the names above: see default_graph in
  # docs/hcl.md, or draw it with `xlbd graph FILE`.
  connect = default_graph()
}

vip "web4" {
  address  = "10.90.100.10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}

vip "web6" {
  address  = "fd00:90:100::10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}

# Weights 1:2:3: be3 gets half of the new connections, be1 a sixth. Each
# backend's HTTP server is checked twice a second at its own address; two
# failures in a row take it out of the Maglev table (its flows move), two
# passes bring it back.
pool "web" {
  health_check "http" {
    interval      = "500ms"
    timeout       = "300ms"
    fall          = 2
    rise          = 2
    port          = 80
    path          = "/"
    expect_status = [200]
  }
  backend "be1" {
    address = "10.90.2.21"
    weight  = 1
  }
  backend "be2" {
    address = "10.90.2.22"
    weight  = 2
  }
  backend "be3" {
    address = "10.90.2.23"
    weight  = 3
  }
}
