package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is what xlbd run reports about its configuration: written as
// JSON to the -status file on every change, printed at exit, and what the
// admin API will serve. docs/sources.md describes each field.
type Status struct {
	Node         string         `json:"node"`
	Generation   uint64         `json:"generation"`
	Config       string         `json:"config"`
	ConfigDigest string         `json:"config_digest"`
	AppliedAt    time.Time      `json:"applied_at"`
	Sources      []SourceStatus `json:"sources"`
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
}

// writeStatus writes st to path atomically: a reader sees the old file
// or the new one, never a part.
func writeStatus(path string, st *Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// printCluster writes the rejection and the cluster's agreement after a
// run (the sources have their table with the plugins').
func printCluster(w io.Writer, st *Status) {
	if st.Rejected != nil {
		fmt.Fprintf(w, "== rejected change\n%s revision %s at %s:\n%s\n", st.Rejected.Source, st.Rejected.Revision,
			st.Rejected.At.Format(time.RFC3339), strings.TrimSpace(st.Rejected.Diagnostics))
	}
	if !st.Cluster.Checked {
		return
	}
	fmt.Fprintf(w, "== cluster (agree %v, withdrawn %v)\n", st.Cluster.Agree, st.Cluster.Withdrawn)
	tw := newTable(w)
	fmt.Fprintln(tw, "node\tstate\trevision\tconfig_digest")
	for _, n := range st.Cluster.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, n.State, n.Revision, n.ConfigDigest)
	}
	_ = tw.Flush()
	for _, p := range st.Cluster.Problems {
		fmt.Fprintln(w, p)
	}
}
