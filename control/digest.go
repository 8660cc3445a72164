package control

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/control/snapshot"
)

// Digests let the nodes of a fleet prove that they agree: every node that
// applies the same configuration computes the same digests, whatever the
// order it was written in and whatever the history of the node (real IDs,
// map order and pointers never enter them). Each is the hex SHA-256 of a
// canonical encoding whose first field names its version, so that a change
// of encoding is a change of digest and not a silent collision.

// encoder writes a canonical, self-delimiting encoding into a hash:
// strings and lists carry their length, so no two different inputs encode
// alike.
type encoder struct {
	h   hash.Hash
	buf []byte
}

func newEncoder(version string) *encoder {
	e := &encoder{h: sha256.New(), buf: make([]byte, 0, 4096)}
	e.str(version)
	return e
}

func (e *encoder) flush() {
	e.h.Write(e.buf)
	e.buf = e.buf[:0]
}

func (e *encoder) uint(n uint64) {
	e.buf = binary.AppendUvarint(e.buf, n)
	if len(e.buf) >= 4096 {
		e.flush()
	}
}

func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.buf = append(e.buf, s...)
	if len(e.buf) >= 4096 {
		e.flush()
	}
}

// addr writes a in its text form, without allocating.
func (e *encoder) addr(a netip.Addr) {
	var b [64]byte
	e.str(string(a.AppendTo(b[:0])))
}

func (e *encoder) bool(b bool) {
	if b {
		e.uint(1)
	} else {
		e.uint(0)
	}
}

func (e *encoder) sum() string {
	e.flush()
	return hex.EncodeToString(e.h.Sum(nil))
}

// tableDigest is the digest of a VIP's Maglev table: what the table means
// for flows, that is the hash seed, the table size and the backend name at
// every slot. idx[s] indexes up, which is sorted by name, so the index is
// the name's rank among the table's backends (listed first): the same on
// every node, where real IDs are not.
func tableDigest(seed uint64, m uint32, up []tableInput, idx []uint32) string {
	e := newEncoder("xlb-table-v1")
	e.uint(seed)
	e.uint(uint64(m))
	e.uint(uint64(len(up)))
	for _, in := range up {
		e.str(in.backend)
	}
	e.flush()
	// Fixed-width ranks, two bytes when they fit: the slots are most of
	// the bytes hashed, and the width follows from the count above. They
	// are encoded a bufferful at a time, by a loop for each width: a full
	// load encodes 65 million.
	var buf [1 << 13]byte
	for len(idx) > 0 {
		var b []byte
		if len(up) > 1<<16 {
			k := min(len(idx), len(buf)/4)
			b = buf[:4*k]
			for j, i := range idx[:k] {
				binary.LittleEndian.PutUint32(b[4*j:], i)
			}
			idx = idx[k:]
		} else {
			k := min(len(idx), len(buf)/2)
			b = buf[:2*k]
			for j, i := range idx[:k] {
				binary.LittleEndian.PutUint16(b[2*j:], uint16(i))
			}
			idx = idx[k:]
		}
		e.h.Write(b)
	}
	return e.sum()
}

// byName returns pointers to s's elements, sorted by name.
func byName[T any](s []T, name func(*T) string) []*T {
	out := make([]*T, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	slices.SortFunc(out, func(a, b *T) int { return strings.Compare(name(a), name(b)) })
	return out
}

// Digest returns the digest of the service configuration: what it means,
// not how it is written. Blocks, backends, ports, included pools, health
// checks and announce blocks are taken in a canonical order, plugin
// parameters as compact JSON with sorted keys, a VIP's unset table size as
// the default; source ranges are left out. Each pool is hashed alone and
// its digest enters the configuration's, so that a reload that changes
// one pool of thousands hashes that pool again only (see poolDigests).
// Validate should have passed.
func (c *Config) Digest() string { return c.digest(nil) }

// digest is Digest, taking the digests of pools whose backends, included
// pools and health checks are the very same slices as last time from
// cache, and leaving there those of c's pools; nil: no cache.
func (c *Config) digest(cache *poolDigests) string {
	e := newEncoder("xlb-config-v2")
	e.uint(c.HashSeed)
	vips := byName(c.VIPs, func(v *VIP) string { return v.Name })
	e.uint(uint64(len(vips)))
	for _, v := range vips {
		e.str(v.Name)
		e.addr(v.Address)
		if v.SNATPorts == 0 {
			e.str(v.Protocol)
		} else {
			// Validate allows no NUL in a protocol, so this cannot
			// collide, and a configuration without SNAT keeps the digest
			// it had before SNAT existed: nodes of a rolling upgrade
			// still agree.
			e.str(v.Protocol + "\x00snat_ports=" + strconv.FormatUint(uint64(v.SNATPorts), 10))
		}
		ports := v.Ports
		if !slices.IsSorted(ports) {
			ports = slices.Sorted(slices.Values(ports))
		}
		e.uint(uint64(len(ports)))
		for _, p := range ports {
			e.uint(uint64(p))
		}
		e.str(v.Pool)
		e.uint(uint64(cmp.Or(v.TableSize, DefaultTableSize)))
		as := v.Announce
		if len(as) > 1 {
			as = slices.Clone(as)
			slices.SortFunc(as, func(a, b Announce) int { return strings.Compare(a.Announcer, b.Announcer) })
		}
		e.uint(uint64(len(as)))
		for i := range as {
			e.str(as[i].Announcer)
			e.str(string(as[i].ParamsJSON()))
		}
	}
	pools := byName(c.Pools, func(p *Pool) string { return p.Name })
	e.uint(uint64(len(pools)))
	next := make(poolDigests, len(pools))
	for _, p := range pools {
		d, ok := cache.get(p)
		if !ok {
			d = poolDigest(p)
		}
		next.put(p, d)
		e.str(d)
	}
	if cache != nil {
		*cache = next
	}
	c.digestShards(e, vips)
	return e.sum()
}

// digestShards adds the fleet's shards and each VIP's to a config digest,
// after everything else and only when there are any, so that a
// configuration without shards keeps the digest it had before shards
// existed (nodes of two versions agree during an upgrade). The node's own
// shards are left out: nodes of different shards run one configuration.
func (c *Config) digestShards(e *encoder, vips []*VIP) {
	sharded := len(c.ShardNames) > 0
	for _, v := range vips {
		sharded = sharded || len(v.Shards) > 0
	}
	if !sharded {
		return
	}
	e.str("shards")
	names := slices.Sorted(slices.Values(c.ShardNames))
	e.uint(uint64(len(names)))
	for _, s := range names {
		e.str(s)
	}
	for _, v := range vips {
		shards := slices.Compact(slices.Sorted(slices.Values(v.Shards)))
		e.uint(uint64(len(shards)))
		for _, s := range shards {
			e.str(s)
		}
	}
}

// poolDigests are the digests of a configuration's pools by name, with
// the slices each was computed from: a pool is the same while they are
// (a configuration is not modified once applied).
type poolDigests map[string]pooled

type pooled struct {
	backends     []Backend
	pools        []string
	healthChecks []HealthCheck
	digest       string
}

func (m *poolDigests) get(p *Pool) (string, bool) {
	if m == nil {
		return "", false
	}
	d, ok := (*m)[p.Name]
	return d.digest, ok && same(d.backends, p.Backends) && same(d.pools, p.Pools) && same(d.healthChecks, p.HealthChecks)
}

func (m *poolDigests) put(p *Pool, digest string) {
	if *m == nil {
		*m = poolDigests{}
	}
	(*m)[p.Name] = pooled{p.Backends, p.Pools, p.HealthChecks, digest}
}

// same reports whether a and b are the same slice: the same array and
// length. Empty slices are the same.
func same[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// poolDigest is the digest of one pool, its name included.
func poolDigest(p *Pool) string {
	e := newEncoder("xlb-pool-v1")
	e.str(p.Name)
	bs := byName(p.Backends, func(b *Backend) string { return b.Name })
	e.uint(uint64(len(bs)))
	for _, b := range bs {
		e.str(b.Name)
		e.addr(b.Address)
		e.uint(uint64(b.Weight))
		e.bool(b.Drain)
	}
	included := slices.Sorted(slices.Values(p.Pools))
	e.uint(uint64(len(included)))
	for _, name := range included {
		e.str(name)
	}
	// A backend must pass every check of its pool, so their order
	// means nothing: each is encoded alone, and the encodings sorted.
	checks := make([][]byte, len(p.HealthChecks))
	for i := range p.HealthChecks {
		checks[i] = healthCheckKey(&p.HealthChecks[i])
	}
	slices.SortFunc(checks, bytes.Compare)
	e.uint(uint64(len(checks)))
	for _, k := range checks {
		e.str(string(k))
	}
	return e.sum()
}

// healthCheckKey is the canonical encoding of one health check.
func healthCheckKey(hc *HealthCheck) []byte {
	var b []byte
	appendStr := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	appendStr(hc.Method)
	b = binary.AppendVarint(b, int64(hc.Interval))
	b = binary.AppendVarint(b, int64(hc.Timeout))
	b = binary.AppendVarint(b, int64(hc.Rise))
	b = binary.AppendVarint(b, int64(hc.Fall))
	b = binary.AppendUvarint(b, uint64(hc.Port))
	appendStr(string(hc.ParamsJSON()))
	return b
}

// SourceDocument is one document a config source supplied, as the sources
// digest takes it.
type SourceDocument struct {
	Source, Name, Format string
	Content              []byte
}

// SourcesDigest is the digest of the documents a configuration was built
// from: nodes with equal sources digests had the same inputs, so their
// configuration and tables must agree, whatever revision each read them
// at. Documents are taken by source name, then document name.
func SourcesDigest(docs []SourceDocument) string {
	sorted := byName(docs, func(d *SourceDocument) string { return d.Source + "\x00" + d.Name })
	e := newEncoder("xlb-sources-v1")
	e.uint(uint64(len(sorted)))
	for _, d := range sorted {
		e.str(d.Source)
		e.str(d.Name)
		e.str(d.Format)
		e.str(string(d.Content))
	}
	return e.sum()
}

// VIPDigests returns, for each VIP of s in name order, its table digest
// and the digest of the backends its table was built from (the names and
// weights of its Up reals): two nodes that see the same backends in
// service must have the same table. It runs where nodes publish their
// state, off the hot path.
func VIPDigests(s *snapshot.Snapshot) []VIPDigest {
	out := make([]VIPDigest, len(s.VIPs))
	for i := range s.VIPs {
		v := &s.VIPs[i]
		e := newEncoder("xlb-backends-v1")
		for _, id := range v.Reals {
			// Reals are sorted by backend name, as a table's inputs are.
			if r := s.Reals.At(id); r.Epoch != 0 && r.State == snapshot.Up {
				e.str(r.Backend)
				e.uint(uint64(r.Weight))
			}
		}
		out[i] = VIPDigest{Name: v.Name, Table: v.TableDigest, Backends: e.sum()}
	}
	return out
}
