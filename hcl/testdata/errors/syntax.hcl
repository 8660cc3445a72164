# An HCL syntax error stops the load: nothing else can be trusted.
hash_seed = 1

pipeline {
  workers = = 2 # ERROR: Invalid expression
}
