package host

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/plugins/sdk"
)

func TestConform(t *testing.T) {
	schema := []sdk.Attribute{
		{Name: "path", Type: "string"},
		{Name: "retries", Type: "number"},
		{Name: "tls", Type: "bool"},
		{Name: "expect", Type: "any"},
		{Name: "zone", Type: "string", Required: true, Description: "the zone to query"},
	}
	for _, tc := range []struct {
		in, want string // JSON objects; want "" means refused
		errs     []string
	}{
		{`{"zone":"a."}`, `{"zone":"a."}`, nil},
		{`{"zone":"a.","path":8080,"retries":"3","tls":"true","expect":[1,"2"]}`,
			`{"expect":[1,"2"],"path":"8080","retries":3,"tls":true,"zone":"a."}`, nil},
		{`{"zone":"a.","tls":false,"path":true}`, `{"path":"true","tls":false,"zone":"a."}`, nil},
		{`{"zone":"a.","retries":"three"}`, "", []string{`retries: must be a number, not "three"`}},
		{`{"zone":"a.","tls":"yes","path":["x"]}`, "", []string{"path: must be a string, not a list", `tls: must be a bool, not "yes"`}},
		{`{"colour":"red"}`, "", []string{"colour: not expected here; this block takes port, expect, path, retries, tls, zone",
			`the attribute "zone" is required (the zone to query)`}},
		{`{"zone":"a.","retris":3,"potr":1}`, "", []string{`potr: not expected here (did you mean "port"?); this block takes port, expect, path, retries, tls, zone`,
			`retris: not expected here (did you mean "retries"?); this block takes port, expect, path, retries, tls, zone`}},
		{`{"colour":"red"}`, "", []string{"colour: not expected here; this block takes port, expect, path, retries, tls, zone", `the attribute "zone" is required (the zone to query)`}},
	} {
		var in map[string]json.RawMessage
		if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
			t.Fatal(err)
		}
		out, err := Conform(schema, in, "port")
		var got []string
		for _, e := range sdk.Unjoin(err) {
			var ce *sdk.ConfigError
			if !errors.As(e, &ce) {
				t.Errorf("%s: %v is not a ConfigError", tc.in, e)
			}
			got = append(got, e.Error())
		}
		if strings.Join(got, "|") != strings.Join(tc.errs, "|") {
			t.Errorf("%s: errors %q, want %q", tc.in, got, tc.errs)
		}
		if tc.want != "" {
			js, _ := json.Marshal(out)
			if string(js) != tc.want {
				t.Errorf("%s: conformed to %s, want %s", tc.in, js, tc.want)
			}
		}
	}
	// No schema: the plugin checks everything itself.
	in := map[string]json.RawMessage{"x": json.RawMessage(`1`)}
	if out, err := Conform(nil, in); err != nil || len(out) != 1 {
		t.Errorf("no schema: %v, %v", out, err)
	}
}
