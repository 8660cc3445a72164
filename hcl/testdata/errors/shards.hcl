# VIP sharding: every shard the node or a VIP names is one of shard_names,
# each reported at its item with a did-you-mean; VIPs that share an address
# name the same shards (nodes announce addresses).

hash_seed   = 1
shard_names = ["a", "b"]
shards = [
  "a",
  "c", # ERROR: Unknown shard
  3,   # ERROR: Invalid shard
]

pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}

vip "web" {
  address = "192.0.2.10"
  pool    = "web"
  ports   = [80]
  shards  = ["a", "bb"] # ERROR: Unknown shard
}

vip "web-tls" {
  address = "192.0.2.10"
  pool    = "web"
  ports   = [443]
  shards  = ["b"] # ERROR: Shards differ at one address
}

vip "api" {
  address = "192.0.2.11"
  pool    = "web"
  shards  = [null] # ERROR: Invalid shard
}

vip "typed" {
  address = "192.0.2.12"
  pool    = "web"
  shards  = "a" # ERROR: Invalid shards
}

vip "everywhere" {
  address = "192.0.2.13"
  pool    = "web"
}

pool "web" {
  backend "a" { address = "198.51.100.1" }
}
