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

	"github.com/xlbproject/xlb/admin"
)

// Status is what xlbd run reports about its configuration: written as
// JSON to the -status file on every change, printed at exit, and served by
// the admin API (/v1/status). docs/sources.md describes each field.
type Status = admin.DaemonStatus

// The parts of a Status.
type (
	SourceStatus  = admin.SourceStatus
	Rejection     = admin.Rejection
	ClusterStatus = admin.ClusterStatus
	ClusterNode   = admin.ClusterNode
)

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
	fmt.Fprintln(tw, "node\tstate\trevision\tconfig_digest\tshards")
	for _, n := range st.Cluster.Nodes {
		shards := "*" // every VIP
		if len(n.Shards) > 0 {
			shards = strings.Join(n.Shards, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Node, n.State, n.Revision, n.ConfigDigest, shards)
	}
	_ = tw.Flush()
	for _, p := range st.Cluster.Problems {
		fmt.Fprintln(w, p)
	}
}
