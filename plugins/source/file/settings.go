package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/xlbproject/xlb/plugins/builtin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Version is reported in Info.
const Version = "0.1.0"

const (
	defaultDebounce = 200 * time.Millisecond
	// maxDebounce bounds the quiet period: longer, and an operator would
	// wait for a change without knowing why.
	maxDebounce = 10 * time.Second
	// maxPaths keeps a settings block from asking for thousands of
	// watches; a node has a few config trees.
	maxPaths = 64
)

// settings is the plugin's validated HCL block.
type settings struct {
	Paths    []string // cleaned, as written (relative to the working directory)
	Debounce time.Duration
}

// schema is the settings block, as Info.Schema.
var schema = builtin.FileSettings

// parseSettings validates a settings block, reporting every problem at
// its attribute, all of them at once.
func parseSettings(js []byte) (settings, error) {
	var m map[string]json.RawMessage
	if err := sdk.DecodeConfig(js, &m); err != nil {
		return settings{}, err
	}
	// In HCL an attribute set to null is one left out.
	maps.DeleteFunc(m, func(_ string, v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" })
	var errs sdk.ConfigErrors
	refuse := errs.Add
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.ContainsFunc(schema, func(a sdk.Attribute) bool { return a.Name == k }) {
			refuse(k, "not expected here; the file source takes paths and debounce")
		}
	}
	s := settings{Debounce: defaultDebounce}
	if raw, ok := m["paths"]; !ok {
		refuse("", `the attribute "paths" is required`)
	} else {
		s.Paths = parsePaths(raw, refuse)
	}
	if raw, ok := m["debounce"]; ok {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			refuse("debounce", `must be a duration string ("200ms")`)
		} else if d, err := time.ParseDuration(str); err != nil {
			refuse("debounce", `%q is not a duration ("200ms", "1s")`, str)
		} else if d < 0 || d > maxDebounce {
			refuse("debounce", "%v: must be from 0s to %v", d, maxDebounce)
		} else {
			s.Debounce = d
		}
	}
	if err := errs.Err(); err != nil {
		return settings{}, err
	}
	return s, nil
}

func parsePaths(raw json.RawMessage, refuse func(attr, format string, a ...any)) []string {
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		refuse("paths", "must be a list of strings")
		return nil
	}
	switch {
	case len(list) == 0:
		refuse("paths", "lists no file or directory: the source would have nothing to watch")
		return nil
	case len(list) > maxPaths:
		refuse("paths", "%d paths, at most %d", len(list), maxPaths)
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, p := range list {
		if p == "" {
			refuse(fmt.Sprintf("paths[%d]", i), "is empty; write \".\" for the main file's directory")
			continue
		}
		p = filepath.Clean(p)
		if j, dup := seen[p]; dup {
			refuse(fmt.Sprintf("paths[%d]", i), "%q is already paths[%d]", p, j)
			continue
		}
		seen[p] = i
		out = append(out, p)
	}
	return out
}
