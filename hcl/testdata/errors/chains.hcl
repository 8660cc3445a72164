# Connection chain problems, each at its endpoint inside the string.
hash_seed = 1

pipeline {
  element "TestSource" "rx" {}
  element "TestParse" "parse" {}
  element "TestTable" "ct" {}
  element "TestSelect" "sel" {}
  element "TestSink" "tx" { file = "out.pcap" }
  element "TestDrop" "drop" {}
  element "TestSource" "rx2" {}
  element "TestSource" "rx3" {}
  element "TestSource" "rx4" {}

  connect = [
    "rx -> -> parse", # ERROR: Invalid connection chain
    "parse -> ct",
    "ct.hit -> tx",
    "ct.miss -> sel.out -> ct.learn", # ERROR: Invalid connection chain
    "parse.bda -> drop",              # ERROR: Unknown output port
    "sel.nobackend -> drop",
    "rx2 -> nowhere",           # ERROR: Unknown element
    "rx3 -> ct.lookup -> drop", # ERROR: Invalid connection chain
    "rx4 -> ct.leran",          # ERROR: Unknown input port
    "rx4 ->",                   # ERROR: Invalid connection chain
    "drop",                     # ERROR: Invalid connection chain
    "",                         # ERROR: Invalid connection chain
    "rx4 -> tx!",               # ERROR: Invalid connection chain
    "rx4 tx",                   # ERROR: Invalid connection chain
    ["rx"],                     # ERROR: Unsuitable value type
  ]
}
