package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/plugins/builtin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Limits on what a settings block may ask for. maxNeighbors is far above
// any real deployment (a node peers with its top-of-rack routers) and
// keeps a hostile block from making the plugin open thousands of sockets.
const (
	maxNeighbors   = 64
	maxPasswordLen = 80 // TCP_MD5SIG_MAXKEYLEN
	maxHoldTime    = 65535 * time.Second
	maxRestartTime = 4095 // seconds: the 12-bit field of the GR capability
	maxCommunities = 64
)

// Defaults, documented in README.md.
const (
	defaultHoldTime     = 90 * time.Second // RFC 4271's suggestion
	defaultConnectRetry = 5 * time.Second
	// defaultConnectRetryMax caps the backoff of a failing neighbor: a
	// router fixed without a reload of xlb is back within about a minute,
	// and a dozen broken neighbors cost a connection attempt a minute each.
	defaultConnectRetryMax = 60 * time.Second
	defaultRestartTime     = 15 // seconds
)

// settings is the plugin's validated HCL block.
type settings struct {
	LocalAS     uint32
	RouterID    netip.Addr
	ListenPort  int32 // -1: never listen (gobgp's spelling)
	RestartTime uint32
	NextHop4    netip.Addr // zero: the session's local address
	NextHop6    netip.Addr
	Communities attrs // added to every route
	Neighbors   []neighbor
}

// neighbor is one BGP peer. Its address family decides what it carries:
// IPv4 prefixes to an IPv4 neighbor, IPv6 prefixes to an IPv6 one (the
// next hop of a route must be of its own family).
type neighbor struct {
	Address      netip.Addr
	PeerAS       uint32
	Password     string
	HoldTime     time.Duration
	Keepalive    time.Duration
	ConnectRetry time.Duration
	// ConnectRetryMax caps the backoff: a failing session's retries wait
	// ConnectRetry, then twice as long each time, up to it.
	ConnectRetryMax time.Duration
	MultihopTTL     uint8 // 0: directly connected
	Port            uint16
	BFD             bfdSettings
}

// bfdSettings are a neighbor's BFD session (RFC 5880/5881, single hop),
// off unless Enabled.
type bfdSettings struct {
	Enabled      bool
	MinRx, MinTx time.Duration
	Multiplier   uint8
}

// schema is the settings block, as Info.Schema.
var schema = builtin.BGPSettings

// errs collects the refusals, each at its path ("neighbors[1].peer_as").
type errs struct{ sdk.ConfigErrors }

// parseSettings validates a settings block. Every problem is reported at
// its path ("neighbors[1].peer_as"), all of them at once.
func parseSettings(js []byte) (*settings, error) {
	m, err := object(js)
	if err != nil {
		return nil, &sdk.ConfigError{Message: "the settings are not a JSON object: " + err.Error()}
	}
	var e errs
	s := &settings{ListenPort: -1, RestartTime: defaultRestartTime}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.ContainsFunc(schema, func(a sdk.Attribute) bool { return a.Name == k }) {
			e.Add(k, "not expected here")
		}
	}
	if raw, ok := m["local_as"]; !ok {
		e.Add("", `the attribute "local_as" is required`)
	} else if as, ok := e.asn(raw, "local_as"); ok {
		s.LocalAS = as
	}
	if raw, ok := m["router_id"]; !ok {
		e.Add("", `the attribute "router_id" is required`)
	} else if str, ok := e.str(raw, "router_id"); ok {
		a, err := netip.ParseAddr(str)
		switch {
		case err != nil || !a.Is4():
			e.Add("router_id", "%q is not an IPv4 address (a BGP identifier is 4 bytes, written as one even for IPv6-only nodes)", str)
		case a.IsUnspecified() || a.IsMulticast():
			e.Add("router_id", "%s cannot be a BGP identifier", a)
		default:
			s.RouterID = a
		}
	}
	if raw, ok := m["listen_port"]; ok {
		if p, ok := e.num(raw, "listen_port", 0, 65535); ok && p != 0 {
			s.ListenPort = int32(p)
		}
	}
	if raw, ok := m["graceful_restart_time"]; ok {
		if d, ok := e.duration(raw, "graceful_restart_time"); ok {
			if d > maxRestartTime*time.Second {
				e.Add("graceful_restart_time", "%v is more than BGP can say (%ds)", d, maxRestartTime)
			} else {
				s.RestartTime = uint32(d / time.Second)
			}
		}
	}
	s.NextHop4 = e.nextHop(m, "next_hop_ipv4", true)
	s.NextHop6 = e.nextHop(m, "next_hop_ipv6", false)
	s.Communities = e.communities(m, "")
	if raw, ok := m["neighbors"]; !ok {
		e.Add("", `the attribute "neighbors" is required`)
	} else {
		s.Neighbors = e.neighbors(raw)
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// object decodes a JSON object without its null members: in HCL an
// attribute set to null is one left out, so that a setting can be chosen by
// a condition (`bfd = var.fast ? { ... } : null`).
func object(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null")
	}
	maps.DeleteFunc(m, func(_ string, v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" })
	return m, nil
}

func (e *errs) neighbors(raw json.RawMessage) []neighbor {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		e.Add("neighbors", "must be a list of objects")
		return nil
	}
	if len(list) == 0 {
		e.Add("neighbors", "lists no neighbor: a route announcer with no peer announces nothing")
		return nil
	}
	if len(list) > maxNeighbors {
		e.Add("neighbors", "%d neighbors, at most %d", len(list), maxNeighbors)
		return nil
	}
	out := make([]neighbor, 0, len(list))
	seen := map[netip.Addr]int{}
	for i, item := range list {
		at := fmt.Sprintf("neighbors[%d]", i)
		n, ok := e.neighbor(item, at)
		if !ok {
			continue
		}
		if j, dup := seen[n.Address]; dup {
			e.Add(at+".address", "%s is already neighbors[%d]", n.Address, j)
			continue
		}
		seen[n.Address] = i
		out = append(out, n)
	}
	return out
}

func (e *errs) neighbor(raw json.RawMessage, at string) (neighbor, bool) {
	m, err := object(raw)
	if err != nil {
		e.Add(at, "must be an object { address = ..., peer_as = ... }")
		return neighbor{}, false
	}
	before := len(e.ConfigErrors)
	n := neighbor{HoldTime: defaultHoldTime, ConnectRetry: defaultConnectRetry, Port: 179}
	known := []string{"address", "peer_as", "password", "hold_time", "keepalive", "connect_retry", "connect_retry_max", "multihop_ttl", "port", "bfd"}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			e.Add(at+"."+k, "not expected here; a neighbor takes %s", strings.Join(known, ", "))
		}
	}
	if raw, ok := m["address"]; !ok {
		e.Add(at, `the attribute "address" is required`)
	} else if str, ok := e.str(raw, at+".address"); ok {
		a, err := netip.ParseAddr(str)
		switch {
		case err != nil || a.Zone() != "":
			e.Add(at+".address", "%q is not an IP address", str)
		case a.IsUnspecified() || a.IsMulticast():
			e.Add(at+".address", "%s cannot be a neighbor", a)
		default:
			n.Address = a.Unmap()
		}
	}
	if raw, ok := m["peer_as"]; !ok {
		e.Add(at, `the attribute "peer_as" is required`)
	} else if as, ok := e.asn(raw, at+".peer_as"); ok {
		n.PeerAS = as
	}
	if raw, ok := m["password"]; ok {
		if str, ok := e.str(raw, at+".password"); ok {
			if len(str) > maxPasswordLen {
				e.Add(at+".password", "%d bytes, TCP MD5 keys are at most %d", len(str), maxPasswordLen)
			}
			n.Password = str
		}
	}
	if raw, ok := m["hold_time"]; ok {
		if d, ok := e.duration(raw, at+".hold_time"); ok {
			switch {
			case d < 3*time.Second:
				e.Add(at+".hold_time", "%v: BGP forbids a hold time of 1 or 2 seconds, and 0 (no keepalives) would keep a dead node's routes forever: at least 3s", d)
			case d > maxHoldTime:
				e.Add(at+".hold_time", "%v is more than BGP can say (%v)", d, maxHoldTime)
			default:
				n.HoldTime = d
			}
		}
	}
	n.Keepalive = n.HoldTime / 3
	if raw, ok := m["keepalive"]; ok {
		if d, ok := e.duration(raw, at+".keepalive"); ok {
			switch {
			case d == 0 || d >= n.HoldTime:
				e.Add(at+".keepalive", "%v: must be at least 1s and less than the hold time (%v)", d, n.HoldTime)
			default:
				n.Keepalive = d
			}
		}
	}
	if raw, ok := m["connect_retry"]; ok {
		if d, ok := e.duration(raw, at+".connect_retry"); ok {
			if d < time.Second || d > time.Hour {
				e.Add(at+".connect_retry", "%v: must be between 1s and 1h", d)
			} else {
				n.ConnectRetry = d
			}
		}
	}
	n.ConnectRetryMax = max(defaultConnectRetryMax, n.ConnectRetry)
	if raw, ok := m["connect_retry_max"]; ok {
		if d, ok := e.duration(raw, at+".connect_retry_max"); ok {
			if d < n.ConnectRetry || d > time.Hour {
				e.Add(at+".connect_retry_max", "%v: must be between connect_retry (%v) and 1h", d, n.ConnectRetry)
			} else {
				n.ConnectRetryMax = d
			}
		}
	}
	if raw, ok := m["multihop_ttl"]; ok {
		if ttl, ok := e.num(raw, at+".multihop_ttl", 0, 255); ok {
			n.MultihopTTL = uint8(ttl)
		}
	}
	if raw, ok := m["port"]; ok {
		if p, ok := e.num(raw, at+".port", 1, 65535); ok {
			n.Port = uint16(p)
		}
	}
	if raw, ok := m["bfd"]; ok {
		n.BFD = e.bfd(raw, at+".bfd")
		if n.BFD.Enabled && n.MultihopTTL > 0 {
			e.Add(at+".bfd", "BFD here is single hop (RFC 5881): not with multihop_ttl")
		}
	}
	return n, len(e.ConfigErrors) == before
}

// bfd reads a neighbor's bfd object: min_rx, min_tx (default 300ms each)
// and multiplier (default 3).
func (e *errs) bfd(raw json.RawMessage, at string) bfdSettings {
	m, err := object(raw)
	if err != nil {
		e.Add(at, "must be an object { min_rx = \"100ms\", min_tx = \"100ms\", multiplier = 3 }")
		return bfdSettings{}
	}
	b := bfdSettings{Enabled: true, MinRx: 300 * time.Millisecond, MinTx: 300 * time.Millisecond, Multiplier: 3}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "min_rx", "min_tx":
			s, ok := e.str(m[k], at+"."+k)
			if !ok {
				continue
			}
			d, err := time.ParseDuration(s)
			if err != nil || d < 10*time.Millisecond || d > 10*time.Second || d%time.Millisecond != 0 {
				e.Add(at+"."+k, "%q: must be a duration of whole milliseconds from 10ms to 10s", s)
				continue
			}
			if k == "min_rx" {
				b.MinRx = d
			} else {
				b.MinTx = d
			}
		case "multiplier":
			if v, ok := e.num(m[k], at+".multiplier", 1, 255); ok {
				b.Multiplier = uint8(v)
			}
		default:
			e.Add(at+"."+k, "not expected here; bfd takes min_rx, min_tx, multiplier")
		}
	}
	return b
}

func (e *errs) nextHop(m map[string]json.RawMessage, name string, v4 bool) netip.Addr {
	raw, ok := m[name]
	if !ok {
		return netip.Addr{}
	}
	str, ok := e.str(raw, name)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(str)
	if err != nil || a.Is4() != v4 || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		e.Add(name, "%q is not a unicast IPv%s address", str, map[bool]string{true: "4", false: "6"}[v4])
		return netip.Addr{}
	}
	return a
}

func (e *errs) str(raw json.RawMessage, path string) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		e.Add(path, "must be a string")
		return "", false
	}
	return s, true
}

// num reads a whole number in [lo, hi]; a numeric string is accepted, as
// HCL converts one.
func (e *errs) num(raw json.RawMessage, path string, lo, hi uint64) (uint64, bool) {
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			e.Add(path, "must be a number")
			return 0, false
		}
		var err error
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			e.Add(path, "%q is not a number", s)
			return 0, false
		}
	}
	if f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		e.Add(path, "%v: must be a whole number from %d to %d", f, lo, hi)
		return 0, false
	}
	return uint64(f), true
}

// asn reads an AS number: 1 to 4294967295, not AS_TRANS (23456, which
// only stands in for a 4-byte AS on old sessions).
func (e *errs) asn(raw json.RawMessage, path string) (uint32, bool) {
	v, ok := e.num(raw, path, 0, math.MaxUint32)
	switch {
	case !ok:
		return 0, false
	case v == 0:
		e.Add(path, "AS 0 is reserved (RFC 7607)")
		return 0, false
	case v == 23456:
		e.Add(path, "AS 23456 is AS_TRANS, not an AS of its own (RFC 6793)")
		return 0, false
	}
	return uint32(v), true
}

// duration reads a Go duration string ("3s") or a number of seconds, in
// whole seconds (what BGP carries).
func (e *errs) duration(raw json.RawMessage, path string) (time.Duration, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		secs, ok := e.num(raw, path, 0, math.MaxUint32)
		return time.Duration(secs) * time.Second, ok
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		e.Add(path, "%q is not a duration (\"3s\", \"1m30s\")", s)
		return 0, false
	case d < 0 || d%time.Second != 0:
		e.Add(path, "%v: must be whole seconds, not negative", d)
		return 0, false
	}
	return d, true
}
