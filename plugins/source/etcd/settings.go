package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/xlbproject/xlb/plugins/builtin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Defaults and bounds, documented in README.md.
const (
	defaultStatusPrefix = "/xlb/status/"
	defaultLeaseTTL     = 10 * time.Second
	defaultDialTimeout  = 5 * time.Second
	// minLeaseTTL leaves a keep-alive (sent every third of the TTL) a
	// chance to arrive before the lease ends; etcd's leases count whole
	// seconds.
	minLeaseTTL    = 2 * time.Second
	maxLeaseTTL    = time.Hour
	minDialTimeout = 100 * time.Millisecond
	maxDialTimeout = time.Minute
	maxEndpoints   = 64
	// maxFileSize bounds a CA, certificate or key file: real ones are a
	// few KiB, and a path set to a large file by mistake must not be read
	// into memory.
	maxFileSize = 1 << 20
)

// settings is the plugin's validated block.
type settings struct {
	Endpoints    []string
	Prefix       string
	StatusPrefix string
	LeaseTTL     time.Duration
	DialTimeout  time.Duration
	Username     string
	Password     string
	TLS          *tls.Config // nil: plain TCP
	// files is what the TLS files held, to tell a Configure that only
	// repeats the settings from one made after the files were renewed.
	files []byte
}

var schema = builtin.EtcdSettings

// rawSettings is the block as the host sends it: attributes left out (or
// set to null) are nil.
type rawSettings struct {
	Endpoints    []string `json:"endpoints"`
	Prefix       *string  `json:"prefix"`
	StatusPrefix *string  `json:"status_prefix"`
	LeaseTTL     *string  `json:"lease_ttl"`
	DialTimeout  *string  `json:"dial_timeout"`
	Username     *string  `json:"username"`
	Password     *string  `json:"password"`
	CAFile       *string  `json:"ca_file"`
	CertFile     *string  `json:"cert_file"`
	KeyFile      *string  `json:"key_file"`
	ServerName   *string  `json:"server_name"`
}

// errs collects the refusals, and the contents of the files read.
type errs struct {
	sdk.ConfigErrors
	files []byte
}

// parseSettings validates a settings block, reporting every problem at its
// attribute. Relative file names are relative to the working directory,
// which the host sets to the main configuration file's.
func parseSettings(js []byte) (*settings, error) {
	var r rawSettings
	if err := sdk.DecodeConfig(js, &r); err != nil {
		return nil, err
	}
	var e errs
	s := &settings{StatusPrefix: defaultStatusPrefix, LeaseTTL: defaultLeaseTTL, DialTimeout: defaultDialTimeout}
	scheme := e.endpoints(r.Endpoints)
	s.Endpoints = r.Endpoints
	ok := false
	if r.Prefix == nil {
		e.Add("", `the attribute "prefix" is required`)
	} else {
		s.Prefix = *r.Prefix
		ok = e.prefix("prefix", s.Prefix)
	}
	if r.StatusPrefix != nil {
		s.StatusPrefix = *r.StatusPrefix
		ok = e.prefix("status_prefix", s.StatusPrefix) && ok
	}
	if ok && (strings.HasPrefix(s.StatusPrefix, s.Prefix) || strings.HasPrefix(s.Prefix, s.StatusPrefix)) {
		e.Add("status_prefix", "%q overlaps prefix %q: nodes' states would be read as configuration, or configuration as states", s.StatusPrefix, s.Prefix)
	}
	if d, ok := e.duration("lease_ttl", r.LeaseTTL, minLeaseTTL, maxLeaseTTL); ok {
		if d%time.Second != 0 {
			e.Add("lease_ttl", "%v: etcd's leases count whole seconds", d)
		} else {
			s.LeaseTTL = d
		}
	}
	if d, ok := e.duration("dial_timeout", r.DialTimeout, minDialTimeout, maxDialTimeout); ok {
		s.DialTimeout = d
	}
	switch {
	case r.Username != nil && r.Password == nil:
		e.Add("password", "required with username")
	case r.Username == nil && r.Password != nil:
		e.Add("username", "required with password")
	case r.Username != nil:
		if *r.Username == "" {
			e.Add("username", "is empty")
		}
		if *r.Password == "" {
			// The client would skip authentication without a word.
			e.Add("password", "is empty")
		}
		s.Username, s.Password = *r.Username, *r.Password
	}
	s.TLS = e.tls(r, scheme)
	if err := e.Err(); err != nil {
		return nil, err
	}
	s.files = e.files
	return s, nil
}

// endpoints checks the endpoints and returns their common scheme ("" for
// host:port without one).
func (e *errs) endpoints(eps []string) string {
	switch {
	case eps == nil:
		e.Add("", `the attribute "endpoints" is required`)
		return ""
	case len(eps) == 0:
		e.Add("endpoints", "lists no endpoint")
		return ""
	case len(eps) > maxEndpoints:
		e.Add("endpoints", "%d endpoints, at most %d", len(eps), maxEndpoints)
		return ""
	}
	first := ""
	for i, ep := range eps {
		at := fmt.Sprintf("endpoints[%d]", i)
		scheme, host := "", ep
		if i := strings.Index(ep, "://"); i >= 0 {
			u, err := url.Parse(ep)
			if err != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
				e.Add(at, "%q is not an etcd client URL (scheme://host:port)", ep)
				continue
			}
			scheme, host = u.Scheme, u.Host
		}
		switch scheme {
		case "", "http", "https":
			if host == "" || strings.ContainsAny(host, "/ ") {
				e.Add(at, "%q is not an etcd client URL (scheme://host:port)", ep)
				continue
			}
		default:
			e.Add(at, "%q: the scheme must be http or https", ep)
			continue
		}
		if i == 0 {
			first = scheme
		} else if scheme != first {
			// The client connects to every endpoint with the credentials
			// the first one's scheme chooses.
			e.Add(at, "%q: every endpoint must use the scheme of the first (%q)", ep, first)
		}
	}
	return first
}

// prefix checks a key prefix.
func (e *errs) prefix(attr, p string) bool {
	if !strings.HasSuffix(p, "/") {
		// Without it "/xlb/services" would also take "/xlb/services-old/...".
		e.Add(attr, `%q must end with "/", so that it takes whole path components only`, p)
		return false
	}
	return true
}

// duration reads an optional duration in [lo, hi].
func (e *errs) duration(attr string, v *string, lo, hi time.Duration) (time.Duration, bool) {
	if v == nil {
		return 0, false
	}
	d, err := time.ParseDuration(*v)
	if err != nil {
		e.Add(attr, "%q is not a duration (\"10s\")", *v)
		return 0, false
	}
	if d < lo || d > hi {
		e.Add(attr, "%v: must be from %v to %v", d, lo, hi)
		return 0, false
	}
	return d, true
}

// tls reads the TLS files; nil when the block asks for no TLS and the
// endpoints are not https.
func (e *errs) tls(r rawSettings, scheme string) *tls.Config {
	asked := r.CAFile != nil || r.CertFile != nil || r.KeyFile != nil || r.ServerName != nil
	if !asked {
		return nil
	}
	for _, a := range []struct {
		name string
		v    *string
	}{{"ca_file", r.CAFile}, {"cert_file", r.CertFile}, {"key_file", r.KeyFile}, {"server_name", r.ServerName}} {
		if a.v != nil && scheme != "https" {
			// The client drops credentials on http:// endpoints: the
			// setting would be ignored without a word.
			e.Add(a.name, "needs https:// endpoints (TLS is off on %s)", map[string]string{"": "host:port endpoints", "http": "http:// endpoints"}[scheme])
			return nil
		}
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.ServerName != nil {
		if *r.ServerName == "" {
			e.Add("server_name", "is empty")
		}
		c.ServerName = *r.ServerName
	}
	if r.CAFile != nil {
		if pem, ok := e.file("ca_file", *r.CAFile); ok {
			pool := x509.NewCertPool()
			if certs := e.certs("ca_file", *r.CAFile, pem); certs != nil {
				for _, crt := range certs {
					pool.AddCert(crt)
				}
				c.RootCAs = pool
			}
		}
	}
	switch {
	case r.CertFile != nil && r.KeyFile == nil:
		e.Add("key_file", "required with cert_file")
	case r.CertFile == nil && r.KeyFile != nil:
		e.Add("cert_file", "required with key_file")
	case r.CertFile != nil:
		certPEM, okc := e.file("cert_file", *r.CertFile)
		if okc && e.certs("cert_file", *r.CertFile, certPEM) == nil {
			okc = false
		}
		keyPEM, okk := e.file("key_file", *r.KeyFile)
		if okc && okk {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				e.Add("key_file", "%s: %v", *r.KeyFile, err)
			} else {
				c.Certificates = []tls.Certificate{pair}
			}
		}
	}
	return c
}

// file reads a small file.
func (e *errs) file(attr, name string) ([]byte, bool) {
	if name == "" {
		e.Add(attr, "is empty")
		return nil, false
	}
	f, err := os.Open(name)
	if err != nil {
		e.Add(attr, "%v", err)
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		e.Add(attr, "%s: %v", name, err)
		return nil, false
	}
	if len(b) > maxFileSize {
		e.Add(attr, "%s: larger than %d bytes: not a PEM certificate or key", name, maxFileSize)
		return nil, false
	}
	e.files = append(e.files, b...)
	return b, true
}

// certs parses the PEM certificates of a file, refusing one without any.
func (e *errs) certs(attr, name string, data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			e.Add(attr, "%s: %v", name, err)
			return nil
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		e.Add(attr, "%s: no PEM certificate in it", name)
	}
	return out
}
