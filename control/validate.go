package control

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/control/maglev"
	"github.com/xlbproject/xlb/pipeline"
)

// Attribute names used to look up AttrRange, as written in HCL.
const (
	attrAddress   = "address"
	attrProtocol  = "protocol"
	attrPorts     = "ports"
	attrPool      = "pool"
	attrTableSize = "table_size"
	attrPools     = "pools"
	attrShards    = "shards"
)

// Validate checks the configuration as a whole and returns every problem,
// each tied to its source range, in source order. The ranges it uses are the
// block's Range (for its labels and for problems that involve several
// attributes) and AttrRange entries keyed by HCL attribute name: address,
// protocol, ports, pool and table_size on a vip; pools on a pool; address
// and weight on a backend. A missing AttrRange entry falls back to the
// block's Range. A VIP's PortRanges, when set, place each port's problems.
// It takes time linear in the size of the configuration.
func (c *Config) Validate() pipeline.Errors {
	return c.validate().errs
}

// validate runs every check of Validate and returns the validator, whose
// backends index the checker keeps when there is no error.
func (c *Config) validate() *validator {
	v := newValidator(c)
	v.pools_()
	v.cycles()
	v.vips()
	v.shards()
	v.snat()
	v.healthChecks()
	slices.SortStableFunc(v.errs, func(a, b *pipeline.Error) int {
		if c := strings.Compare(a.Range.Filename, b.Range.Filename); c != 0 {
			return c
		}
		return cmp.Compare(a.Range.Start.Byte, b.Range.Start.Byte)
	})
	return v
}

func newValidator(c *Config) *validator {
	return &validator{c: c, pools: map[string]*Pool{}, reach: map[*Pool]int{}, suggested: map[string]string{}}
}

type validator struct {
	c     *Config
	pools map[string]*Pool // first declaration of each name
	reach map[*Pool]int    // how many backends a pool reaches
	// backends holds where each backend name is first declared.
	backends map[string]backendDecl
	// unique is set when every backend name is known to be declared
	// once: a pool then reaches the sum of its reachable pools' backends,
	// counted without listing them.
	unique bool
	// suggested holds what an unknown pool name could mean.
	suggested map[string]string
	primes    map[uint32]bool
	errs      pipeline.Errors
}

// backendDecl is where a backend name is declared: its pool and its range.
type backendDecl struct {
	pool string
	r    *pipeline.Range
}

func (v *validator) add(r pipeline.Range, summary, format string, args ...any) {
	v.errs = append(v.errs, &pipeline.Error{Range: r, Summary: summary, Detail: fmt.Sprintf(format, args...)})
}

func (v *validator) pools_() {
	n := 0
	for i := range v.c.Pools {
		n += len(v.c.Pools[i].Backends)
	}
	// Sized up front: growing a map of 100,000 names cost more than
	// everything else Validate does with them.
	backends := make(map[string]backendDecl, n)
	v.backends = backends
	v.pools = make(map[string]*Pool, len(v.c.Pools))
	for i := range v.c.Pools {
		p := &v.c.Pools[i]
		if prev, dup := v.pools[p.Name]; dup {
			v.add(p.Range, "Duplicate pool name",
				"A pool named %q was already declared at %s; give this one another name or merge the two.", p.Name, prev.Range)
		} else {
			v.pools[p.Name] = p
		}
		for j := range p.Backends {
			b := &p.Backends[j]
			if prev, dup := backends[b.Name]; dup {
				v.add(b.Range, "Duplicate backend name",
					"A backend named %q was already declared at %s (pool %q); a backend's name is its identity in the Maglev table, so give each backend a unique name, and include a pool in another with `pools` rather than repeating its backends.",
					b.Name, *prev.r, prev.pool)
			} else {
				backends[b.Name] = backendDecl{p.Name, &b.Range}
			}
			v.unicast(b.AttrRange, b.Range, "Backend", b.Name, b.Address, "the address the backend receives encapsulated packets on")
		}
	}
	v.inclusions()
}

// includes reports whether any pool includes another.
func (v *validator) includes() bool {
	for i := range v.c.Pools {
		if len(v.c.Pools[i].Pools) > 0 {
			return true
		}
	}
	return false
}

// inclusions reports each pool a pool includes that is not declared.
func (v *validator) inclusions() {
	for i := range v.c.Pools {
		p := &v.c.Pools[i]
		for _, name := range p.Pools {
			if _, ok := v.pools[name]; !ok {
				v.add(p.AttrRange.Or(attrPools, p.Range), "Unknown pool",
					"Pool %q includes pool %q, which is not declared%s; declare it or fix the name.", p.Name, name, v.suggestPool(name))
			}
		}
	}
}

// unicast checks that a is a usable unicast address.
func (v *validator) unicast(ranges pipeline.AttrRanges, block pipeline.Range, kind, name string, a netip.Addr, what string) {
	if a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() {
		return // without looking up the range: most addresses are fine
	}
	r := ranges.Or(attrAddress, block)
	switch {
	case !a.IsValid():
		v.add(r, "Missing address", "%s %q has no address; set address to %s.", kind, name, what)
	case a.IsUnspecified():
		v.add(r, "Invalid address", "%s %q has the unspecified address %s; set address to %s.", kind, name, a, what)
	case a.IsMulticast():
		v.add(r, "Invalid address", "%s %q has the multicast address %s; set address to a unicast address, %s.", kind, name, a, what)
	}
}

// cycles reports each back edge of a depth-first search over pool
// inclusions (in declaration order) as a cycle, at the `pools` attribute of
// the pool where the search entered the cycle, which starts the path.
func (v *validator) cycles() {
	if !v.includes() {
		return
	}
	const (
		unvisited = iota
		onStack
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(p *Pool)
	visit = func(p *Pool) {
		state[p.Name] = onStack
		stack = append(stack, p.Name)
		for _, name := range p.Pools {
			q, ok := v.pools[name]
			if !ok {
				continue
			}
			switch state[name] {
			case unvisited:
				visit(q)
			case onStack:
				i := slices.Index(stack, name)
				path := append(append([]string(nil), stack[i:]...), name)
				v.add(q.AttrRange.Or(attrPools, q.Range), "Pool inclusion cycle",
					"Pools include each other in a cycle (%s), so their backends cannot be listed; remove one of these inclusions.",
					strings.Join(path, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		state[p.Name] = done
	}
	for i := range v.c.Pools {
		if p := &v.c.Pools[i]; v.pools[p.Name] == p && state[p.Name] == unvisited {
			visit(p)
		}
	}
}

var validProtocols = []string{"tcp", "udp", "any"}

func (v *validator) vips() {
	names := make(map[string]*VIP, len(v.c.VIPs))
	claimed := claims{size: 2 * len(v.c.VIPs)} // by the VIPs whose address, protocol and ports are valid
	for i := range v.c.VIPs {
		x := &v.c.VIPs[i]
		if prev, dup := names[x.Name]; dup {
			v.add(x.Range, "Duplicate VIP name",
				"A VIP named %q was already declared at %s; give this one another name.", x.Name, prev.Range)
		} else {
			names[x.Name] = x
		}
		before := len(v.errs)
		v.unicast(x.AttrRange, x.Range, "VIP", x.Name, x.Address, "the service address clients connect to")
		if !slices.Contains(validProtocols, x.Protocol) {
			v.add(x.AttrRange.Or(attrProtocol, x.Range), "Invalid protocol",
				"VIP %q has protocol %q; set protocol to \"tcp\", \"udp\" or \"any\".", x.Name, x.Protocol)
		}
		v.ports(x)
		if len(v.errs) == before {
			if y, claim := claimed.overlap(x); y != nil {
				v.add(x.Range, "Overlapping VIPs",
					"VIP %q claims %s, which VIP %q declared at %s already claims; give the two VIPs distinct addresses, protocols or ports so that every packet belongs to one VIP.",
					x.Name, claim, y.Name, y.Range)
			}
			claimed.add(x)
		}
		v.vipPool(x)
		v.announce(x)
	}
}

// snat checks the VIPs with SNAT: a range size that fits the port space,
// service ports listed (a VIP of every port leaves none to the ranges), one
// VIP with SNAT per address, no VIP of every port on its address, and a
// range for every backend the VIP reaches beside the service ports.
func (v *validator) snat() {
	excluded := snatExcluded(v.c.VIPs)
	if excluded == nil {
		return
	}
	holder := map[netip.Addr]*VIP{}
	every := map[netip.Addr]*VIP{} // the first VIP of every port on an address with SNAT
	for i := range v.c.VIPs {
		x := &v.c.VIPs[i]
		a := x.Address.Unmap()
		if _, ok := excluded[a]; ok && len(x.Ports) == 0 && every[a] == nil {
			every[a] = x
		}
	}
	for i := range v.c.VIPs {
		x := &v.c.VIPs[i]
		if x.SNATPorts == 0 {
			continue
		}
		r := x.AttrRange.Or(attrSNATPorts, x.Range)
		a := x.Address.Unmap()
		if x.SNATPorts > SNATSpace {
			v.add(r, "SNAT range too large",
				"VIP %q has snat_ports %d, but SNAT ranges share the %d ports from %d to 65535; set snat_ports to at most %d, and low enough that every backend gets a range.",
				x.Name, x.SNATPorts, SNATSpace, SNATFirstPort, SNATSpace)
			continue
		}
		if prev := holder[a]; prev != nil {
			v.add(r, "Duplicate SNAT address",
				"VIP %q and VIP %q (at %s) both give SNAT ranges on %s, where one port would belong to two backends; set snat_ports on one VIP of an address only.",
				x.Name, prev.Name, prev.Range, a)
			continue
		}
		holder[a] = x
		if y := every[a]; y != nil {
			who := fmt.Sprintf("VIP %q (at %s) matches", y.Name, y.Range)
			if y == x {
				who = "it matches"
			}
			v.add(r, "SNAT without free ports",
				"VIP %q has snat_ports, but %s every port of %s, so no port is left for its backends' outbound connections; list the service ports with ports.",
				x.Name, who, a)
			continue
		}
		p, ok := v.pools[x.Pool]
		if !ok {
			continue // vipPool reported it
		}
		n := v.reachCount(p)
		if free := snatFree(snatUsable(x.SNATPorts, excluded[a])); n > free {
			v.add(r, "SNAT ports exhausted",
				"VIP %q reaches %d backends, but only %d ranges of %d ports fit in ports %d to 65535 beside the service ports on %s; set snat_ports to at most %d, or serve fewer backends.",
				x.Name, n, free, x.SNATPorts, SNATFirstPort, a, maxSNATPorts(n, excluded[a]))
		}
	}
}

// maxSNATPorts is the largest range size that gives n backends a range
// each beside the excluded ports, 0 when none does.
func maxSNATPorts(n int, excluded []uint16) uint32 {
	size := uint32(SNATSpace / max(n, 1))
	for ; size > 0; size-- {
		if snatFree(snatUsable(size, excluded)) >= n {
			return size
		}
	}
	return 0
}

// shards reports a shard that the node or a VIP names and shard_names does
// not declare, and VIPs of one address with different shards: a node
// announces an address, not a VIP, so the nodes that announce it must
// serve every VIP at it.
func (v *validator) shards() {
	c := v.c
	for i, name := range c.Shards {
		r := c.ShardNamesRange
		if len(c.ShardRanges) == len(c.Shards) {
			r = c.ShardRanges[i]
		}
		v.shardKnown(r, "This node", name)
	}
	var first map[netip.Addr]*VIP // the first sharded VIP at each address
	for i := range c.VIPs {
		x := &c.VIPs[i]
		for j, name := range x.Shards {
			r := x.AttrRange.Or(attrShards, x.Range)
			if len(x.ShardRanges) == len(x.Shards) {
				r = x.ShardRanges[j]
			}
			v.shardKnown(r, fmt.Sprintf("VIP %q", x.Name), name)
		}
		if len(x.Shards) > 0 && first == nil {
			first = make(map[netip.Addr]*VIP)
			for j := range c.VIPs[:i] {
				if _, ok := first[c.VIPs[j].Address]; !ok {
					first[c.VIPs[j].Address] = &c.VIPs[j]
				}
			}
		}
		if first == nil || !x.Address.IsValid() {
			continue
		}
		y, ok := first[x.Address]
		if !ok {
			first[x.Address] = x
			continue
		}
		if !sameShards(x.Shards, y.Shards) {
			v.add(x.AttrRange.Or(attrShards, x.Range), "Shards differ at one address",
				"VIP %q has the address %s of VIP %q (declared at %s) with other shards (%s, against %s); nodes announce an address for all of its VIPs, so give the VIPs that share an address the same shards.",
				x.Name, x.Address, y.Name, y.Range, shardList(x.Shards), shardList(y.Shards))
		}
	}
}

// shardKnown reports name, a shard that who names at r, unless
// shard_names declares it.
func (v *validator) shardKnown(r pipeline.Range, who, name string) {
	names := v.c.ShardNames
	switch {
	case slices.Contains(names, name):
	case len(names) == 0:
		v.add(r, "Unknown shard",
			"%s names the shard %q, and no shard is declared; list the fleet's shards in the top-level shard_names (such as shard_names = [%q]), the same on every node.", who, name, name)
	default:
		v.add(r, "Unknown shard",
			"%s names the shard %q, which shard_names (at %s) does not declare%s; the fleet's shards are %s.",
			who, name, v.c.ShardNamesRange, pipeline.Suggest(name, names), strings.Join(names, ", "))
	}
}

// sameShards reports whether a and b name the same shards, in any order.
func sameShards(a, b []string) bool {
	return slices.Equal(slices.Compact(slices.Sorted(slices.Values(a))), slices.Compact(slices.Sorted(slices.Values(b))))
}

// shardList writes a VIP's shards for a diagnostic.
func shardList(s []string) string {
	if len(s) == 0 {
		return "every node"
	}
	return strings.Join(s, ", ")
}

// announce reports a VIP's second block for one announcer and parameters
// that are not JSON. Which announcers exist is the loader's to say: the
// model does not declare them.
func (v *validator) announce(x *VIP) {
	if len(x.Announce) == 0 {
		return
	}
	seen := map[string]pipeline.Range{}
	for _, a := range x.Announce {
		if prev, dup := seen[a.Announcer]; dup {
			v.add(a.Range, "Duplicate announce block",
				"VIP %q already has an announce %q block at %s; merge the two blocks.", x.Name, a.Announcer, prev)
			continue
		}
		seen[a.Announcer] = a.Range
		for _, name := range slices.Sorted(maps.Keys(a.Params)) {
			if !json.Valid(a.Params[name]) {
				v.add(a.AttrRange.Or(name, a.Range), "Invalid announce parameter",
					"VIP %q announce %q: parameter %s is not a JSON value (%q).", x.Name, a.Announcer, name, a.Params[name])
			}
		}
	}
}

// ports reports each port 0 and, once per port listed more than once, its
// second listing.
func (v *validator) ports(x *VIP) {
	first := make(map[uint16]int, len(x.Ports)) // index of the first listing
	for i, port := range x.Ports {
		j, seen := first[port]
		switch {
		case port == 0:
			v.add(portRange(x, i), "Invalid port",
				"VIP %q lists port 0; ports go from 1 to 65535 (leave ports out to match every port).", x.Name)
		case !seen:
			first[port] = i
		case j >= 0:
			v.add(portRange(x, i), "Duplicate port",
				"VIP %q lists port %d more than once (first at %s); list each port once.", x.Name, port, portRange(x, j))
			first[port] = -1 // reported
		}
	}
}

// portRange returns the range of x's i-th port.
func portRange(x *VIP, i int) pipeline.Range {
	if len(x.PortRanges) == len(x.Ports) {
		return x.PortRanges[i]
	}
	return x.AttrRange.Or(attrPorts, x.Range)
}

// claims indexes what VIPs claim, so that a VIP is compared only with the
// claims it could share rather than with every VIP before it. Each claim is
// held by the first VIP to make it.
type claims struct {
	// port holds claims on one port of an address and protocol ("tcp",
	// "udp" or "any"), and on every port as port 0.
	port map[claim]*claimant
	// some holds, as port 0, the first VIP that lists ports on an address
	// and protocol.
	some map[claim]*claimant
	n    int // VIPs added, which orders them
	size int // how many claims to make room for
}

type claim struct {
	addr  [16]byte
	proto uint8 // protoNumber: a string would be hashed at every look-up
	port  uint16
}

// claimant is a VIP and its place in declaration order.
type claimant struct {
	vip   *VIP
	order int
}

// sharing lists the protocols whose VIPs can match a packet that a VIP of
// protocol p matches.
var sharing = map[string][]uint8{"tcp": {6, 0}, "udp": {17, 0}, "any": {6, 17, 0}}

// add records x's claims; x has a valid protocol and no port 0 or
// duplicate port.
func (c *claims) add(x *VIP) {
	if c.port == nil {
		c.port, c.some = make(map[claim]*claimant, c.size), make(map[claim]*claimant, c.size)
	}
	cl := &claimant{x, c.n}
	c.n++
	hold := func(m map[claim]*claimant, port uint16) {
		if k := (claim{x.Address.As16(), protoNumber(x.Protocol), port}); m[k] == nil {
			m[k] = cl
		}
	}
	if len(x.Ports) == 0 {
		hold(c.port, 0)
		return
	}
	hold(c.some, 0)
	for _, p := range x.Ports {
		hold(c.port, p)
	}
}

// overlap returns the first VIP added that could match a packet x
// matches, and describes one such packet's (protocol, port, address); nil
// when there is none.
func (c *claims) overlap(x *VIP) (*VIP, string) {
	var best *claimant
	var port uint16 // the port of the claim; 0 for every port
	consider := func(cl *claimant, p uint16) {
		if cl != nil && (best == nil || cl.order < best.order) {
			best, port = cl, p
		}
	}
	a := x.Address.As16()
	for _, q := range sharing[x.Protocol] {
		if len(x.Ports) == 0 {
			consider(c.port[claim{a, q, 0}], 0)
			if cl := c.some[claim{a, q, 0}]; cl != nil {
				consider(cl, cl.vip.Ports[0])
			}
			continue
		}
		consider(c.port[claim{a, q, 0}], x.Ports[0])
		for _, p := range x.Ports {
			consider(c.port[claim{a, q, p}], p)
		}
	}
	if best == nil {
		return nil, ""
	}
	y := best.vip
	proto := x.Protocol
	if proto == "any" {
		proto = y.Protocol
	}
	if proto == "any" {
		proto = "every protocol"
	}
	if port == 0 {
		return y, fmt.Sprintf("%s, every port, on %s", proto, x.Address)
	}
	return y, fmt.Sprintf("%s port %d on %s", proto, port, x.Address)
}

// vipPool checks the VIP's pool reference and its table size against the
// number of backends the pool reaches.
func (v *validator) vipPool(x *VIP) {
	if x.Pool == "" {
		v.add(x.Range, "Missing pool", "VIP %q has no pool; set pool to the name of the pool that serves it.", x.Name)
		return
	}
	p, ok := v.pools[x.Pool]
	if !ok {
		v.add(x.AttrRange.Or(attrPool, x.Range), "Unknown pool",
			"VIP %q uses pool %q, which is not declared%s; declare it or fix the name.", x.Name, x.Pool, v.suggestPool(x.Pool))
		return
	}
	m := x.TableSize
	r := func() pipeline.Range { return x.AttrRange.Or(attrTableSize, x.Range) }
	if m == 0 {
		m = DefaultTableSize
		r = func() pipeline.Range { return x.Range }
	}
	n, ok := v.reach[p]
	if v.unique && len(p.Pools) == 0 {
		n, ok = len(p.Backends), true
	}
	if !ok {
		// VIPs often share a pool: count its backends once.
		n = v.reachCount(p)
		v.reach[p] = n
	}
	switch {
	case m > maglev.MaxTableSize:
		v.add(r(), "Table size too large",
			"VIP %q has table_size %d, above the maximum %d; set a smaller prime such as %d.", x.Name, m, maglev.MaxTableSize, prevPrime(maglev.MaxTableSize))
	case !v.isPrime(m):
		v.add(r(), "Table size not prime",
			"VIP %q has table_size %d, which is not a prime; Maglev needs a prime size so that every backend's preference list visits every slot. Use %d or %d.",
			x.Name, m, prevPrime(m), nextPrime(m))
	case uint64(m) <= uint64(n):
		v.add(r(), "Table size too small",
			"VIP %q reaches %d backends but its table has only %d slots; set table_size to a prime greater than %d, ideally above 100 times the number of backends (such as %d) to keep their shares within about 1%% of each other.",
			x.Name, n, m, n, nextPrime(uint32(min(100*n, maglev.MaxTableSize-1))))
	}
}

// isPrime is maglev.IsPrime, once per size: thousands of VIPs have the
// same.
func (v *validator) isPrime(m uint32) bool {
	if v.primes == nil {
		v.primes = map[uint32]bool{}
	}
	p, ok := v.primes[m]
	if !ok {
		p = maglev.IsPrime(m)
		v.primes[m] = p
	}
	return p
}

// reachCount returns how many backends p reaches, directly or through
// nested pools.
func (v *validator) reachCount(p *Pool) int {
	switch {
	case !v.unique:
		return len(flatten(v.pools, p))
	case len(p.Pools) == 0:
		return len(p.Backends)
	}
	n := 0
	seen := map[*Pool]bool{}
	var walk func(p *Pool)
	walk = func(p *Pool) {
		if seen[p] {
			return
		}
		seen[p] = true
		n += len(p.Backends)
		for _, name := range p.Pools {
			if q, ok := v.pools[name]; ok {
				walk(q)
			}
		}
	}
	walk(p)
	return n
}

func (v *validator) suggestPool(name string) string {
	// A misspelt pool may be named by thousands of VIPs: look for what it
	// could mean once.
	if s, ok := v.suggested[name]; ok {
		return s
	}
	names := make([]string, len(v.c.Pools))
	for i := range v.c.Pools {
		names[i] = v.c.Pools[i].Name
	}
	s := pipeline.Suggest(name, names)
	v.suggested[name] = s
	return s
}

// flatten returns the backends p reaches directly or through nested pools,
// each once, sorted by name. It tolerates unknown pools and cycles (which
// Validate reports).
func flatten(pools map[string]*Pool, p *Pool) []*Backend {
	if len(p.Pools) == 0 {
		// Most pools include none: sorting their backends finds the
		// names repeated in them, without a set.
		out := make([]*Backend, len(p.Backends))
		for i := range p.Backends {
			out[i] = &p.Backends[i]
		}
		slices.SortFunc(out, func(a, b *Backend) int { return strings.Compare(a.Name, b.Name) })
		return slices.CompactFunc(out, func(a, b *Backend) bool { return a.Name == b.Name })
	}
	seenPool := map[string]bool{}
	seen := make(map[string]bool, len(p.Backends))
	out := make([]*Backend, 0, len(p.Backends))
	var walk func(p *Pool)
	walk = func(p *Pool) {
		if seenPool[p.Name] {
			return
		}
		seenPool[p.Name] = true
		for i := range p.Backends {
			b := &p.Backends[i]
			if !seen[b.Name] {
				seen[b.Name] = true
				out = append(out, b)
			}
		}
		for _, name := range p.Pools {
			if q, ok := pools[name]; ok {
				walk(q)
			}
		}
	}
	walk(p)
	slices.SortFunc(out, func(a, b *Backend) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// nextPrime returns the smallest prime ≥ n (n well below 2^32).
func nextPrime(n uint32) uint32 {
	for !maglev.IsPrime(n) {
		n++
	}
	return n
}

// prevPrime returns the largest prime ≤ n, or 2.
func prevPrime(n uint32) uint32 {
	for n > 2 && !maglev.IsPrime(n) {
		n--
	}
	return max(n, 2)
}

// healthChecks checks each pool's health-check methods: one block per
// method, no negative settings, a timeout within the interval. Whether a prober exists for the method is the scheduler's to
// say (control/health), since plugins bring methods of their own.
func (v *validator) healthChecks() {
	for i := range v.c.Pools {
		p := &v.c.Pools[i]
		if len(p.HealthChecks) == 0 {
			continue
		}
		seen := map[string]pipeline.Range{}
		for _, hc := range p.HealthChecks {
			if prev, dup := seen[hc.Method]; dup {
				v.add(hc.Range, "Duplicate health check",
					"Pool %q already has a %q health check at %s; merge the two blocks.", p.Name, hc.Method, prev)
			} else {
				seen[hc.Method] = hc.Range
			}
			switch {
			case hc.Method == "":
				v.add(hc.Range, "Missing health-check method", "Name the method in the block label, for example health_check \"tcp\" {}.")
			case hc.Rise < 0 || hc.Fall < 0:
				v.add(hc.Range, "Invalid rise or fall",
					"Pool %q health check %q has rise %d and fall %d; use positive counts, or leave them out for the defaults.", p.Name, hc.Method, hc.Rise, hc.Fall)
			case hc.Interval < 0 || hc.Timeout < 0:
				v.add(hc.Range, "Invalid interval or timeout",
					"Pool %q health check %q has a negative interval or timeout; use durations such as \"2s\".", p.Name, hc.Method)
			case hc.Interval > 0 && hc.Timeout > hc.Interval:
				v.add(hc.AttrRange.Or("timeout", hc.Range), "Timeout longer than interval",
					"Pool %q health check %q times out after %v but runs every %v; a probe must end before the next one starts, so make the timeout at most the interval.", p.Name, hc.Method, hc.Timeout, hc.Interval)
			}
			for _, name := range slices.Sorted(maps.Keys(hc.Params)) {
				if !json.Valid(hc.Params[name]) {
					v.add(hc.AttrRange.Or(name, hc.Range), "Invalid health-check parameter",
						"Pool %q health check %q: parameter %s is not a JSON value (%q).", p.Name, hc.Method, name, hc.Params[name])
				}
			}
		}
	}
}
