// Package admin is xlbd's admin API: HTTP/JSON on a unix socket (and
// optionally TCP), so that curl works as well as xlbctl, and so that the
// same listener serves the read-only status page. The daemon implements
// Source; this package holds the wire types, the handlers, the page, the
// listeners and the client.
package admin

import (
	"encoding/json"
	"time"

	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// DaemonStatus is what xlbd run reports about its configuration: written
// as JSON to the -status file on every change, printed at exit, and served
// as part of /v1/status. docs/sources.md describes each field.
type DaemonStatus struct {
	Node         string `json:"node"`
	Generation   uint64 `json:"generation"`
	Config       string `json:"config"`
	ConfigDigest string `json:"config_digest"`
	// Shards are the node's shards (VIP sharding), as applied; empty: it
	// serves every VIP.
	Shards    []string       `json:"shards,omitempty"`
	AppliedAt time.Time      `json:"applied_at"`
	Sources   []SourceStatus `json:"sources"`
	// Rejected is the latest change when it was rejected; nil when the
	// latest change was applied.
	Rejected *Rejection    `json:"rejected"`
	Cluster  ClusterStatus `json:"cluster"`
}

// SourceStatus is one config source.
type SourceStatus struct {
	Name        string    `json:"name"`
	State       string    `json:"state"` // waiting, ok or unavailable
	Revision    string    `json:"revision"`
	Documents   int       `json:"documents"`
	Unavailable string    `json:"unavailable,omitempty"` // why, while unavailable
	Since       time.Time `json:"since"`
}

// Rejection is a change that was rejected: what triggered it (a source, or
// the config file on SIGHUP), at which revision, and its diagnostics as
// printed.
type Rejection struct {
	Source      string    `json:"source"`
	Revision    string    `json:"revision,omitempty"`
	At          time.Time `json:"at"`
	Diagnostics string    `json:"diagnostics"`
}

// ClusterStatus is the agreement of the nodes sharing a publishing source.
type ClusterStatus struct {
	// Checked is false while no publishing source sent the peers' states.
	Checked bool `json:"checked"`
	Agree   bool `json:"agree"`
	// Withdrawn says this node withdrew its routes until it agrees.
	Withdrawn bool          `json:"withdrawn"`
	Nodes     []ClusterNode `json:"nodes"`
	Problems  []string      `json:"problems"`
}

// ClusterNode is one node as this one sees it.
type ClusterNode struct {
	Node         string `json:"node"`
	Revision     string `json:"revision"`
	ConfigDigest string `json:"config_digest"`
	// State is "self", "agrees", "disagrees", "other revision" or
	// "rejected".
	State string `json:"state"`
	// Shards are the node's shards as it published them; none: it serves
	// every VIP.
	Shards []string `json:"shards,omitempty"`
}

// Status is /v1/status: the process, then the configuration's status.
type Status struct {
	// Version is what xlbd version prints, one line each.
	Version       []string  `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Workers       int       `json:"workers"`
	DaemonStatus
}

// VIP is one VIP of /v1/vips, as the running snapshot has it.
type VIP struct {
	Name      string   `json:"name"`
	Address   string   `json:"address"`
	Protocol  string   `json:"protocol"`
	Ports     []uint16 `json:"ports"` // empty: every port
	Pool      string   `json:"pool"`
	TableSize int      `json:"table_size"`
	// TableDigest is equal on every node with the same table.
	TableDigest string `json:"table_digest"`
	// Backends is how many backends the table holds (those Up).
	Backends int `json:"backends"`
}

// Backend is one backend of one VIP in /v1/backends.
type Backend struct {
	VIP     string `json:"vip"`
	Backend string `json:"backend"`
	Address string `json:"address"`
	// Weight is the weight the snapshot uses (an override's, if any).
	Weight uint32 `json:"weight"`
	// State is up, draining or down, as the data plane treats it.
	State string `json:"state"`
	// Health is "up", "down" or "unchecked" (no health check).
	Health  string `json:"health"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// SNAT is the backend's range of source ports on the VIP's address
	// for its own outbound connections, "first-last"; empty when the VIP
	// has no SNAT (snat_ports).
	SNAT string `json:"snat,omitempty"`
	// Override is the operator's runtime override, nil without one.
	Override *Override `json:"override,omitempty"`
}

// Override is a runtime change to a backend that the daemon applies on
// top of every configuration it loads, until it exits.
type Override struct {
	Drain  *bool   `json:"drain,omitempty"`
	Weight *uint32 `json:"weight,omitempty"`
}

// Counters is /v1/counters: every element's counters and the drops.
type Counters struct {
	Elements []pipeline.ElementStats `json:"elements"`
	Drops    []Drop                  `json:"drops"`
}

// Drop is the packets an element dropped for one reason.
type Drop struct {
	Element string `json:"element"`
	Reason  string `json:"reason"`
	Packets uint64 `json:"packets"`
}

// Plugin is one plugin of /v1/plugins.
type Plugin struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	Restarts  uint64    `json:"restarts"`
	LastError string    `json:"last_error"`
	Since     time.Time `json:"since"`
}

// Route is one route announcer of /v1/routes.
type Route struct {
	Announcer string `json:"announcer"`
	Routes    int    `json:"routes"`
	InSync    bool   `json:"in_sync"`
	Sends     uint64 `json:"sends"`
	LastError string `json:"last_error"`
	// Sessions are the announcer's sessions with its peers (BGP
	// neighbors), by peer.
	Sessions []Session `json:"sessions"`
}

// Session is one session of a route announcer with a peer.
type Session struct {
	Peer     string `json:"peer"`
	State    string `json:"state"` // the protocol's own: established, active, ...
	Up       bool   `json:"up"`
	Prefixes int    `json:"prefixes"` // announced to the peer now
}

// Result is what a write returns: the change applied at Generation, or
// rejected with the diagnostics a file change would print.
type Result struct {
	Applied     bool   `json:"applied"`
	Generation  uint64 `json:"generation"`
	Diagnostics string `json:"diagnostics,omitempty"`
}

// Error is every error's body.
type Error struct {
	Error string `json:"error"`
	// Diagnostics are a rejected configuration's, when that is the error.
	Diagnostics string `json:"diagnostics,omitempty"`
}

// WeightRequest is the body of /v1/backends/{name}/weight.
type WeightRequest struct {
	Weight json.RawMessage `json:"weight"`
}

func plugins(ss []host.Status) []Plugin {
	out := make([]Plugin, 0, len(ss))
	for _, s := range ss {
		out = append(out, Plugin{Name: s.Name, State: s.State.String(), PID: s.PID, Version: s.Info.Version,
			Restarts: s.Restarts, LastError: s.LastError, Since: s.Since})
	}
	return out
}

func routes(as []host.AnnouncerStatus) []Route {
	out := make([]Route, 0, len(as))
	for _, a := range as {
		r := Route{Announcer: a.Name, Routes: a.Routes, InSync: a.InSync, Sends: a.Sends, LastError: a.LastError, Sessions: []Session{}}
		for _, s := range a.Sessions {
			r.Sessions = append(r.Sessions, Session{Peer: s.Peer, State: s.State, Up: s.Up, Prefixes: s.Prefixes})
		}
		out = append(out, r)
	}
	return out
}
