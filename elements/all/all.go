// Package all links every built-in element type into a program: import it
// for its side effect of registering them.
package all

import (
	_ "github.com/xlbproject/xlb/elements/basic"
	_ "github.com/xlbproject/xlb/elements/conntrack"
	_ "github.com/xlbproject/xlb/elements/dr"
	_ "github.com/xlbproject/xlb/elements/encap"
	_ "github.com/xlbproject/xlb/elements/maglev"
	_ "github.com/xlbproject/xlb/elements/parse"
	_ "github.com/xlbproject/xlb/elements/pcap"
	_ "github.com/xlbproject/xlb/elements/snat"
	_ "github.com/xlbproject/xlb/elements/xdp"
)
