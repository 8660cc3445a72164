package hcl

import (
	"bytes"
	"maps"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/xlbproject/xlb/control"
)

// A Cache loads a configuration of a main file and fragments again and
// again, as a daemon reloads it when a config source reports a change,
// and does again only what changed: a fragment whose text is the one it
// had is not parsed again, and, while the main file and the options are
// those of the last load too, not decoded again either; the configuration
// is validated against the last valid one (control.Checker), so that a
// change to one fragment among thousands costs about that fragment. The
// diagnostics are exactly LoadSources'.
//
// The Files it returns share the decoded blocks of unchanged fragments
// (their pools' Backends are the very same slices, which lets
// control.Controller.Apply skip them too): they must not be modified. A
// Cache holds the fragments of its last load only. It is safe for
// concurrent use; loads take turns.
type Cache struct {
	mu sync.Mutex
	// frags are the last load's fragments by name.
	frags map[string]*cached
	// main is the last load's main file and options: decoded fragments
	// are kept while they are the same.
	main    mainFile
	check   control.Checker
	current map[string]*cached // this load's, while it runs
}

// cached is what a Cache keeps of a fragment.
type cached struct {
	json bool
	// file is the parsed text until it is decoded, then nil: the cache
	// keeps what it decodes to and not its syntax tree.
	// src is the text: the caller's, which it does not modify once
	// loaded (the File keeps it too, for diagnostics), so that a source
	// that hands the same slice again costs no comparison of bytes.
	src  []byte
	file *hcl.File
	// diags are the parse's.
	diags   hcl.Diagnostics
	decoded *decoded
}

type mainFile struct {
	filename      string
	src           []byte
	vars, envVars map[string]string
}

func (m *mainFile) same(filename string, src []byte, opts Options) bool {
	return m.src != nil && m.filename == filename && bytes.Equal(m.src, src) &&
		maps.Equal(m.vars, opts.Vars) && maps.Equal(m.envVars, opts.EnvVars)
}

// LoadSources is LoadSources, reusing what the cache kept of the last
// load.
func (c *Cache) LoadSources(filename string, src []byte, frags []Fragment, opts Options) (*File, hcl.Diagnostics) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.main.same(filename, src, opts) {
		// Decoded fragments keep no syntax tree: they are parsed again.
		c.frags = nil
		c.main = mainFile{filename, bytes.Clone(src), maps.Clone(opts.Vars), maps.Clone(opts.EnvVars)}
		if c.main.src == nil {
			c.main.src = []byte{}
		}
	}
	c.current = make(map[string]*cached, len(frags))
	for _, fr := range frags {
		if e, ok := c.frags[fr.Name]; ok && e.json == fr.isJSON() && bytes.Equal(e.src, fr.Src) {
			c.current[fr.Name] = e
		}
	}
	f, diags := loadWith(c, filename, src, frags, opts)
	c.frags, c.current = c.current, nil
	return f, diags
}

// parsed returns what the cache holds of fr when its text is the same:
// the parsed file, the parse's diagnostics (copies) and, when the main
// file is the same too, what its blocks decode to. Safe for concurrent
// use during a load: it only reads. A nil Cache holds nothing.
func (c *Cache) parsed(fr Fragment) (*hcl.File, hcl.Diagnostics, *decoded, bool) {
	if c == nil {
		return nil, nil, nil, false
	}
	e, ok := c.current[fr.Name]
	if !ok {
		return nil, nil, nil, false
	}
	f := e.file
	if e.decoded != nil {
		f = &hcl.File{Body: hcl.EmptyBody(), Bytes: e.src}
	}
	return f, copyDiags(e.diags), e.decoded, true
}

// keep records fr's parsed file and diagnostics, for the next load.
func (c *Cache) keep(fr Fragment, f *hcl.File, diags hcl.Diagnostics) {
	if c != nil {
		c.current[fr.Name] = &cached{json: fr.isJSON(), src: fr.Src, file: f, diags: copyDiags(diags)}
	}
}

// keepDecoded records what the fragment named name decodes to.
func (c *Cache) keepDecoded(name string, d *decoded) {
	if c == nil {
		return
	}
	if e, ok := c.current[name]; ok {
		e.decoded, e.file = d, nil
	}
}

// copyDiags returns copies of diags, so that a caller that changes its
// diagnostics does not change the cache's.
func copyDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	if diags == nil {
		return nil
	}
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		copied := *d
		out[i] = &copied
	}
	return out
}
