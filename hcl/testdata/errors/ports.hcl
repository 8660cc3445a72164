# A vip's ports are read one by one: each problem is reported at its item
# (at the whole expression when the list is computed), a duplicate once, at
# its second listing.

hash_seed = 1

variable "broken" {
  type    = list(number)
  default = ["x"] # ERROR: Invalid default value
}

pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}

vip "web" {
  address = "192.0.2.10"
  pool    = "web"
  ports = [
    80,
    0,      # ERROR: Invalid port
    "http", # ERROR: Invalid port
    1.5,    # ERROR: Invalid port
    -1,     # ERROR: Invalid port
    70000,  # ERROR: Invalid port
    null,   # ERROR: Invalid port
    443,
    80, # ERROR: Duplicate port
    80,
    "443", # ERROR: Duplicate port
  ]
}

vip "computed" {
  address = "192.0.2.11"
  pool    = "web"
  ports   = concat([8080], [8080, 0]) # ERROR: Duplicate port # ERROR: Invalid port
}

vip "typed" {
  address = "192.0.2.12"
  pool    = "web"
  ports   = { http = 80 } # ERROR: Invalid ports
}

vip "echo" {
  address = "192.0.2.13"
  pool    = "web"
  ports   = var.broken
}

pool "web" {
  backend "a" { address = "198.51.100.1" }
}
