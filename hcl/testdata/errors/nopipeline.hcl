# ERROR: Missing pipeline block # WARNING: hash_seed not set
vip "web" {
  address = "192.0.2.10"
  pool    = "web"
}
pool "web" {
  backend "web-1" { address = "198.51.100.1" }
}
