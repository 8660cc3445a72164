package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// TestSettingsRefused sends bad settings blocks through the SDK: each
// problem is refused at its attribute, all of them at once.
func TestSettingsRefused(t *testing.T) {
	c := dispense(t, newSource(quietLog()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tt := range []struct {
		config string
		want   []string // "attribute: message fragment"
	}{
		{`{}`, []string{`: the attribute "paths" is required`}},
		{`{"paths": null}`, []string{`: the attribute "paths" is required`}},
		{`{"paths": []}`, []string{"paths: lists no file"}},
		{`{"paths": "services.d"}`, []string{"paths: must be a list of strings"}},
		{`{"paths": ["a", ""]}`, []string{"paths[1]: is empty"}},
		{`{"paths": ["a", "b", "./a/"]}`, []string{`paths[2]: "a" is already paths[0]`}},
		{`{"paths": ["a"], "debounce": "fast"}`, []string{`debounce: "fast" is not a duration`}},
		{`{"paths": ["a"], "debounce": "-1s"}`, []string{"debounce: -1s: must be from 0s to 10s"}},
		{`{"paths": ["a"], "debounce": "11s"}`, []string{"debounce: 11s: must be from 0s to 10s"}},
		{`{"paths": ["a"], "debounce": 5}`, []string{"debounce: must be a duration string"}},
		{`{"paths": ["a"], "debounse": "1s"}`, []string{"debounse: not expected here"}},
		{`{"paths": [""], "debounce": "x", "recursive": true}`, []string{"recursive: not expected", "paths[0]: is empty", `debounce: "x" is not`}},
	} {
		err := c.Configure(ctx, []byte(tt.config))
		errs := sdk.Unjoin(err)
		if len(errs) != len(tt.want) {
			t.Errorf("Configure(%s) = %v, want %d errors", tt.config, err, len(tt.want))
			continue
		}
		for i, e := range errs {
			var ce *sdk.ConfigError
			if !errors.As(e, &ce) || !strings.HasPrefix(ce.Attribute+": "+ce.Message, tt.want[i]) {
				t.Errorf("Configure(%s): error %d = %#v, want %q", tt.config, i, e, tt.want[i])
				continue
			}
			if at, _, _ := strings.Cut(tt.want[i], ":"); ce.Attribute != at {
				t.Errorf("Configure(%s): error %q at %q, want at %q", tt.config, ce.Message, ce.Attribute, at)
			}
		}
	}
	for _, ok := range []string{`{"paths": ["a"]}`, `{"paths": ["a", "b/c.hcl"], "debounce": "0s"}`, `{"paths": ["."], "debounce": "10s"}`, `{"paths": ["a"], "debounce": null}`} {
		if err := c.Configure(ctx, []byte(ok)); err != nil {
			t.Errorf("Configure(%s): %v", ok, err)
		}
	}
}

// TestSettingsDefaults checks what an omitted attribute means.
func TestSettingsDefaults(t *testing.T) {
	s, err := parseSettings([]byte(`{"paths": ["./services.d/", "extra.hcl"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Debounce != defaultDebounce || strings.Join(s.Paths, " ") != "services.d extra.hcl" {
		t.Errorf("settings = %+v, want paths cleaned and debounce %v", s, defaultDebounce)
	}
}

// TestWatchUnconfigured: a Watch before Configure fails, saying why.
func TestWatchUnconfigured(t *testing.T) {
	c := dispense(t, newSource(quietLog()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.Watch(ctx, func(sdk.ConfigUpdate) error { return errors.New("no update expected") })
	if err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("Watch before Configure: %v", err)
	}
}
