# Route announcers: top-level announce blocks and a VIP's announce
# parameters, all problems in one load.
hash_seed = 1

pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}

plugin "redis" {}

announce "bgp" {
  drain_time = "soon" # ERROR: Invalid duration
  local_as   = 65001
}

announce "redis" {} # ERROR: Name used twice

announce "bgp" {} # ERROR: Duplicate announcer

announce "quiet" {
  sha256 = "00" # ERROR: Invalid checksum
}

vip "web" {
  address = "192.0.2.10"
  pool    = "web"
  announce "bgq" {} # ERROR: Unknown route announcer
  announce "bgp" {
    med = 10
  }
  announce "bgp" { # ERROR: Duplicate announce block
    med = 20
  }
  announce "quiet" {
    communities = null # ERROR: Invalid plugin parameter
  }
}

pool "web" {
  backend "a" {
    address = "198.51.100.1"
  }
}
