# The new side of plan_test.go's pair: be1 removed, be2 reweighted 2 -> 4,
# be3 drained, be5 added; VIP api added, legacy removed, dns unchanged.
hash_seed = 20261121

pipeline {
  element "RxXDP" "rx" {
    interface = "eth0"
  }
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity = 65536
  }
  element "MaglevSelect" "sel" {}
  element "GREEncap" "encap" {
    source4 = "10.90.2.10"
    source6 = "fd00:90:2::10"
  }
  element "TxXDP" "tx" {
    interface = "eth0"
    gateway   = "10.90.2.1"
  }
  element "Discard" "drop" {}
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

vip "dns" {
  address  = "10.90.100.53"
  protocol = "udp"
  ports    = [53]
  pool     = "dns"
}

vip "api" {
  address  = "10.90.100.20"
  protocol = "tcp"
  ports    = [443]
  pool     = "api"
}

pool "web" {
  health_check "http" {
    interval = "500ms"
    timeout  = "300ms"
    port     = 80
    path     = "/"
  }
  backend "be2" {
    address = "10.90.2.22"
    weight  = 4
  }
  backend "be3" {
    address = "10.90.2.23"
    weight  = 3
    drain   = true
  }
  backend "be4" {
    address = "10.90.2.24"
    weight  = 2
  }
  backend "be5" {
    address = "10.90.2.25"
    weight  = 2
  }
}

pool "dns" {
  backend "ns1" {
    address = "10.90.2.31"
    weight  = 1
  }
  backend "ns2" {
    address = "10.90.2.32"
    weight  = 1
  }
}

pool "api" {
  backend "api1" {
    address = "10.90.2.51"
    weight  = 1
  }
  backend "api2" {
    address = "10.90.2.52"
    weight  = 1
  }
}
