# A complete, valid file: the shape of the default graph with test element
# types, and a service with two pools.

variable "seed" {
  default     = 42
  description = "flow hash seed; must be the same on every node"
}

variable "capacity" {
  type    = number
  default = 1000
}

variable "ports" {
  type    = list(number)
  default = [80, 443]
}

locals {
  web_weight = local.base * 2
  base       = 1
  capacity   = var.capacity * 65 + 536
  pool_name  = lower("WEB")
}

hash_seed = var.seed

pipeline {
  workers = 2

  element "TestSource" "rx" {
    file = "input.pcap"
  }
  element "TestParse" "parse" {}
  element "TestTable" "ct" {
    capacity = local.capacity
    tags     = split(",", "a,b")
  }
  element "TestSelect" "sel" {
    enabled = true
    ports   = range(3)
    weight  = 0.5
  }
  element "TestSink" "tx" {
    file     = "/tmp/out.pcap"
    key_file = "keys/tx.key"
    note     = format("%s-%d", "tx", 1)
  }
  element "TestDrop" "drop" {}

  connect = [
    "rx -> parse -> ct",
    "ct.hit -> tx",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend->drop",
  ]
}

vip "web4" {
  address    = "192.0.2.10"
  protocol   = "tcp"
  ports      = var.ports
  pool       = local.pool_name
  table_size = 65537
}

vip "dns6" {
  address = "2001:db8::53"
  pool    = "canary"
}

pool "web" {
  backend "web-1" { address = "198.51.100.1" }
  backend "web-2" {
    address = "198.51.100.2"
    weight  = local.web_weight
  }
  pools = ["canary"]
}

pool "canary" {
  backend "canary-1" {
    address = "2001:db8:1::1"
    drain   = true
  }
}
