# The running side of plan_test.go's pair: the lab's web VIPs over four
# backends, a DNS VIP and a legacy VIP.
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

vip "legacy" {
  address  = "10.90.100.30"
  protocol = "tcp"
  ports    = [8080]
  pool     = "legacy"
}

pool "web" {
  health_check "http" {
    interval = "500ms"
    timeout  = "300ms"
    port     = 80
    path     = "/"
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
  backend "be4" {
    address = "10.90.2.24"
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

pool "legacy" {
  backend "old1" {
    address = "10.90.2.41"
    weight  = 1
  }
}
