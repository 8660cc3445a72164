# WARNING: hash_seed not set
# Service problems: values that do not fit are reported here, the rest by
# control.Config.Validate, all in one load.

pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}

vip "web" {
  address = "192.0.2.300" # ERROR: Invalid address
  ports   = [80, 70000]   # ERROR: Invalid port
  pool    = "wbe"         # ERROR: Unknown pool
  colour  = "blue"        # ERROR: Unsupported argument

  table_size = parseint("x", 10) # ERROR: Invalid function argument
}

pool "web" {
  backend "web-1" {
    address = "198.51.100.1/32" # ERROR: Invalid address
    weight  = -1                # ERROR: Unsuitable value type
  }
  backend "web-2" {
    address = "198.51.100.2"
    drain   = "maybe" # ERROR: Unsuitable value type
  }
  backend "web-3" {
    address = "198.51.100.3"
    weight  = 1.5 # ERROR: Unsuitable value type
  }
}

pool "checked" {
  backend "c-1" {
    address = "198.51.100.9"
  }
  health_check "http" {
    interval = "often" # ERROR: Invalid duration
    timeout  = "5s"
    path     = null # ERROR: Invalid plugin parameter
  }
  health_check "http" { # ERROR: Duplicate health check
    port = 0            # ERROR: Invalid port
  }
}

plugin "redis" {
  path   = "plugins/redis-check"
  sha256 = "abc" # ERROR: Invalid checksum
}

plugin "redis" { # ERROR: Duplicate plugin
  path = "other"
}

plugin "dns" {
  sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" # ERROR: Checksum without path
}
