package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/etcdtest"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// refusals lists err's *sdk.ConfigError values as "attribute: message".
func refusals(err error) []string {
	var out []string
	for _, e := range sdk.Unjoin(err) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) {
			out = append(out, ce.Attribute+": "+ce.Message)
		} else {
			out = append(out, "not a ConfigError: "+e.Error())
		}
	}
	return out
}

// TestSettingsRefused: each bad setting is refused at its attribute, with
// a message that says why.
func TestSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	badCert := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(badCert, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := testCerts(t)
	_, otherKey := otherKeyFile(t)
	https := []string{"https://127.0.0.1:2379"}
	for _, tc := range []struct {
		cfg  []byte
		want string // "attribute: message fragment"
	}{
		{settingsJSON(nil, "endpoints", ""), `: the attribute "endpoints" is required`},
		{settingsJSON([]string{}), "endpoints: lists no endpoint"},
		{settingsJSON(make([]string, 65)), "endpoints: 65 endpoints, at most 64"},
		{settingsJSON([]string{"http://127.0.0.1:2379", "ftp://x:1"}), `endpoints[1]: "ftp://x:1": the scheme must be http or https`},
		{settingsJSON([]string{"http://127.0.0.1:2379", "https://x:1"}), `endpoints[1]: "https://x:1": every endpoint must use the scheme of the first ("http")`},
		{settingsJSON([]string{"http://127.0.0.1:2379/v3"}), `endpoints[0]: "http://127.0.0.1:2379/v3" is not an etcd client URL`},
		{settingsJSON([]string{"http://"}), `endpoints[0]: "http://" is not an etcd client URL`},
		{settingsJSON([]string{""}), `endpoints[0]: "" is not an etcd client URL`},
		{settingsJSON(https, "prefix", ""), `: the attribute "prefix" is required`},
		{settingsJSON(https, "prefix", `"/xlb/services"`), `prefix: "/xlb/services" must end with "/"`},
		{settingsJSON(https, "prefix", `""`), `prefix: "" must end with "/"`},
		{settingsJSON(https, "status_prefix", `"/xlb/status"`), `status_prefix: "/xlb/status" must end with "/"`},
		{settingsJSON(https, "status_prefix", `"/xlb/services/status/"`), `status_prefix: "/xlb/services/status/" overlaps prefix "/xlb/services/"`},
		{settingsJSON(https, "prefix", `"/"`), `status_prefix: "/xlb/status/" overlaps prefix "/"`},
		{settingsJSON(https, "lease_ttl", `"1s"`), "lease_ttl: 1s: must be from 2s to 1h0m0s"},
		{settingsJSON(https, "lease_ttl", `"2500ms"`), "lease_ttl: 2.5s: etcd's leases count whole seconds"},
		{settingsJSON(https, "lease_ttl", `"soon"`), `lease_ttl: "soon" is not a duration`},
		{settingsJSON(https, "dial_timeout", `"0s"`), "dial_timeout: 0s: must be from 100ms to 1m0s"},
		{settingsJSON(https, "username", `"xlb"`), "password: required with username"},
		{settingsJSON(https, "password", `"pw"`), "username: required with password"},
		{settingsJSON(https, "username", `"xlb"`, "password", `""`), "password: is empty"},
		{settingsJSON([]string{"http://127.0.0.1:2379"}, "ca_file", `"`+ca+`"`), "ca_file: needs https:// endpoints (TLS is off on http:// endpoints)"},
		{settingsJSON([]string{"127.0.0.1:2379"}, "server_name", `"etcd"`), "server_name: needs https:// endpoints (TLS is off on host:port endpoints)"},
		{settingsJSON(https, "ca_file", `"/nonexistent/ca.pem"`), "ca_file: open /nonexistent/ca.pem: no such file or directory"},
		{settingsJSON(https, "ca_file", `"`+junk+`"`), "ca_file: " + junk + ": no PEM certificate in it"},
		{settingsJSON(https, "ca_file", `"`+big+`"`), "ca_file: " + big + ": larger than 1048576 bytes"},
		{settingsJSON(https, "ca_file", `"`+badCert+`"`), "ca_file: " + badCert + ": x509:"},
		{settingsJSON(https, "cert_file", `"`+cert+`"`), "key_file: required with cert_file"},
		{settingsJSON(https, "key_file", `"`+key+`"`), "cert_file: required with key_file"},
		{settingsJSON(https, "cert_file", `"`+junk+`"`, "key_file", `"`+key+`"`), "cert_file: " + junk + ": no PEM certificate in it"},
		{settingsJSON(https, "cert_file", `"`+cert+`"`, "key_file", `"`+junk+`"`), "key_file: " + junk + ": tls:"},
		{settingsJSON(https, "cert_file", `"`+cert+`"`, "key_file", `"`+otherKey+`"`), "key_file: " + otherKey + ": tls: private key does not match public key"},
		{settingsJSON(https, "cert_file", `"`+cert+`"`, "key_file", `"/nonexistent/k"`), "key_file: open /nonexistent/k: no such file or directory"},
		{settingsJSON(https, "server_name", `""`), "server_name: is empty"},
	} {
		_, err := parseSettings(tc.cfg)
		got := refusals(err)
		attr, msg, _ := strings.Cut(tc.want, ": ")
		if len(got) != 1 || !strings.HasPrefix(got[0], attr+": ") || !strings.Contains(got[0], msg) {
			t.Errorf("%s: refused with %q, want one refusal %q", tc.cfg, got, tc.want)
		}
	}
}

func TestSettingsDefaults(t *testing.T) {
	s, err := parseSettings([]byte(`{"endpoints": ["http://127.0.0.1:2379"], "prefix": "/xlb/services/", "username": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.StatusPrefix != "/xlb/status/" || s.LeaseTTL != 10*time.Second || s.DialTimeout != 5*time.Second || s.TLS != nil || s.Username != "" {
		t.Errorf("defaults: %+v", s)
	}
	ca, cert, key := testCerts(t)
	s, err = parseSettings(settingsJSON([]string{"https://a:1", "https://b:2"}, "ca_file", `"`+ca+`"`, "cert_file", `"`+cert+`"`,
		"key_file", `"`+key+`"`, "server_name", `"etcd.example"`, "lease_ttl", `"30s"`, "username", `"u"`, "password", `"p"`))
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS == nil || s.TLS.RootCAs == nil || len(s.TLS.Certificates) != 1 || s.TLS.ServerName != "etcd.example" || s.LeaseTTL != 30*time.Second || s.Username != "u" || s.Password != "p" {
		t.Errorf("TLS settings: %+v", s)
	}
}

// TestSchema: the schema names every attribute the settings take.
func TestSchema(t *testing.T) {
	var names []string
	for _, a := range schema {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, " "); got != "endpoints prefix status_prefix lease_ttl dial_timeout username password ca_file cert_file key_file server_name" {
		t.Errorf("schema: %s", got)
	}
}

func testCerts(t *testing.T) (ca, cert, key string) {
	f := etcdtest.WriteCerts(t, t.TempDir())
	return f.CA, f.Cert, f.Key
}

// otherKeyFile is a key that matches no certificate of testCerts.
func otherKeyFile(t *testing.T) (string, string) {
	f := etcdtest.WriteCerts(t, t.TempDir())
	return f.Cert, f.Key
}
