// Package control is xlb's control plane core: the service model (VIPs,
// pools, backends), building Maglev tables and immutable snapshots from it,
// and publishing them to the data plane.
package control

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlbproject/xlb/pipeline"
)

// DefaultTableSize is the Maglev table size M used when a VIP sets none: the
// prime the Maglev paper uses for its measurements (section 5.3).
const DefaultTableSize = 65537

// Config is the service configuration, whatever its source (the HCL file, a
// config-source plugin). Ranges point at the source for diagnostics.
type Config struct {
	// HashSeed seeds the flow hash; every node of a fleet must use the same.
	HashSeed uint64
	VIPs     []VIP
	Pools    []Pool

	// ShardNames are the fleet's shards (Maglev's VIP sharding): every
	// shard the node or a VIP names must be one of them, so that a
	// misspelt shard is an error rather than a VIP no node serves.
	ShardNames []string
	// Shards are this node's shards: it serves (builds tables for,
	// announces, forwards) only the VIPs of one of them and the VIPs that
	// name none. Empty: every VIP. They are the node's own, not the
	// fleet's, so the config digest leaves them out (see Digest).
	Shards []string
	// ShardNamesRange is where ShardNames is set, and ShardRanges the
	// ranges of Shards' items, when the source records them.
	ShardNamesRange pipeline.Range
	ShardRanges     []pipeline.Range
}

// ServedPools returns the pools the VIPs this node serves use, and those
// they include, by name. Validate should have passed.
func (c *Config) ServedPools() map[string]*Pool {
	pools := make(map[string]*Pool, len(c.Pools))
	for i := range c.Pools {
		if _, dup := pools[c.Pools[i].Name]; !dup {
			pools[c.Pools[i].Name] = &c.Pools[i]
		}
	}
	served := map[string]*Pool{}
	var walk func(name string)
	walk = func(name string) {
		p := pools[name]
		if p == nil || served[name] != nil {
			return
		}
		served[name] = p
		for _, q := range p.Pools {
			walk(q)
		}
	}
	for i := range c.VIPs {
		if c.Serves(&c.VIPs[i]) {
			walk(c.VIPs[i].Pool)
		}
	}
	return served
}

// ServedBackends returns the backends this node sends to, those of
// ServedPools, sorted by name.
func (c *Config) ServedBackends() []*Backend {
	var out []*Backend
	for _, p := range c.ServedPools() {
		for i := range p.Backends {
			out = append(out, &p.Backends[i])
		}
	}
	slices.SortFunc(out, func(a, b *Backend) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Serves reports whether this node serves v: v names no shard, the node
// carries none, or they share one.
func (c *Config) Serves(v *VIP) bool {
	if len(c.Shards) == 0 || len(v.Shards) == 0 {
		return true
	}
	for _, s := range v.Shards {
		if slices.Contains(c.Shards, s) {
			return true
		}
	}
	return false
}

// VIP is one virtual service.
type VIP struct {
	Name     string
	Address  netip.Addr
	Protocol string   // "tcp", "udp" or "any"
	Ports    []uint16 // empty: every port
	Pool     string
	// TableSize is the Maglev table size M, a prime; 0 means
	// DefaultTableSize.
	TableSize uint32
	// Shards are the shards whose nodes serve the VIP; empty: every node.
	Shards []string
	// SNATPorts, when not 0, gives each backend the VIP reaches a range of
	// that many source ports on the VIP's address, for connections the
	// backend opens itself (SNAT, as Ananta does): see snat.go.
	SNATPorts uint32

	Range     pipeline.Range // the block header
	AttrRange pipeline.AttrRanges
	// PortRanges are the ranges of the items of Ports, index for index,
	// when the source records them (the HCL file, for a list written
	// out); otherwise diagnostics about a port point at AttrRange's
	// "ports".
	PortRanges []pipeline.Range
	// ShardRanges are the ranges of the items of Shards, as PortRanges.
	ShardRanges []pipeline.Range
	// Announce holds the VIP's parameters for route announcers, at most
	// one block per announcer. Every announcer announces every VIP that
	// should be announced (DesiredRoutes); a block only adds parameters.
	Announce []Announce
}

// Announce is a VIP's parameters for one route announcer (communities,
// MED, ...).
type Announce struct {
	// Announcer names the route announcer.
	Announcer string
	// Params are the announcer's own per-VIP parameters, each a JSON
	// value, as HealthCheck.Params: the announcer checks and reads them.
	Params map[string]json.RawMessage

	Range     pipeline.Range
	AttrRange pipeline.AttrRanges
}

// ParamsJSON is Params as one JSON object, as HealthCheck.ParamsJSON.
func (a *Announce) ParamsJSON() []byte { return ParamsJSON(a.Params) }

// Pool is a named set of backends, which may include other pools (as in the
// Maglev paper, where a service's backend pools can nest).
type Pool struct {
	Name     string
	Backends []Backend
	Pools    []string
	// HealthChecks are the methods that check this pool's own backends
	// (not those of included pools, which their own pool checks); a
	// backend is healthy only when all of them pass. None: always healthy.
	HealthChecks []HealthCheck

	Range     pipeline.Range
	AttrRange pipeline.AttrRanges
}

// Backend is one server. Its name identifies it in the Maglev table, so it
// must be unique across all pools and the same on every node.
type Backend struct {
	Name    string
	Address netip.Addr
	// Weight is relative share of new flows; 0 drains the backend (it keeps
	// its flows and takes no new ones).
	Weight uint32
	// Drain takes the backend out of new-flow selection whatever its
	// weight.
	Drain bool

	Range     pipeline.Range
	AttrRange pipeline.AttrRanges
}

// HealthCheck is one health-check method of a pool. Zero values take the
// defaults of control/health (HAProxy's: 2 s, rise 2, fall 3).
type HealthCheck struct {
	// Method names the prober (a built-in or a health-check plugin).
	Method   string
	Interval time.Duration
	// Timeout bounds one probe; it is at most Interval.
	Timeout time.Duration
	// Rise consecutive passes bring a down backend up; Fall consecutive
	// failures take an up one down.
	Rise, Fall int
	// Port is the port probed; 0 leaves it to the method (its default or a
	// parameter of its own).
	Port uint16
	// Params are the method's own settings (path, expected status, ...),
	// each a JSON value: the config loader has evaluated them to
	// constants, and the method's prober (a plugin) checks and reads them.
	Params map[string]json.RawMessage

	Range     pipeline.Range
	AttrRange pipeline.AttrRanges
}

// ParamsJSON is Params as the one JSON object a prober receives, keys
// sorted so that equal parameters are equal bytes; "{}" when there are
// none. Validate has checked that every value is JSON.
func (hc *HealthCheck) ParamsJSON() []byte { return ParamsJSON(hc.Params) }

// ParamsJSON is params (a block's plugin parameters) as one JSON object,
// keys sorted; "{}" for none.
func ParamsJSON(params map[string]json.RawMessage) []byte {
	if len(params) == 0 {
		return []byte("{}")
	}
	js, err := json.Marshal(params)
	if err != nil {
		return []byte("{}")
	}
	return js
}
