package hcl

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"

	"github.com/xlbproject/xlb/pipeline"
)

// Plugin is a plugin block: the binary that serves the health-check method
// named by its label, checked against SHA256 before every launch when set,
// and the plugin's own settings.
type Plugin struct {
	Name string
	// Path is absolute (a relative path is resolved against the file's
	// directory here, never looked up on $PATH); empty: the built-in.
	Path   string
	SHA256 string // lower-case hex; empty: not checked
	// Config is every other attribute of the block, evaluated to
	// constants, as the JSON object the plugin's Configure receives (keys
	// sorted; "{}" when there are none).
	Config    []byte
	Range     pipeline.Range
	AttrRange map[string]pipeline.Range
}

type pluginBody struct {
	Path   string   `hcl:"path,optional"`
	SHA256 string   `hcl:"sha256,optional"`
	Config hcl.Body `hcl:",remain"`
}

func (l *loader) decodePlugins(blocks []*hcl.Block) {
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		name := b.Labels[0]
		if prev, dup := seen[name]; dup {
			l.errorf(b.LabelRanges[0], "Duplicate plugin", "A plugin named %q was already declared at %s; declare each plugin once.", name, pos(prev))
			continue
		}
		seen[name] = b.DefRange
		var pb pluginBody
		if !l.add(gohcl.DecodeBody(b.Body, l.ctx, &pb)) {
			continue
		}
		attrs := attrRanges(b.Body)
		if pb.SHA256 != "" {
			if d, err := hex.DecodeString(pb.SHA256); err != nil || len(d) != 32 {
				l.errorf(toHCLRange(attrs["sha256"]), "Invalid checksum",
					"sha256 must be the 64 hexadecimal digits sha256sum prints for the plugin binary, not %q.", pb.SHA256)
				continue
			}
		}
		if pb.SHA256 != "" && pb.Path == "" {
			l.errorf(toHCLRange(attrs["sha256"]), "Checksum without path",
				"sha256 checks the binary at path; a built-in plugin (no path) comes with xlbd and has none.")
			continue
		}
		path := pb.Path
		if path != "" && !filepath.IsAbs(path) {
			// Absolute, so that exec runs this file and never one of the
			// same name on $PATH (filepath.Join(".", "check") is "check").
			abs, err := filepath.Abs(filepath.Join(l.dir, path))
			if err != nil {
				l.errorf(toHCLRange(attrs["path"]), "Invalid plugin path", "%s cannot be made absolute (%v); write an absolute path.", path, err)
				continue
			}
			path = abs
		}
		l.out.Plugins = append(l.out.Plugins, Plugin{Name: name, Path: path, SHA256: strings.ToLower(pb.SHA256),
			Config: jsonObject(l.constants(pb.Config)), Range: toRange(b.DefRange), AttrRange: attrs})
	}
}

// jsonObject is m as one JSON object, keys sorted.
func jsonObject(m map[string]json.RawMessage) []byte {
	js, err := json.Marshal(m)
	if err != nil || len(m) == 0 {
		// constants made every value with ctyjson: only an empty m is here.
		return []byte("{}")
	}
	return js
}
