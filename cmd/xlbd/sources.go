package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/xlbproject/xlb/control"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/plugins/host"
)

// sourceDoc is one document of a config source, as a configuration is
// loaded from it and digested; its JSON form is how xlbd run hands the
// documents to the bounded child that evaluates them first (precheck).
type sourceDoc struct {
	Source   string `json:"source"`
	Revision string `json:"revision,omitempty"`
	Name     string `json:"name"`
	Format   string `json:"format"`
	Content  []byte `json:"content"`
}

// loadFile loads the configuration file at path with the fragments of its
// config sources, through cache (nil: none): a variable so that a test can
// make loading panic.
var loadFile = func(cache *xhcl.Cache, path string, frags []xhcl.Fragment, opts xhcl.Options) (*xhcl.File, hcl2.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return xhcl.LoadFile(path, opts) // which reports it
	}
	if cache == nil {
		return xhcl.LoadSources(path, src, frags, opts)
	}
	return cache.LoadSources(path, src, frags, opts)
}

// fragments are docs as hcl loads them, in name order (sources name their
// documents uniquely: a path, an etcd key).
func fragments(docs []sourceDoc) []xhcl.Fragment {
	out := make([]xhcl.Fragment, 0, len(docs))
	for _, d := range docs {
		out = append(out, xhcl.Fragment{Name: d.Name, Src: d.Content, JSON: d.Format == "json"})
	}
	slices.SortFunc(out, func(a, b xhcl.Fragment) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sourcesDigest is control.SourcesDigest of docs.
func sourcesDigest(docs []sourceDoc) string {
	in := make([]control.SourceDocument, len(docs))
	for i, d := range docs {
		in[i] = control.SourceDocument{Source: d.Source, Name: d.Name, Format: d.Format, Content: d.Content}
	}
	return control.SourcesDigest(in)
}

// sourceDocs returns the documents the configuration is loaded with now:
// every source's last complete set (kept through an outage), or those
// given on the command line (a bounded validate of xlbd run's).
func (s *services) sourceDocs() []sourceDoc {
	if s.src == nil {
		return s.docs
	}
	var out []sourceDoc
	for _, st := range s.src.States() {
		for _, d := range st.Documents {
			out = append(out, sourceDoc{Source: st.Name, Revision: st.Revision, Name: d.Name, Format: d.Format, Content: d.Content})
		}
	}
	return out
}

// declared keeps the documents of the sources f declares: a reload that
// removes a source block applies without that source's documents.
func declared(f *xhcl.File, docs []sourceDoc) ([]sourceDoc, bool) {
	names := map[string]bool{}
	for _, src := range f.Sources {
		names[src.Name] = true
	}
	kept := slices.DeleteFunc(slices.Clone(docs), func(d sourceDoc) bool { return !names[d.Source] })
	return kept, len(kept) != len(docs)
}

// sourceDecls are the file's source blocks as the plugin set takes them.
func sourceDecls(ss []xhcl.Source) []host.Decl {
	out := make([]host.Decl, len(ss))
	for i, src := range ss {
		out[i] = pluginDecl(src.Plugin)
	}
	return out
}

// sourcesReportEvery is how often the start-up says which sources it
// still waits for.
const sourcesReportEvery = 5 * time.Second

// startSources starts the config sources the file at path declares and
// waits until each has sent its first complete set of documents, saying
// every sourcesReportEvery which it waits for and why; ctx ends the wait
// (SIGINT, SIGTERM). Only the source blocks are evaluated: the whole file
// may need their documents.
func (s *services) startSources(ctx context.Context, path string, vars varFlags, w io.Writer) error {
	f, diags := xhcl.LoadFile(path, xhcl.Options{Vars: vars, EnvVars: envVars(), SourcesOnly: true})
	printDiags(w, f, diags)
	if n := errorCount(diags); n > 0 {
		return rejected(n)
	}
	if len(f.Sources) == 0 || s.src == nil {
		return nil
	}
	c, errs := s.set.Prepare(s.src.Decls(sourceDecls(f.Sources), filepath.Dir(path)))
	if errs == nil {
		cctx, cancel := context.WithTimeout(ctx, pluginCallTimeout)
		errs = c.Commit(cctx)
		cancel()
	}
	if errs != nil {
		c.Abort()
		printDiags(w, f, xhcl.WithErrors(nil, errs))
		return rejected(len(errs))
	}
	c.Done()
	s.src.Use(s.set, sourceNames(f.Sources))
	return waitSources(ctx, s.log, s.src)
}

func sourceNames(ss []xhcl.Source) []string {
	out := make([]string, len(ss))
	for i, src := range ss {
		out[i] = src.Name
	}
	return out
}

// waitSources waits until every source has sent a complete set.
func waitSources(ctx context.Context, log *slog.Logger, src *host.Sources) error {
	t := time.NewTicker(sourcesReportEvery)
	defer t.Stop()
	for {
		var waiting []string
		for _, st := range src.States() {
			if !st.Complete {
				w := st.Name + ": " + st.State
				if st.Reason != "" {
					w += ": " + st.Reason
				}
				waiting = append(waiting, w)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for the config sources (%s)", strings.Join(waiting, "; "))
		case <-t.C:
			log.Info("waiting for the config sources' first documents", "sources", strings.Join(waiting, "; "))
		case <-src.Updates():
		}
	}
}

// readDocs reads the documents a bounded validate is given on stdin.
func readDocs(r io.Reader) ([]sourceDoc, error) {
	var docs []sourceDoc
	if err := json.NewDecoder(r).Decode(&docs); err != nil {
		return nil, fmt.Errorf("reading the config sources' documents: %w", err)
	}
	if docs == nil {
		docs = []sourceDoc{}
	}
	return docs, nil
}

// printSources writes the sources' table after a run.
func printSources(w io.Writer, sts []host.SourceState) {
	if len(sts) == 0 {
		return
	}
	fmt.Fprintln(w, "== config sources")
	tw := newTable(w)
	fmt.Fprintln(tw, "source\tstate\trevision\tdocuments\tsince\tunavailable")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", st.Name, st.State, st.Revision, len(st.Documents),
			st.Since.Format(time.RFC3339), st.Reason)
	}
	_ = tw.Flush()
}
