# xlb's side of the wire benchmark (e2e/bench, issue #3): the default graph
# of examples/lab/lab.hcl — parse, connection tracking, Maglev, GRE — with
# one worker, on the benchmark's link. The harness passes the variables;
# the defaults are its values.
#
# The next hop is a neighbour entry the harness adds by hand, with a MAC
# address no interface has: the encapsulated packets reach the generator's
# end of the link, are counted there, and are dropped at once.

variable "interface" {
  default = "bench0"
}

variable "gateway" {
  default = "10.90.9.1"
}

variable "source" {
  default = "10.90.9.10"
}

variable "receive" {
  default = "poll"
}

variable "mode" {
  default = "native"
}

# The socket's sizes; 0 is RxXDP's default.
variable "frames" {
  default = 16384
}

variable "frame_size" {
  default = 4096
}

variable "rx_ring" {
  default = 0
}

variable "tx_ring" {
  default = 0
}

variable "batch" {
  default = 0
}

variable "busy_poll" {
  default = ""
}

hash_seed = 20261121

pipeline {
  workers = 1

  element "RxXDP" "rx" {
    interface  = var.interface
    receive    = var.receive
    mode       = var.mode
    frames     = var.frames
    frame_size = var.frame_size
    rx_ring    = var.rx_ring
    tx_ring    = var.tx_ring
    batch      = var.batch
    busy_poll  = var.busy_poll
  }
  element "Parse5Tuple" "parse" {}
  # Larger than the generator's 69,632 flows: after the first pass every
  # packet is a hit, as on a load balancer carrying established traffic.
  element "ConnTrack" "ct" {
    capacity = 262144
  }
  element "MaglevSelect" "sel" {}
  element "GREEncap" "encap" {
    source4 = var.source
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

pool "web" {
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
