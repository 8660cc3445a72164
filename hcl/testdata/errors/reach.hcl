# An element that bounds the backends it reaches (pipeline.BackendChecker,
# as DirectRoute does with its interface's segments) refuses each backend
# this node serves out of its reach, at the backend's address: those of
# pools included too, not those of another shard's VIPs or of no VIP.
# Checked only once the file has no other error.

hash_seed   = 1
shard_names = ["a", "b"]
shards      = ["a"]

pipeline {
  element "TestSource" "rx" {}
  element "TestReach" "dr" {
    prefix = "10.0.0.0/24"
  }
  element "TestDrop" "drop" {}
  connect = ["rx -> dr", "dr.out -> drop", "dr.bad -> drop", "dr.icmp -> drop"]
}

vip "web" {
  address = "192.0.2.10"
  pool    = "web"
}

vip "other" {
  address = "192.0.2.11"
  pool    = "far"
  shards  = ["b"]
}

pool "web" {
  pools = ["extra"]
  backend "near" { address = "10.0.0.1" }
  backend "away" {
    weight  = 2
    address = "10.0.1.1" # ERROR: Backend out of reach
  }
}

pool "extra" {
  backend "six" { address = "2001:db8::1" } # ERROR: Backend out of reach
}

pool "far" {
  backend "far" { address = "10.9.0.1" }
}

pool "unused" {
  backend "lost" { address = "10.9.0.2" }
}
