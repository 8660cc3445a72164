# The key /xlb/services/web: the web VIPs and their pool.

vip "web4" {
  address  = "10.90.100.10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
  announce "bgp" {
    communities = ["65000:80"]
  }
}

vip "web6" {
  address  = "fd00:90:100::10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}

pool "web" {
  health_check "http" {
    interval = "500ms"
    timeout  = "300ms"
    fall     = 2
    rise     = 2
    port     = 80
  }
  backend "be1" { address = "10.90.2.21" }
  backend "be2" { address = "10.90.2.22" }
  backend "be3" { address = "10.90.2.23" }
}
