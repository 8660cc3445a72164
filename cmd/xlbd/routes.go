package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// selfCheckEvery is how often the forwarder's self-check runs while
// nothing is published: the longest a stalled worker or a lost XDP program
// stays announced beyond the stall time itself.
const selfCheckEvery = 200 * time.Millisecond

// withdrawTimeout bounds the withdrawal of every route on shutdown: a
// hung announcer must not keep the node from stopping.
const withdrawTimeout = 3 * time.Second

// forwarderCheck is the self-check routes depend on: the pipeline's own
// (every worker turning, every element's check) and a snapshot applied.
func forwarderCheck(rt *pipeline.Runtime, s *snapshot.Snapshot, now time.Time) error {
	if err := rt.SelfCheck(now); err != nil {
		return err
	}
	if s == nil || s.Generation == 0 {
		return errors.New("no snapshot applied")
	}
	return nil
}

// routeLoop computes the routes to announce (control.DesiredRoutes) on
// every publication of st and every selfCheckEvery, logs each transition
// of the self-check with its reason, and hands the set to the announcers,
// until ctx is done. It is started once the pipeline runs, so nothing is
// announced before the node can forward. The cluster's agreement is part
// of the self-check: cluster returns an error while this node must
// withdraw (it disagrees with a larger group of nodes).
func routeLoop(ctx context.Context, log *slog.Logger, rt *pipeline.Runtime, st *snapshot.Store, an *host.Announcers, cluster func() error) {
	t := time.NewTicker(selfCheckEvery)
	defer t.Stop()
	first := true
	var last error
	for {
		s, changed := st.Watch()
		err := forwarderCheck(rt, s, time.Now())
		if err == nil {
			err = cluster()
		}
		switch {
		case err != nil && first:
			// The workers may not have started yet.
			log.Info("not announcing until the forwarder's self-check passes", "reason", err)
		case errors.Is(err, errDisagrees) && !errors.Is(last, errDisagrees):
			log.Error("every route withdrawn until the cluster agrees", "reason", err)
		case err != nil && !errors.Is(err, errDisagrees) && (last == nil || errors.Is(last, errDisagrees)):
			log.Error("forwarder self-check failed: every route withdrawn", "reason", err)
		case err == nil && (first || last != nil):
			log.Info("forwarder self-check passed: announcing", "routes", len(control.DesiredRoutes(s, nil)))
		}
		first, last = false, err
		an.SetDesired(control.DesiredRoutes(s, err))
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}
