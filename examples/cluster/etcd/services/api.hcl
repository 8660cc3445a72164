# The key /xlb/services/api.

# A VIP with a single backend: when be4 fails its health check, no node
# can serve api4, and every node withdraws it.
vip "api4" {
  address  = "10.90.100.11"
  protocol = "tcp"
  ports    = [80]
  pool     = "api"
}

pool "api" {
  health_check "http" {
    interval = "500ms"
    timeout  = "300ms"
    fall     = 2
    rise     = 2
    port     = 80
  }
  backend "be4" { address = "10.90.2.24" }
}
