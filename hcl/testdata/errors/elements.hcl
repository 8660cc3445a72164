# Problems inside element blocks, all reported in one load.
hash_seed = 1

pipeline {
  element "TestSource" "rx" {
    count = "many" # ERROR: Unsuitable value type
  }
  element "TestParse" "parse" {
    mdoe = "strict" # ERROR: Unsupported argument
  }
  element "TestTabel" "ct" {} # ERROR: Unknown element type
  element "TestSelect" "sel" {
    small = 300 # ERROR: Unsuitable value type
  }
  element "TestSink" "tx" {} # ERROR: Missing required argument
  element "TestDrop" "drop" {}
  element "TestDrop" "drop" {} # ERROR: Duplicate element name
  element "TestTable" "ct2" {
    capacity = 0 # ERROR: Invalid element configuration
  }
  element "TestSource" "rx2" {
    count = upper(1, 2) # ERROR: Too many function arguments
  }
  element "TestParse" "lonely" {}  # ERROR: Unconnected output
  element "TestDrop" "Bad.Name" {} # ERROR: Invalid element name

  connect = [
    "rx -> parse -> ct",
    "ct.hit -> tx",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend -> drop",
    "rx2 -> lonely",
    "lonely.bad -> ct2 -> drop",
    "ct2.miss -> ct2.learn",
  ]
}
