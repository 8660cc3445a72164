# SNAT (snat_ports on a vip): bounds, service ports, one VIP per address,
# and a range for every backend.
hash_seed = 1

pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}

vip "big" {
  address    = "192.0.2.1"
  ports      = [80]
  pool       = "three"
  snat_ports = 70000 # ERROR: SNAT range too large
}

vip "exhausted" {
  address    = "192.0.2.2"
  ports      = [443]
  pool       = "three"
  snat_ports = 30000 # ERROR: SNAT ports exhausted
}

vip "every" {
  address    = "192.0.2.3"
  pool       = "three"
  snat_ports = 1024 # ERROR: SNAT without free ports
}

vip "negative" {
  address    = "192.0.2.4"
  ports      = [80]
  pool       = "three"
  snat_ports = -1 # ERROR: Unsuitable value type
}

vip "first" {
  address    = "192.0.2.5"
  ports      = [80]
  pool       = "three"
  snat_ports = 1024
}

vip "second" {
  address    = "192.0.2.5"
  ports      = [443]
  pool       = "three"
  snat_ports = 1024 # ERROR: Duplicate SNAT address
}

pool "three" {
  backend "a" {
    address = "198.51.100.1"
  }
  backend "b" {
    address = "198.51.100.2"
  }
  backend "c" {
    address = "198.51.100.3"
  }
}
