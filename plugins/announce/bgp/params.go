package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/xlbproject/xlb/plugins/builtin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// attrs are the path attributes xlb sets on a route beyond its prefix and
// next hop: from the settings (every route), a VIP's announce block and
// the route itself, merged.
type attrs struct {
	Communities []uint32
	Large       []bgp.LargeCommunity
	MED         uint32
	HasMED      bool
}

// paramsSchema is a VIP's announce block, as Info.Params.
var paramsSchema = builtin.BGPParams

// parseParams validates a VIP's announce block.
func parseParams(js []byte) (*attrs, error) {
	var m map[string]json.RawMessage
	if len(js) > 0 {
		var err error
		if m, err = object(js); err != nil {
			return nil, &sdk.ConfigError{Message: "the parameters are not a JSON object: " + err.Error()}
		}
	}
	var e errs
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.ContainsFunc(paramsSchema, func(a sdk.Attribute) bool { return a.Name == k }) {
			e.Add(k, "not expected here; a VIP's announce block takes communities, large_communities, med")
		}
	}
	a := e.communities(m, "")
	if raw, ok := m["med"]; ok {
		if v, ok := e.num(raw, "med", 0, 1<<32-1); ok {
			a.MED, a.HasMED = uint32(v), true
		}
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	return &a, nil
}

// communities reads the communities and large_communities attributes of
// m, reporting at prefix+name[i].
func (e *errs) communities(m map[string]json.RawMessage, prefix string) attrs {
	var a attrs
	for _, name := range []string{"communities", "large_communities"} {
		raw, ok := m[name]
		if !ok {
			continue
		}
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			e.Add(prefix+name, "must be a list of strings")
			continue
		}
		if len(list) > maxCommunities {
			e.Add(prefix+name, "%d values, at most %d", len(list), maxCommunities)
			continue
		}
		for i, item := range list {
			at := fmt.Sprintf("%s%s[%d]", prefix, name, i)
			s, ok := e.str(item, at)
			if !ok {
				continue
			}
			if name == "communities" {
				c, err := parseCommunity(s)
				if err != nil {
					e.Add(at, "%v", err)
					continue
				}
				a.Communities = append(a.Communities, c)
			} else {
				l, err := parseLargeCommunity(s)
				if err != nil {
					e.Add(at, "%v", err)
					continue
				}
				a.Large = append(a.Large, l)
			}
		}
	}
	return a
}

// parseCommunity reads "asn:value", each 0 to 65535.
func parseCommunity(s string) (uint32, error) {
	hi, lo, ok := strings.Cut(s, ":")
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not a community \"asn:value\" (each 0 to 65535; a 32-bit AS needs a large community \"a:b:c\")", s)
	}
	return uint32(h)<<16 | uint32(l), nil
}

// parseLargeCommunity reads "a:b:c", each 0 to 4294967295 (RFC 8092).
func parseLargeCommunity(s string) (bgp.LargeCommunity, error) {
	parts := strings.Split(s, ":")
	var v [3]uint32
	ok := len(parts) == 3
	for i := 0; ok && i < 3; i++ {
		n, err := strconv.ParseUint(parts[i], 10, 32)
		ok = err == nil
		v[i] = uint32(n)
	}
	if !ok {
		return bgp.LargeCommunity{}, fmt.Errorf("%q is not a large community \"a:b:c\" (each 0 to 4294967295)", s)
	}
	return bgp.LargeCommunity{ASN: v[0], LocalData1: v[1], LocalData2: v[2]}, nil
}

// parseRouteCommunities reads the communities the host puts on a route
// itself ("asn:value" or large "a:b:c").
func parseRouteCommunities(list []string) (attrs, error) {
	var a attrs
	for _, s := range list {
		if strings.Count(s, ":") == 2 {
			l, err := parseLargeCommunity(s)
			if err != nil {
				return a, err
			}
			a.Large = append(a.Large, l)
			continue
		}
		c, err := parseCommunity(s)
		if err != nil {
			return a, err
		}
		a.Communities = append(a.Communities, c)
	}
	return a, nil
}

// merge adds b's communities to a's (each value once, in order) and takes
// b's MED when it has one.
func (a attrs) merge(b attrs) attrs {
	out := attrs{Communities: slices.Clone(a.Communities), Large: slices.Clone(a.Large), MED: a.MED, HasMED: a.HasMED}
	for _, c := range b.Communities {
		if !slices.Contains(out.Communities, c) {
			out.Communities = append(out.Communities, c)
		}
	}
	for _, l := range b.Large {
		if !slices.Contains(out.Large, l) {
			out.Large = append(out.Large, l)
		}
	}
	if b.HasMED {
		out.MED, out.HasMED = b.MED, true
	}
	return out
}
