// Package httpcheck is xlb's HTTP(S) health check, after keepalived's
// HTTP_GET/SSL_GET and HAProxy's "option httpchk" with "http-check
// expect": a backend passes when a request to it returns an expected
// status (RFC 9110 §15) and, optionally, a body matching a regexp, within
// the check timeout. A batch of targets is probed concurrently by a bounded
// pool of workers. The plugin binary is plugins/healthcheck/http; Checker
// is usable in-process too.
package httpcheck

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/probe"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Version is this checker's own version, reported in Info.
const Version = "0.1.0"

// MaxBody is how much of a response body body_match sees.
const MaxBody = 64 << 10

// Params are one health_check block's parameters: what to request and
// what to expect. The port is the target's (the health check's port), or
// 80, or 443 with TLS.
type Params struct {
	Method string
	// Path is the request target: an absolute path with an optional query.
	Path string
	// ExpectStatus are the passing status codes.
	ExpectStatus StatusSet
	// BodyMatch, if set, must match the first MaxBody bytes of the body.
	BodyMatch *regexp.Regexp
	// Host is the Host header (and the TLS server name when TLSServerName
	// is empty); empty means the target's address.
	Host          string
	TLS           bool
	TLSVerify     bool
	TLSServerName string
}

// DefaultParams are the parameters of a health_check "http" block that
// sets none.
func DefaultParams() Params {
	return Params{
		Method:       http.MethodGet,
		Path:         "/",
		ExpectStatus: StatusSet{{200, 399}},
		TLSVerify:    true,
	}
}

// StatusSet is a set of status codes as inclusive ranges.
type StatusSet [][2]int

// ParseStatusSet reads codes and ranges ("200", "200-399"), several per
// string separated by commas or spaces.
func ParseStatusSet(specs []string) (StatusSet, error) {
	var set StatusSet
	for _, spec := range specs {
		for _, f := range strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == ' ' }) {
			lo, hi, isRange := strings.Cut(f, "-")
			if !isRange {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || l < 100 || h > 599 || l > h {
				return nil, fmt.Errorf("%q is not a status code (100-599) or a range of them like \"200-399\"", f)
			}
			set = append(set, [2]int{l, h})
		}
	}
	if len(set) == 0 {
		return nil, errors.New("must list at least one status code")
	}
	return set, nil
}

// Contains reports whether code is in s.
func (s StatusSet) Contains(code int) bool {
	for _, r := range s {
		if code >= r[0] && code <= r[1] {
			return true
		}
	}
	return false
}

// ParseParams reads one health_check block's parameters (a JSON object);
// each bad attribute is a *sdk.ConfigError, joined with errors.Join.
func ParseParams(params []byte) (Params, error) {
	var raw struct {
		Method        json.RawMessage `json:"method"`
		Path          json.RawMessage `json:"path"`
		ExpectStatus  json.RawMessage `json:"expect_status"`
		BodyMatch     json.RawMessage `json:"body_match"`
		Host          json.RawMessage `json:"host"`
		TLS           json.RawMessage `json:"tls"`
		TLSVerify     json.RawMessage `json:"tls_verify"`
		TLSServerName json.RawMessage `json:"tls_server_name"`
	}
	c := DefaultParams()
	if err := probe.Decode(params, &raw); err != nil {
		return c, err
	}
	var bodyMatch string
	errs := []error{
		probe.String("method", raw.Method, &c.Method),
		probe.String("path", raw.Path, &c.Path),
		probe.String("body_match", raw.BodyMatch, &bodyMatch),
		probe.String("host", raw.Host, &c.Host),
		probe.Bool("tls", raw.TLS, &c.TLS),
		probe.Bool("tls_verify", raw.TLSVerify, &c.TLSVerify),
		probe.String("tls_server_name", raw.TLSServerName, &c.TLSServerName),
	}
	bad := func(attr, msg string) { errs = append(errs, &sdk.ConfigError{Attribute: attr, Message: msg}) }
	if !validMethod(c.Method) {
		bad("method", fmt.Sprintf("%q is not an HTTP method (an upper-case token such as GET or HEAD)", c.Method))
	}
	if u, err := url.ParseRequestURI(c.Path); err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(c.Path, "/") {
		bad("path", fmt.Sprintf("%q is not an absolute path such as \"/healthz\"", c.Path))
	}
	if specs, ok, err := probe.Strings("expect_status", raw.ExpectStatus); err != nil {
		errs = append(errs, err)
	} else if ok {
		if c.ExpectStatus, err = ParseStatusSet(specs); err != nil {
			bad("expect_status", err.Error())
		}
	}
	if bodyMatch != "" {
		var err error
		if c.BodyMatch, err = regexp.Compile(bodyMatch); err != nil {
			bad("body_match", "not a regular expression: "+err.Error())
		} else if c.Method == http.MethodHead {
			bad("body_match", "a HEAD response has no body to match")
		}
	}
	if strings.ContainsAny(c.Host, " /\r\n\t") {
		bad("host", fmt.Sprintf("%q is not a host name", c.Host))
	}
	if !c.TLS && (c.TLSServerName != "" || !c.TLSVerify) {
		bad("tls", "tls_verify and tls_server_name need tls = true")
	}
	return c, errors.Join(errs...)
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// state is one block's parameters with the transport they need.
type state struct {
	cfg    Params
	client *http.Client
}

// Checker is the http health checker; its plugin block sets concurrency.
// The zero value is not ready: use New. Check, Configure and ParseParams
// may be called concurrently.
type Checker struct {
	probe.Concurrency
	// def serves targets without Params (a direct in-process caller).
	def *state
}

// New returns a Checker with the default concurrency and parameters.
func New() *Checker { return &Checker{def: newState(DefaultParams())} }

func newState(cfg Params) *state {
	serverName := cfg.TLSServerName
	if serverName == "" {
		serverName = cfg.Host
	}
	tr := &http.Transport{
		// Never the environment's proxy: the check is of the backend.
		Proxy:       nil,
		DialContext: (&net.Dialer{}).DialContext,
		// A fresh connection per probe, as keepalived and HAProxy do: a
		// reused connection can keep answering from a worker whose accept
		// loop is dead, and a check should see what a new flow would.
		DisableKeepAlives:  true,
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
		// Skip Go's 1 s wait for a 100-continue that health checks never
		// send, and keep all of the check's time for the response.
		ExpectContinueTimeout: 0,
		TLSClientConfig: &tls.Config{
			ServerName:         serverName,
			InsecureSkipVerify: !cfg.TLSVerify,
		},
		MaxResponseHeaderBytes: MaxBody,
	}
	return &state{cfg: cfg, client: &http.Client{
		Transport: tr,
		// A redirect is a response like any other: expect_status decides.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// ParseParams reads a block's parameters into the state its targets are
// checked with (the SDK caches it per block).
func (c *Checker) ParseParams(params []byte) (any, error) {
	p, err := ParseParams(params)
	if err != nil {
		return nil, err
	}
	return newState(p), nil
}

// Describe reports the version and the schemas.
func (c *Checker) Describe() sdk.Info {
	return sdk.Info{Version: Version, Schema: []sdk.Attribute{
		probe.ConcurrencyAttribute,
	}, Params: []sdk.Attribute{
		{Name: "method", Type: "string", Description: "request method (default GET)"},
		{Name: "path", Type: "string", Description: "request path and query (default /)"},
		{Name: "expect_status", Type: "any", Description: "passing status codes and ranges, a string or a list: \"200\", \"200-399\" (default 200-399)"},
		{Name: "body_match", Type: "string", Description: "regular expression the first 64 KiB of the body must match"},
		{Name: "host", Type: "string", Description: "Host header and default TLS server name (default the target's address)"},
		{Name: "tls", Type: "bool", Description: "use HTTPS"},
		{Name: "tls_verify", Type: "bool", Description: "verify the server's certificate (default true)"},
		{Name: "tls_server_name", Type: "string", Description: "TLS server name (SNI and verification; default host)"},
	}}
}

// Check sends the request to every target; ctx's deadline bounds each
// request, from connect to the end of the body read.
func (c *Checker) Check(ctx context.Context, targets []sdk.Target) []sdk.Result {
	return probe.Run(ctx, targets, c.Load(), func(ctx context.Context, t sdk.Target) sdk.Result {
		st, _ := t.Params.(*state)
		if st == nil {
			st = c.def
		}
		return st.check(ctx, t)
	})
}

func (st *state) check(ctx context.Context, t sdk.Target) sdk.Result {
	cfg := &st.cfg
	port, scheme := int(t.Port), "http"
	if cfg.TLS {
		scheme = "https"
	}
	if port == 0 {
		port = 80
		if cfg.TLS {
			port = 443
		}
	}
	u := scheme + "://" + net.JoinHostPort(t.Address, strconv.Itoa(port)) + cfg.Path
	req, err := http.NewRequestWithContext(ctx, cfg.Method, u, nil)
	if err != nil {
		return probe.Fail(err)
	}
	if cfg.Host != "" {
		req.Host = cfg.Host
	}
	req.Header.Set("User-Agent", "xlb-healthcheck/"+Version)
	resp, err := st.client.Do(req)
	if err != nil {
		return probe.Fail(unwrapURLError(err))
	}
	defer resp.Body.Close()
	if !cfg.ExpectStatus.Contains(resp.StatusCode) {
		return sdk.Result{Status: sdk.StatusFail, Message: "status " + strconv.Itoa(resp.StatusCode)}
	}
	if cfg.BodyMatch != nil {
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
		if err != nil {
			return probe.Fail(fmt.Errorf("reading the body: %w", err))
		}
		if !cfg.BodyMatch.Match(body) {
			return sdk.Result{Status: sdk.StatusFail, Message: fmt.Sprintf("status %d, body does not match %q", resp.StatusCode, cfg.BodyMatch)}
		}
	}
	return sdk.Result{Status: sdk.StatusPass, Message: "status " + strconv.Itoa(resp.StatusCode)}
}

// unwrapURLError drops *url.Error's "Get \"http://...\": " prefix: the host
// already knows the target, and messages stay short.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

var (
	_ sdk.HealthChecker = (*Checker)(nil)
	_ sdk.Describer     = (*Checker)(nil)
	_ sdk.Configurer    = (*Checker)(nil)
	_ sdk.ParamsParser  = (*Checker)(nil)
)
