package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Conform checks values (a block's evaluated attributes) against a
// plugin's schema before the plugin sees them, as HCL does for a typed
// attribute: every attribute is declared, every required one is present,
// and a scalar of another type is converted to the declared one where HCL
// would ("8080" to a number, 8080 to a string, "true" to a bool); lists,
// maps and "any" are the plugin's to check. It returns the converted
// values (with an error, those it could convert, so that the plugin may
// still check them); each problem is an *sdk.ConfigError, joined with
// errors.Join.
// own are the attributes the host itself reads from the block, listed as
// accepted in the message. An empty schema checks nothing: the plugin did
// not describe its block.
func Conform(schema []sdk.Attribute, values map[string]json.RawMessage, own ...string) (map[string]json.RawMessage, error) {
	if len(schema) == 0 {
		return values, nil
	}
	out := maps.Clone(values)
	byName := map[string]sdk.Attribute{}
	for _, a := range schema {
		byName[a.Name] = a
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(values)) {
		a, ok := byName[name]
		if !ok {
			accepted := append(slices.Clone(own), slices.Sorted(maps.Keys(byName))...)
			errs = append(errs, &sdk.ConfigError{Attribute: name,
				Message: "not expected here" + pipeline.Suggest(name, accepted) + "; this block takes " + strings.Join(accepted, ", ")})
			delete(out, name)
			continue
		}
		v, err := convert(values[name], a.Type)
		if err != nil {
			errs = append(errs, &sdk.ConfigError{Attribute: name, Message: err.Error()})
			delete(out, name)
			continue
		}
		out[name] = v
	}
	for _, a := range schema {
		if _, ok := values[a.Name]; a.Required && !ok {
			errs = append(errs, &sdk.ConfigError{Message: fmt.Sprintf("the attribute %q is required (%s)", a.Name, a.Description)})
		}
	}
	return out, errors.Join(errs...)
}

// conformConfig is Conform for a plugin block's settings as the JSON
// object Spec.Config holds: the object the plugin is sent.
func conformConfig(schema []sdk.Attribute, config []byte) ([]byte, error) {
	if len(schema) == 0 {
		return config, nil
	}
	var values map[string]json.RawMessage
	if len(config) > 0 {
		if err := json.Unmarshal(config, &values); err != nil {
			return nil, &sdk.ConfigError{Message: "the settings are not a JSON object: " + err.Error()}
		}
	}
	out, err := Conform(schema, values)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return []byte("{}"), nil
	}
	return json.Marshal(out)
}

// convert converts a scalar v to typ ("string", "number", "bool") as HCL's
// type conversion does; other types pass unchanged.
func convert(v json.RawMessage, typ string) (json.RawMessage, error) {
	kind := jsonKind(v)
	if kind == typ || (typ != "string" && typ != "number" && typ != "bool") {
		return v, nil
	}
	var text string
	switch kind {
	case "string":
		json.Unmarshal(v, &text)
	case "number", "bool":
		text = string(v)
	default:
		return nil, fmt.Errorf("must be a %s, not a %s", typ, kind)
	}
	switch typ {
	case "string":
		return json.Marshal(text)
	case "number":
		var n json.Number
		if json.Unmarshal([]byte(text), &n) == nil {
			return json.RawMessage(n), nil
		}
	case "bool":
		if text == "true" || text == "false" {
			return json.RawMessage(text), nil
		}
	}
	return nil, fmt.Errorf("must be a %s, not %s", typ, v)
}

// jsonKind names the JSON kind of v in HCL's terms.
func jsonKind(v json.RawMessage) string {
	switch s := strings.TrimSpace(string(v)); {
	case s == "":
		return "nothing"
	case s[0] == '"':
		return "string"
	case s == "true" || s == "false":
		return "bool"
	case s[0] == '[':
		return "list"
	case s[0] == '{':
		return "object"
	case s == "null":
		return "null"
	}
	return "number"
}
