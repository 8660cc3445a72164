package hcl

import (
	"encoding/hex"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Plugin is a plugin block: the binary that serves the health-check method
// named by its label, checked against SHA256 before every launch when set.
type Plugin struct {
	Name   string
	Path   string // absolute, or relative to the file's directory when written so
	SHA256 string // lower-case hex; empty: not checked
	Range  hcl.Range
}

type pluginBody struct {
	Path   string `hcl:"path"`
	SHA256 string `hcl:"sha256,optional"`
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
		path := pb.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(l.dir, path)
		}
		l.out.Plugins = append(l.out.Plugins, Plugin{Name: name, Path: path, SHA256: strings.ToLower(pb.SHA256), Range: b.DefRange})
	}
}
