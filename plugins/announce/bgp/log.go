package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// peerLog logs each neighbor's troubles once per change: a session that
// comes up or goes down, and each distinct reason for failing (connect
// refused, a NOTIFICATION, a timeout) since the last such change. A reason
// that repeats on every retry is counted, not logged again (an unreachable
// neighbor alternates between two), and the counts are reported when the
// session comes up.
type peerLog struct {
	log hclog.Logger

	mu sync.Mutex
	by map[string]*peerStatus
}

type peerStatus struct {
	up      bool
	md5     bool           // the session is signed (TCP MD5)
	reasons map[string]int // failures since the last change, by reason
	order   []string       // reasons in the order first seen
}

func newPeerLog(log hclog.Logger) *peerLog {
	return &peerLog{log: log, by: map[string]*peerStatus{}}
}

func (l *peerLog) status(addr string) *peerStatus {
	st, ok := l.by[addr]
	if !ok {
		st = &peerStatus{reasons: map[string]int{}}
		l.by[addr] = st
	}
	return st
}

// failure records why a session with addr failed or could not be made,
// and the wait before the next attempt.
func (l *peerLog) failure(addr, reason string, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.status(addr)
	if st.md5 && strings.HasSuffix(reason, "i/o timeout") {
		// A router whose key differs drops our segments without a word.
		reason += " (unreachable, or the neighbor drops our TCP MD5 signature: check the password)"
	}
	st.reasons[reason]++
	if st.reasons[reason] > 1 {
		return
	}
	st.order = append(st.order, reason)
	args := []any{"peer", addr, "reason", reason}
	if retry > 0 {
		// A string: the host gets the plugin's log as JSON.
		args = append(args, "retry_in", retry.Round(100*time.Millisecond).String())
	}
	l.log.Warn("neighbor: session failed; retrying", args...)
}

// state records that the session with addr is up (established) or not.
func (l *peerLog) state(addr string, up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.status(addr)
	if up == st.up {
		return
	}
	st.up = up
	if up {
		args := []any{"peer", addr, "state", "established"}
		if len(st.order) > 0 {
			var after []string
			for _, r := range st.order {
				after = append(after, fmt.Sprintf("%s (%d×)", r, st.reasons[r]))
			}
			args = append(args, "after", strings.Join(after, "; "))
		}
		l.log.Info("neighbor: session established", args...)
	} else {
		l.log.Warn("neighbor: session down", "peer", addr, "state", "down")
	}
	clear(st.reasons)
	st.order = nil
}

// signed records whether the session with addr uses TCP MD5.
func (l *peerLog) signed(addr string, md5 bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status(addr).md5 = md5
}

// forget drops addr's record (the neighbor was removed).
func (l *peerLog) forget(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.by, addr)
}

// gobgpLog is gobgp's logger: a neighbor's failures go to failed (the
// backoff and peerLog), the rest to hclog (gobgp's chatter at debug).
type gobgpLog struct {
	log    hclog.Logger
	failed func(addr, reason string)
}

// peerFailures are gobgp's messages that say why a session failed, with
// a neighbor's address as "Key".
var peerFailures = map[string]bool{
	"failed to connect":             true,
	"received notification":         true,
	"sent notification":             true,
	"Peer Down":                     true,
	"hold timer expired":            true,
	"Closed an accepted connection": true,
}

func (g *gobgpLog) record(level hclog.Level, msg string, fields gobgplog.Fields) {
	if addr, ok := fields["Key"].(string); ok && peerFailures[msg] && fields["Reason"] != "dying" {
		g.failed(addr, describe(msg, fields))
		return
	}
	if addr, ok := fields["Key"].(string); ok && msg == "state changed" {
		if reason, ok := openFailed(fields); ok {
			g.failed(addr, reason)
		}
	}
	if level < hclog.Warn {
		// gobgp's info (a peer added, a path sent) is detail for us.
		level = hclog.Debug
	}
	args := make([]any, 0, 2*len(fields))
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		args = append(args, strings.ToLower(k), fmt.Sprint(fields[k]))
	}
	g.log.Log(level, msg, args...)
}

// describe says in a line why a session failed, from one of gobgp's
// peerFailures messages.
func describe(msg string, f gobgplog.Fields) string {
	switch msg {
	case "failed to connect":
		return fmt.Sprintf("connecting: %v", f["Error"])
	case "received notification", "sent notification":
		s := msg
		code, ok1 := f["Code"].(uint8)
		sub, ok2 := f["Subcode"].(uint8)
		if ok1 && ok2 {
			s += ": " + bgp.NewNotificationErrorCode(code, sub).String()
		} else if d, ok := f["Data"]; ok {
			s += fmt.Sprintf(": %v", d)
		}
		if r, ok := f["Communicated-Reason"].(string); ok && r != "" {
			s += fmt.Sprintf(" (%q)", r)
		}
		return s
	case "Peer Down":
		return fmt.Sprintf("session down: %v", f["Reason"])
	}
	return msg
}

// openFailed says why a session that was opening failed, from gobgp's
// "state changed" message: a connection closed or reset before the
// session was established (a router that accepts and drops it, an OPEN
// it cannot read) is said nowhere else. A NOTIFICATION is reported by
// its own message, a lost established session by "Peer Down".
func openFailed(f gobgplog.Fields) (string, bool) {
	old, _ := f["old"].(string)
	if f["new"] != bgp.BGP_FSM_IDLE.String() || old != bgp.BGP_FSM_OPENSENT.String() && old != bgp.BGP_FSM_OPENCONFIRM.String() {
		return "", false
	}
	r := fmt.Sprint(f["reason"])
	if strings.HasPrefix(r, "notification-") || r == "dying" || r == "admin-down" {
		return "", false
	}
	if r == "invalid-msg" {
		// gobgp's reason for an OPEN it refused (another AS than
		// peer_as, a bad router ID) or a message it could not take
		// while opening; its "sent notification" says which, when it
		// managed to send one.
		r += " (the neighbor's OPEN or first message refused: check peer_as)"
	}
	return "opening the session: " + r, true
}

func (g *gobgpLog) Panic(msg string, f gobgplog.Fields) {
	g.record(hclog.Error, msg, f)
	panic(msg)
}

// Fatal is logged as an error: gobgp calls it when its gRPC API cannot
// listen, which this plugin does not use.
func (g *gobgpLog) Fatal(msg string, f gobgplog.Fields) { g.record(hclog.Error, msg, f) }
func (g *gobgpLog) Error(msg string, f gobgplog.Fields) { g.record(hclog.Error, msg, f) }
func (g *gobgpLog) Warn(msg string, f gobgplog.Fields)  { g.record(hclog.Warn, msg, f) }
func (g *gobgpLog) Info(msg string, f gobgplog.Fields)  { g.record(hclog.Info, msg, f) }
func (g *gobgpLog) Debug(msg string, f gobgplog.Fields) { g.record(hclog.Debug, msg, f) }

func (g *gobgpLog) SetLevel(gobgplog.LogLevel) {}

// GetLevel is debug whatever hclog's level: gobgp says why a connection
// failed only at debug, and peerLog needs that.
func (g *gobgpLog) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }

// hclogHandler is a slog.Handler writing to an hclog.Logger, for the BFD
// speaker's log: the plugin's stderr is hclog's JSON, which the host
// re-logs entry by entry.
type hclogHandler struct {
	log   hclog.Logger
	attrs []any
}

func (h hclogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.IsDebug() || l >= slog.LevelInfo
}

func (h hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		args = append(args, a.Key, a.Value.String())
		return true
	})
	level := hclog.Debug
	switch {
	case r.Level >= slog.LevelError:
		level = hclog.Error
	case r.Level >= slog.LevelWarn:
		level = hclog.Warn
	case r.Level >= slog.LevelInfo:
		level = hclog.Info
	}
	h.log.Log(level, r.Message, args...)
	return nil
}

func (h hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := hclogHandler{log: h.log, attrs: slices.Clone(h.attrs)}
	for _, a := range attrs {
		out.attrs = append(out.attrs, a.Key, a.Value.String())
	}
	return out
}

func (h hclogHandler) WithGroup(name string) slog.Handler {
	return hclogHandler{log: h.log.Named(name), attrs: h.attrs}
}
