package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Client calls the API on a unix socket, or over TCP (xlbd run
// -admin-listen).
type Client struct {
	// Socket is the unix socket's path; "" over TCP.
	Socket string
	base   string // the URL paths are appended to
	http   *http.Client
}

// NewClient returns a client of the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{Socket: socket, base: "http://xlbd", http: &http.Client{Transport: tr}}
}

// NewTCPClient returns a client of the daemon at base, an http:// or
// https:// URL of host and port. Over https it presents the certificate
// of the PEM files cert and key (xlbd asks for one) and trusts the
// server's certificate when a CA of the PEM file ca signed it (none: the
// system's roots).
func NewTCPClient(base, cert, key, ca string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%q: want http://HOST:PORT or https://HOST:PORT (xlbd run -admin-listen), or a unix socket's path", base)
	}
	tr := &http.Transport{}
	if u.Scheme == "https" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13}
		if cert != "" || key != "" {
			c, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		if ca != "" {
			if cfg.RootCAs, err = certPool(ca, "--tls-ca"); err != nil {
				return nil, err
			}
		}
		tr.TLSClientConfig = cfg
	} else if cert != "" || key != "" || ca != "" {
		return nil, fmt.Errorf("--tls-cert, --tls-key and --tls-ca need an https:// address, not %s", base)
	}
	return &Client{base: u.Scheme + "://" + u.Host, http: &http.Client{Transport: tr}}, nil
}

// APIError is an error the daemon answered with.
type APIError struct {
	Code int
	Body Error
}

func (e *APIError) Error() string {
	if e.Body.Diagnostics != "" {
		return e.Body.Error + "\n" + e.Body.Diagnostics
	}
	return e.Body.Error
}

// Get decodes GET path into out; a *[]byte gets the body as it is.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// Post sends in (nil: no body; []byte: as it is) to path and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	return c.do(ctx, http.MethodPost, path, in, out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	switch in := in.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(in)
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Code: resp.StatusCode}
		if json.Unmarshal(b, &e.Body) != nil || e.Body.Error == "" {
			e.Body.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return e
	}
	switch out := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// dialError names the fix for the ways a daemon cannot be reached.
func (c *Client) dialError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	switch {
	case c.Socket == "" && errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("xlbd is not answering on %s: start it with -admin-listen, or pass -s", c.base)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w: pass --tls-ca with the CA that signed xlbd's certificate (-admin-tls-cert)", err)
	case strings.Contains(err.Error(), "tls: certificate required"), strings.Contains(err.Error(), "tls: unknown certificate authority"):
		return fmt.Errorf("%w: xlbd takes only clients with a certificate that its -admin-tls-client-ca signed: pass --tls-cert and --tls-key", err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("xlbd is not running (no socket at %s): start it, or pass -s", c.Socket)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied on %s: run as root, or join the admin socket's group (xlbd run -admin-group)", c.Socket)
	}
	return err
}
