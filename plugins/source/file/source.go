package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// source is the file config source. Configure and Watch may be called
// concurrently; a Watch reads the settings once, when it starts, so new
// settings take effect at the next Watch (the host calls Watch again
// after a reload).
type source struct {
	log hclog.Logger
	// after starts a quiet period of the given length: time.After, or in
	// tests a channel the test fires itself, so that an editor's burst is
	// never split by a slow machine.
	after func(time.Duration) <-chan time.Time

	mu  sync.Mutex
	cfg *settings // nil until configured
}

func newSource(log hclog.Logger) *source {
	return &source{log: log, after: time.After}
}

// Describe reports the version and the settings' schema.
func (s *source) Describe() sdk.Info {
	return sdk.Info{Version: Version, Schema: schema}
}

// Configure validates and keeps the settings block.
func (s *source) Configure(js []byte) error {
	cfg, err := parseSettings(js)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg = &cfg
	s.mu.Unlock()
	return nil
}

func (s *source) settings() *settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Watch sends the complete set of documents, then the set again after
// every change, once the files have been quiet for the debounce period;
// a set equal to the last one sent is not sent again. Each call reads
// everything anew.
//
// A configured path that does not exist when Watch starts fails the call:
// a directory or file the operator named and that is not there is most
// likely a mistake, which the host reports. A path that disappears later
// is a deletion of its documents. A file that exists but cannot be read
// (too large, permissions) makes the update Unavailable, naming it: the
// host keeps the documents it has rather than deleting that file's
// services.
func (s *source) Watch(ctx context.Context, send func(sdk.ConfigUpdate) error) error {
	cfg := s.settings()
	if cfg == nil {
		return errors.New("the file source is not configured: it needs paths")
	}
	w, err := newWatcher()
	if err != nil {
		return err
	}
	defer w.close()

	sc := s.read(w, cfg.Paths)
	if len(sc.missing) > 0 {
		return missingError(sc.missing)
	}
	wd, _ := os.Getwd()
	s.log.Info("watching", "paths", strings.Join(cfg.Paths, ", "), "dir", wd, "debounce", cfg.Debounce.String())
	last := sc.update("")
	s.logUpdate(sdk.ConfigUpdate{}, last, nil)
	if err := send(last); err != nil {
		return err
	}
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.done:
			return w.err
		case <-w.dirty:
			// Every change starts the quiet period again.
			quiet = s.after(cfg.Debounce)
		case <-quiet:
			quiet = nil
			sc := s.read(w, cfg.Paths)
			u := sc.update(last.Revision)
			if sameUpdate(u, last) {
				continue
			}
			s.logUpdate(last, u, sc.missing)
			if err := send(u); err != nil {
				return err
			}
			last = u
		}
	}
}

// read reads the paths, watching them, and logs what cannot be watched.
func (s *source) read(w *watcher, paths []string) scan {
	sc := read(paths, w.watch)
	for _, err := range w.commit() {
		s.log.Warn(err.Error())
	}
	return sc
}

func missingError(missing []string) error {
	wd, _ := os.Getwd()
	var errs []error
	for _, p := range missing {
		errs = append(errs, fmt.Errorf("paths: %q does not exist (in %s)", p, wd))
	}
	return errors.Join(errs...)
}

// update is the scan as an update: the documents with their revision, or
// Unavailable (keeping the revision last sent) when a file could not be
// read.
func (sc scan) update(lastRevision string) sdk.ConfigUpdate {
	if len(sc.problems) > 0 {
		return sdk.ConfigUpdate{Revision: lastRevision, Unavailable: strings.Join(sc.problems, "; ")}
	}
	return sdk.ConfigUpdate{Revision: revision(sc.docs), Documents: sc.docs}
}

// revision is a digest of the documents' names, formats and contents: it
// changes whenever the set does, and the same files give the same
// revision after a SIGHUP, a restart of the plugin, or on another node.
func revision(docs []sdk.Document) string {
	h := sha256.New()
	var n [8]byte
	for _, d := range docs {
		for _, b := range [][]byte{[]byte(d.Name), []byte(d.Format), d.Content} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func sameUpdate(a, b sdk.ConfigUpdate) bool {
	if a.Unavailable != b.Unavailable || len(a.Documents) != len(b.Documents) {
		return false
	}
	for i, d := range a.Documents {
		e := b.Documents[i]
		if d.Name != e.Name || d.Format != e.Format || !bytes.Equal(d.Content, e.Content) {
			return false
		}
	}
	return true
}

// logUpdate logs the update about to be sent, and how it differs from
// the one before (empty at start).
func (s *source) logUpdate(before, u sdk.ConfigUpdate, missing []string) {
	if u.Unavailable != "" {
		s.log.Warn("cannot read the configuration; xlbd keeps the documents it has", "reason", u.Unavailable)
		return
	}
	old := map[string][]byte{}
	for _, d := range before.Documents {
		old[d.Name] = d.Content
	}
	var added, changed []string
	for _, d := range u.Documents {
		c, ok := old[d.Name]
		switch {
		case !ok:
			added = append(added, d.Name)
		case !bytes.Equal(c, d.Content):
			changed = append(changed, d.Name)
		}
		delete(old, d.Name)
	}
	args := []any{"revision", u.Revision, "documents", len(u.Documents)}
	for _, l := range []struct {
		key   string
		names []string
	}{{"added", added}, {"changed", changed}, {"removed", slices.Sorted(maps.Keys(old))}, {"missing", missing}} {
		if len(l.names) > 0 {
			args = append(args, l.key, names(l.names))
		}
	}
	s.log.Info("sending documents", args...)
}

// names lists names for a log line, at most 20 of them: a directory of a
// thousand files must not make a line the host cuts.
func names(list []string) string {
	const most = 20
	if len(list) <= most {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:most], ", "), len(list)-most)
}

var (
	_ sdk.ConfigSource = (*source)(nil)
	_ sdk.Describer    = (*source)(nil)
	_ sdk.Configurer   = (*source)(nil)
)
