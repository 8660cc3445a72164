// Package builtin holds the settings schemas of the built-in plugins that
// are main packages (bgp, file, etcd), so that docs/hcl.md can be generated
// from the schemas the plugins report: each plugin's Describe returns
// these, and internal/hcldoc reads them. The health checkers' schemas are
// in their importable packages (tcpcheck, httpcheck).
package builtin

import "github.com/xlbproject/xlb/plugins/sdk"

// BGPSettings is the bgp announcer's announce block (its Info.Schema).
var BGPSettings = []sdk.Attribute{
	{Name: "local_as", Type: "number", Required: true, Description: "this node's AS number"},
	{Name: "router_id", Type: "string", Required: true, Description: "the BGP identifier, an IPv4 address"},
	{Name: "listen_port", Type: "number", Description: "TCP port to accept sessions on; 0 (the default) never listens"},
	{Name: "graceful_restart_time", Type: "string", Description: `how long routers keep this node's routes while the plugin restarts ("15s" default, "0s" disables graceful restart)`},
	{Name: "next_hop_ipv4", Type: "string", Description: "the next hop of IPv4 routes (default: the session's local address)"},
	{Name: "next_hop_ipv6", Type: "string", Description: "the next hop of IPv6 routes (default: the session's local address)"},
	{Name: "communities", Type: "list(string)", Description: `communities on every route, "asn:value"`},
	{Name: "large_communities", Type: "list(string)", Description: `large communities on every route, "a:b:c"`},
	{Name: "neighbors", Type: "any", Required: true, Description: "the peers: a list of objects with address, peer_as, and optionally password, hold_time, keepalive, connect_retry, connect_retry_max, multihop_ttl, port, bfd"},
}

// BGPParams is a VIP's announce block for the bgp announcer (its
// Info.Params).
var BGPParams = []sdk.Attribute{
	{Name: "communities", Type: "list(string)", Description: `communities on this VIP's routes, "asn:value" (16-bit each)`},
	{Name: "large_communities", Type: "list(string)", Description: `large communities on this VIP's routes, "a:b:c" (32-bit each)`},
	{Name: "med", Type: "number", Description: "MULTI_EXIT_DISC of this VIP's routes (0 to 4294967295)"},
}

// FileSettings is the file source's source block (its Info.Schema).
var FileSettings = []sdk.Attribute{
	{Name: "paths", Type: "list(string)", Required: true, Description: "files and directories to read; a directory contributes its *.hcl and *.hcl.json files, relative paths are relative to the main configuration file's directory"},
	{Name: "debounce", Type: "string", Description: `how long the files must stay quiet after a change before it is sent ("200ms" default, "0s" to "10s")`},
}

// EtcdSettings is the etcd source's source block (its Info.Schema).
var EtcdSettings = []sdk.Attribute{
	{Name: "endpoints", Type: "list(string)", Required: true, Description: `etcd client URLs ("https://10.0.0.1:2379"); all of one scheme`},
	{Name: "prefix", Type: "string", Required: true, Description: `the key prefix whose keys hold configuration fragments; ends with "/" ("/xlb/services/")`},
	{Name: "status_prefix", Type: "string", Description: `where each node publishes its applied state, under a lease ("/xlb/status/" default); ends with "/", apart from prefix`},
	{Name: "lease_ttl", Type: "string", Description: `how long a node's published state outlives the node ("10s" default, whole seconds, 2s to 1h)`},
	{Name: "dial_timeout", Type: "string", Description: `how long connecting, and each check that etcd answers, may take before etcd counts as unreachable ("5s" default)`},
	{Name: "username", Type: "string", Description: "etcd user (with password)"},
	{Name: "password", Type: "string", Description: "etcd user's password (with username)"},
	{Name: "ca_file", Type: "string", Description: "PEM file of the CA certificates that sign etcd's server certificate (default: the system's)"},
	{Name: "cert_file", Type: "string", Description: "PEM client certificate, for etcd's --client-cert-auth (with key_file)"},
	{Name: "key_file", Type: "string", Description: "PEM private key of cert_file"},
	{Name: "server_name", Type: "string", Description: "the name etcd's certificate must carry (default: the endpoint's host)"},
}
