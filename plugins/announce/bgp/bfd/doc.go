// Package bfd is a Bidirectional Forwarding Detection speaker: RFC 5880 in
// asynchronous mode (no echo, no demand, no authentication) over RFC 5881
// single-hop UDP, IPv4 and IPv6. The BGP announcer runs a session with each
// neighbor so that a router (BIRD's `protocol bfd`, with `bfd on` in its BGP
// sessions) removes a dead xlb node's paths within the BFD detection time
// (300 ms at 100 ms × 3) instead of the BGP hold time.
//
// Departures from the RFC, each chosen for a small library: a session's
// intervals are fixed when it is added (its only Poll sequence is the one
// that announces the faster rate on coming Up); AdminDown is sent once, not
// for a detection time; the answers to a flood of Polls are limited to one
// per 10 ms per session.
package bfd
