package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Decl is one plugin a configuration uses: what to run with which
// settings, and where it is declared, for diagnostics.
type Decl struct {
	Spec
	// Range is where a problem with the plugin as a whole is reported: its
	// block, or for a built-in without one the first block that uses it.
	Range pipeline.Range
	// AttrRange places a refused setting at its attribute.
	AttrRange pipeline.AttrRanges
}

// what names d in messages: `health-check plugin "http"`.
func (d Decl) what() string {
	noun := map[sdk.Kind]string{sdk.KindHealthChecker: "health-check", sdk.KindConfigSource: "config-source",
		sdk.KindRouteAnnouncer: "route-announcer"}[d.Kind]
	return strings.TrimSpace(fmt.Sprintf("%s plugin %q", noun, d.Name))
}

// sameProcess reports whether a plugin launched for d can serve e: the same
// binary, checksum, kind and working directory (settings may differ).
func (d Decl) sameProcess(e Decl) bool {
	return d.Path == e.Path && d.SHA256 == e.SHA256 && d.Kind == e.Kind && d.Dir == e.Dir
}

// Set is the plugins of the running configuration, of every kind, by
// name. A new configuration changes it as a transaction: Prepare starts
// what the configuration newly needs and checks every plugin's settings
// without touching a running plugin; Commit sends changed settings to the
// running plugins (rolling back when one refuses); Done makes the change
// the running set and stops the plugins it no longer has; Abort, until
// Done, undoes everything (settings re-sent, plugins started for the
// change stopped). One goroutine drives the changes; Plugin and Statuses
// may be called from any.
type Set struct {
	opt Options

	mu      sync.Mutex
	members map[string]member
}

// member is a plugin of the set with the declaration it runs.
type member struct {
	p    *Plugin
	decl Decl
}

// NewSet returns an empty set whose plugins are supervised with opt.
func NewSet(opt Options) *Set {
	return &Set{opt: opt.withDefaults(), members: map[string]member{}}
}

// Plugin returns the running set's plugin named name, or nil.
func (s *Set) Plugin(name string) *Plugin {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[name].p
}

// Statuses returns each plugin's status, by name.
func (s *Set) Statuses() []Status {
	s.mu.Lock()
	members := maps.Clone(s.members)
	s.mu.Unlock()
	var out []Status
	for _, name := range slices.Sorted(maps.Keys(members)) {
		out = append(out, members[name].p.Status())
	}
	return out
}

// Stop stops every plugin of the set.
func (s *Set) Stop() {
	s.mu.Lock()
	members := s.members
	s.members = map[string]member{}
	s.mu.Unlock()
	for _, m := range members {
		m.p.Stop()
	}
}

// Change is a set of plugins being readied for a new configuration; see
// Set.
type Change struct {
	set  *Set
	next map[string]member
	// refused holds what the plugins that did not start (refusing their
	// settings, say) reported about themselves before they stopped.
	refused map[string]sdk.Info
	// started are the plugins launched for the change, stopped by Abort;
	// reconf the running plugins whose settings change, committed those
	// Commit has sent new settings to.
	started          []*Plugin
	reconf, reconfed []reconf
	over             bool // Done or Abort was called
}

// reconf is one running plugin's change of settings.
type reconf struct {
	p        *Plugin
	decl     Decl
	old, new []byte
}

// Prepare readies decls (unique names) for a new configuration without
// changing any running plugin: a plugin not in the set, or whose binary,
// checksum or kind changed, or which has failed for good, or which is
// restarting when its settings change, is launched
// (checksum, handshake, Info, its settings conformed to its schema and
// sent); a running plugin's new settings are checked against its schema
// only, and sent by Commit. Every problem comes back as pipeline.Errors at
// the declaration; the Change is returned in any case (its plugins can
// check more, such as parameters), to be committed or aborted.
func (s *Set) Prepare(decls []Decl) (*Change, pipeline.Errors) {
	c := &Change{set: s, next: map[string]member{}, refused: map[string]sdk.Info{}}
	defer func() {
		if r := recover(); r != nil {
			// Leave nothing running for a change the caller never gets.
			c.Abort()
			panic(r)
		}
	}()
	var errs pipeline.Errors
	for _, d := range decls {
		if _, dup := c.next[d.Name]; dup {
			errs = append(errs, &pipeline.Error{Range: d.Range, Summary: "Duplicate plugin",
				Detail: fmt.Sprintf("Two plugins are named %q; give each its own name.", d.Name)})
			continue
		}
		d.Config = bytes.TrimSpace(d.Config)
		if len(d.Config) == 0 {
			d.Config = []byte("{}")
		}
		s.mu.Lock()
		cur, ok := s.members[d.Name]
		s.mu.Unlock()
		if ok && cur.decl.sameProcess(d) && reusable(cur, d) {
			if !bytes.Equal(cur.decl.Config, d.Config) {
				if _, err := conformConfig(cur.p.Status().Info.Schema, d.Config); err != nil {
					errs = append(errs, settingErrors(err, d)...)
					continue
				}
				c.reconf = append(c.reconf, reconf{p: cur.p, decl: d, old: cur.decl.Config, new: d.Config})
			}
			c.next[d.Name] = member{cur.p, d}
			continue
		}
		p, err := s.launch(d)
		if err != nil {
			if p != nil && p.Status().Info.Kind == d.Kind {
				c.refused[d.Name] = p.Status().Info
			}
			errs = append(errs, settingErrors(err, d)...)
			continue
		}
		c.started = append(c.started, p)
		c.next[d.Name] = member{p, d}
	}
	return c, errs
}

// reusable reports whether m's process can serve d (the same binary) as
// it is: running, or between two runs (restarting) when d keeps its
// settings; one restarting cannot take new settings, and one failed for
// good serves nothing, so a fresh instance is launched for d.
func reusable(m member, d Decl) bool {
	switch m.p.Status().State {
	case StateRunning:
		return true
	case StateRestarting:
		return bytes.Equal(m.decl.Config, d.Config)
	}
	return false
}

// launch starts d's plugin. A plugin that does not start is returned
// too, stopped, for what it reported before it failed.
func (s *Set) launch(d Decl) (*Plugin, error) {
	p, err := New(d.Spec, s.opt)
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		p.Stop()
		return p, err
	}
	p.log.Info("plugin started", "path", d.Path, "checksum_verified", d.SHA256 != "", "kind", d.Kind,
		"version", p.Status().Info.Version)
	return p, nil
}

// Plugin returns the plugin that serves name in the new configuration, or
// nil when it has none (or it did not start).
func (c *Change) Plugin(name string) *Plugin { return c.next[name].p }

// Info returns what the plugin named name reported about itself (its
// schemas): the plugin of the new configuration, or one that did not
// start but answered Info before it failed (refusing its settings).
func (c *Change) Info(name string) (sdk.Info, bool) {
	if m, ok := c.next[name]; ok {
		return m.p.Status().Info, true
	}
	in, ok := c.refused[name]
	return in, ok
}

// Commit sends their new settings to the running plugins whose settings
// changed, in name order. When one refuses (a check only the plugin
// knows), the plugins already reconfigured get their old settings back and
// the refusal comes back as pipeline.Errors at its attributes; the caller
// then Aborts.
func (c *Change) Commit(ctx context.Context) pipeline.Errors {
	slices.SortFunc(c.reconf, func(a, b reconf) int { return strings.Compare(a.decl.Name, b.decl.Name) })
	for _, r := range c.reconf {
		if err := r.p.Reconfigure(ctx, r.new); err != nil {
			c.undo(ctx)
			return Place(err, r.decl.what(), r.decl.Range, r.decl.AttrRange, "Invalid plugin setting", "Plugin not reconfigured")
		}
		c.reconfed = append(c.reconfed, r)
		r.p.log.Info("plugin reconfigured", "config", string(r.new))
	}
	return nil
}

// undo sends their old settings back to the plugins Commit reconfigured.
func (c *Change) undo(ctx context.Context) {
	for _, r := range slices.Backward(c.reconfed) {
		if err := r.p.Reconfigure(ctx, r.old); err != nil {
			// Its restart brings the old settings back, at least.
			r.p.keep(r.old)
			r.p.log.Error("plugin refused its previous settings on rollback; it runs with the rejected ones until it restarts",
				"error", err, "config", string(r.old))
			continue
		}
		r.p.log.Info("plugin settings rolled back", "config", string(r.old))
	}
	c.reconfed = nil
}

// Abort undoes the change: committed settings are sent back, plugins
// started for it are stopped. The running set is as before Prepare. It
// does nothing after Done, or when called again.
func (c *Change) Abort() {
	if c.over {
		return
	}
	c.over = true
	ctx, cancel := context.WithTimeout(context.Background(), c.set.opt.StartTimeout)
	defer cancel()
	c.undo(ctx)
	for _, p := range c.started {
		p.Stop()
		p.log.Info("plugin stopped: the configuration it was started for was rejected")
	}
}

// Done makes the change the running set and stops the plugins it replaced
// or no longer has.
func (c *Change) Done() {
	if c.over {
		return
	}
	c.over = true
	s := c.set
	s.mu.Lock()
	old := s.members
	s.members = c.next
	s.mu.Unlock()
	for name, m := range old {
		if n, ok := c.next[name]; !ok || n.p != m.p {
			m.p.Stop()
			m.p.log.Info("plugin stopped: no longer in the configuration, or replaced")
		}
	}
}

// settingErrors places a plugin's start failure or refused settings in the
// file: refused settings at their attributes, anything else at the block.
func settingErrors(err error, d Decl) pipeline.Errors {
	return Place(err, d.what(), d.Range, d.AttrRange, "Invalid plugin setting", "Plugin not started")
}

// nearest is the range of the attribute at path (a plugin names a value
// nested in an attribute by a path such as neighbors[1].peer_as), or of the
// longest prefix of the path recorded in attrs, or block.
func nearest(attrs pipeline.AttrRanges, path string, block pipeline.Range) pipeline.Range {
	for path != "" {
		if r, ok := attrs.Get(path); ok {
			return r
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return block
}

// Place turns err, from a plugin checking a block (its settings, a health
// check's parameters), into one pipeline.Error per refused attribute (an
// *sdk.ConfigError, at attrs[Attribute]) with the summary refused, and one
// at block with the summary failed for anything else; what names the
// plugin or block in the details.
func Place(err error, what string, block pipeline.Range, attrs pipeline.AttrRanges, refused, failed string) pipeline.Errors {
	var out pipeline.Errors
	for _, e := range sdk.Unjoin(err) {
		var ce *sdk.ConfigError
		if !errors.As(e, &ce) {
			// Not about an attribute: the error names the plugin itself.
			out = append(out, &pipeline.Error{Range: block, Summary: failed, Detail: strings.TrimSuffix(e.Error(), ".") + "."})
			continue
		}
		r := nearest(attrs, ce.Attribute, block)
		detail := fmt.Sprintf("%s: %s.", what, strings.TrimSuffix(ce.Message, "."))
		if ce.Attribute != "" {
			detail = fmt.Sprintf("%s: %s: %s.", what, ce.Attribute, strings.TrimSuffix(ce.Message, "."))
		}
		out = append(out, &pipeline.Error{Range: r, Summary: refused, Detail: detail})
	}
	return out
}
