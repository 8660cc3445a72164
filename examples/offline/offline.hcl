# The offline example: the default xlb graph over a capture file instead of
# AF_XDP. It reads input.pcap (made by ./gen), encapsulates every packet of
# a known flow towards its backend and writes the result to out.pcap.
# Change GREEncap to IPIPEncap below to get IP-in-IP instead of GRE.

variable "output" {
  default     = "out.pcap"
  description = "where the encapsulated packets are written, relative to this file"
}

# Every node of a fleet must use the same seed, so that a flow that ECMP
# moves to another node is hashed, and so balanced, the same way there.
hash_seed = 20261121

pipeline {
  workers = 1

  element "RxPcap" "rx" {
    file = "input.pcap"
  }
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity    = 65536
    udp_timeout = "30s"
  }
  element "MaglevSelect" "sel" {}
  element "GREEncap" "encap" {
    source4 = "192.0.2.1"
    source6 = "2001:db8::1"
  }
  element "TxPcap" "tx" {
    file = var.output
  }
  element "Discard" "drop" {}

  # The default graph over the names above: see default_graph in
  # docs/hcl.md, or draw it with `xlbd graph FILE`.
  connect = default_graph()
}

vip "web4" {
  address  = "192.0.2.10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}

vip "dns4" {
  address  = "192.0.2.10"
  protocol = "udp"
  ports    = [53]
  pool     = "dns"
}

vip "web6" {
  address  = "2001:db8::10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}

vip "dns6" {
  address  = "2001:db8::10"
  protocol = "udp"
  ports    = [53]
  pool     = "dns"
}

# web-3 has twice the weight of its peers; the canary pool nests inside web
# (as pools may in the Maglev paper) and its one backend, an IPv6 host, is
# reached through an IPv6 outer header whatever the client's family.
pool "web" {
  backend "web-1" {
    address = "198.51.100.1"
  }
  backend "web-2" {
    address = "198.51.100.2"
  }
  backend "web-3" {
    address = "198.51.100.3"
    weight  = 2
  }
  pools = ["canary"]
}

pool "canary" {
  backend "canary-1" {
    address = "2001:db8:1::1"
  }
}

pool "dns" {
  backend "dns-1" {
    address = "198.51.100.53"
  }
  backend "dns-2" {
    address = "2001:db8:1::53"
  }
}
