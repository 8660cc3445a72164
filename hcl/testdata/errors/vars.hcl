# Variables and locals: each problem once, and nothing that only echoes it.
variable "seed" {
  default = 1
}
variable "seed" { # ERROR: Duplicate variable
  default = 2
}
variable "needed" {} # ERROR: Missing variable value
variable "port" {
  type    = number
  default = "eighty" # ERROR: Invalid default value
}

locals {
  a  = local.b # ERROR: Cycle in local values
  b  = local.a
  c  = local.a + 1
  d  = upper(1, 2) # ERROR: Too many function arguments
  e  = local.nope  # ERROR: Unknown local value
  ok = var.seed
}
locals {
  ok = 2 # ERROR: Duplicate local value
}

hash_seed = var.sed # ERROR: Unknown variable

pipeline {
  workers = local.c
  element "TestSource" "rx" {
    count = var.needed
  }
  element "TestTable" "ct" {
    capacity = local.d
    timeout  = var.port
  }
  element "TestDrop" "drop" {}
  connect = ["rx -> ct", "ct.hit -> drop", "ct.miss -> ct.learn"]
}
