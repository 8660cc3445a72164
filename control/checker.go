package control

import (
	"slices"

	"github.com/xlbproject/xlb/pipeline"
)

// A Checker validates configurations one after another, as Validate does,
// each against the last one that passed: a configuration that keeps most
// pools of that one (the same backend names and addresses, in the same
// order) costs the checks of the pools that changed, of its VIPs and of
// pool inclusions, not of every backend. A configuration with any error
// is checked again by Validate, so that the errors are exactly Validate's.
//
// The configurations that pass are the checker's until the next one
// passes: they must not be modified. A config source's cache hands over
// the pools of unchanged fragments as the very same slices, which are
// compared by address. The zero Checker is ready; it is not safe for
// concurrent use.
type Checker struct {
	// pools are the last valid configuration's pools by name.
	pools map[string]*Pool
	// backends is where that configuration declares each backend name.
	backends map[string]backendDecl
	// vips are its VIPs, and shardNames and shards its shards.
	vips               []VIP
	shardNames, shards []string
}

// Validate returns cfg's errors, as cfg.Validate does.
func (k *Checker) Validate(cfg *Config) pipeline.Errors {
	if k.backends != nil && k.quick(cfg) {
		return nil
	}
	v := cfg.validate()
	if len(v.errs) == 0 {
		k.pools, k.backends, k.vips = v.pools, v.backends, cfg.VIPs
		k.shardNames, k.shards = cfg.ShardNames, cfg.Shards
	}
	return v.errs
}

// Has reports whether the last valid configuration declares the backend.
func (k *Checker) Has(backend string) bool {
	_, ok := k.backends[backend]
	return ok
}

// reset forgets the last valid configuration: the next one is checked
// whole.
func (k *Checker) reset() { *k = Checker{} }

// quick reports whether cfg passes every check of Validate, checking the
// backends of the pools that changed since the last valid configuration
// only, and when it does makes cfg the last valid one. A false result
// says nothing of cfg: Validate tells.
func (k *Checker) quick(cfg *Config) bool {
	v := newValidator(cfg)
	v.unique = true
	v.pools = make(map[string]*Pool, len(cfg.Pools))
	// gone are the last configuration's pools whose backends leave the
	// index: those removed, and those that changed.
	gone := map[string]bool{}
	var changed []*Pool
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		if _, dup := v.pools[p.Name]; dup {
			return false
		}
		v.pools[p.Name] = p
		if q, ok := k.pools[p.Name]; !ok || !sameBackends(p.Backends, q.Backends) {
			changed = append(changed, p)
			gone[p.Name] = ok
		}
	}
	for name := range k.pools {
		if _, ok := v.pools[name]; !ok {
			gone[name] = true
		}
	}
	added := map[string]backendDecl{}
	for _, p := range changed {
		for j := range p.Backends {
			b := &p.Backends[j]
			if _, dup := added[b.Name]; dup {
				return false
			}
			if prev, ok := k.backends[b.Name]; ok && !gone[prev.pool] {
				return false
			}
			added[b.Name] = backendDecl{p.Name, &b.Range}
			v.unicast(b.AttrRange, b.Range, "Backend", b.Name, b.Address, "")
		}
	}
	v.inclusions()
	v.cycles()
	if k.sameVIPs(cfg.VIPs) && !v.includes() && slices.Equal(k.shardNames, cfg.ShardNames) && slices.Equal(k.shards, cfg.Shards) {
		// The VIPs passed as they are: only a pool they use that
		// changed (its size) or left can fail them now.
		for i := range cfg.VIPs {
			if x := &cfg.VIPs[i]; gone[x.Pool] || v.pools[x.Pool] == nil {
				v.vipPool(x)
			}
		}
	} else {
		v.vips()
		v.shards()
	}
	// A pool that grew may leave a VIP with SNAT without a range for
	// every backend.
	v.snat()
	v.healthChecks()
	if len(v.errs) > 0 {
		return false
	}
	for name, ok := range gone {
		if q := k.pools[name]; ok && q != nil {
			for j := range q.Backends {
				if k.backends[q.Backends[j].Name].pool == name {
					delete(k.backends, q.Backends[j].Name)
				}
			}
		}
	}
	for name, d := range added {
		k.backends[name] = d
	}
	k.pools, k.vips = v.pools, cfg.VIPs
	k.shardNames, k.shards = cfg.ShardNames, cfg.Shards
	return true
}

// sameVIPs reports whether vips are the last valid configuration's, in
// the same order, in all that Validate checks of them.
func (k *Checker) sameVIPs(vips []VIP) bool {
	if len(vips) != len(k.vips) {
		return false
	}
	for i := range vips {
		a, b := &vips[i], &k.vips[i]
		if a.Name != b.Name || a.Address != b.Address || a.Protocol != b.Protocol || a.Pool != b.Pool ||
			a.TableSize != b.TableSize || a.SNATPorts != b.SNATPorts || !slices.Equal(a.Ports, b.Ports) || !same(a.Announce, b.Announce) || !slices.Equal(a.Shards, b.Shards) {
			return false
		}
	}
	return true
}

// sameBackends reports whether a and b list the same backend names and
// addresses in the same order: what Validate checks of a pool's backends.
// Slices that share their array are the same without a look.
func sameBackends(a, b []Backend) bool {
	if len(a) != len(b) {
		return false
	}
	if same(a, b) {
		return true
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Address != b[i].Address {
			return false
		}
	}
	return true
}
