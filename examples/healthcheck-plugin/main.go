// Command redis-check is an xlb health-checker plugin written the way a
// third party would write one: its own module, importing only
// github.com/xlbproject/xlb/plugins/sdk. A backend passes when it answers
// a Redis PING with PONG (RESP, https://redis.io/docs/latest/develop/reference/protocol-spec/),
// after AUTH when a password is configured. It is the check keepalived
// users write as a MISC_CHECK script around "redis-cli ping", done in
// process for a whole batch of targets at once.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// version is this plugin's own version, reported to xlbd in Info.
const version = "0.1.0"

// defaultTimeout bounds a probe when the batch's context has no deadline
// (xlbd always sends one; a direct caller, such as a test, may not).
const defaultTimeout = time.Second

// maxReply is the longest reply line read: PONG, OK and error lines are
// short, and a server that sends more is not speaking RESP to us.
const maxReply = 512

// defaultPort is probed when the health check sets no port.
const defaultPort = 6379

// params are one health_check "redis" block's parameters, read from the
// JSON object xlbd sends with each batch (parsed once per block by the
// SDK, see ParseParams).
type params struct {
	// Username and Password are sent with AUTH before PING when Password
	// is set; Username is for Redis 6 ACL users ("default" when empty).
	Username, Password string
}

// checker is the plugin. Check, Configure and ParseParams may be called
// concurrently.
type checker struct {
	// concurrency is the most probes in flight at once: the plugin
	// block's setting, for the whole process.
	concurrency atomic.Int64
}

func newChecker() *checker {
	c := &checker{}
	c.concurrency.Store(256)
	return c
}

// Describe reports the plugin's version and the schemas of its plugin
// block (Schema) and of its health_check blocks (Params). The SDK fills in
// the kind and protocol versions.
func (c *checker) Describe() sdk.Info {
	return sdk.Info{Version: version, Schema: []sdk.Attribute{
		{Name: "concurrency", Type: "number", Description: "most probes in flight at once (default 256)"},
	}, Params: []sdk.Attribute{
		{Name: "username", Type: "string", Description: "ACL user for AUTH (Redis 6+); needs password"},
		{Name: "password", Type: "string", Description: "send AUTH with this password before PING"},
	}}
}

// Configure reads the plugin block's settings; a bad attribute is an
// *sdk.ConfigError so xlbd reports it at that attribute's line. On error
// the old configuration stays.
func (c *checker) Configure(raw []byte) error {
	var in struct {
		Concurrency json.RawMessage `json:"concurrency"`
	}
	if err := sdk.DecodeConfig(raw, &in); err != nil {
		return err
	}
	n := int(c.concurrency.Load())
	if err := number("concurrency", in.Concurrency, 1, 100000, &n); err != nil {
		return err
	}
	c.concurrency.Store(int64(n))
	return nil
}

// ParseParams reads one health_check block's parameters. xlbd calls it
// (through ValidateParams) when it loads a configuration, so a mistake is
// reported at its line before the configuration is applied.
func (c *checker) ParseParams(raw []byte) (any, error) {
	var p params
	if err := sdk.DecodeConfig(raw, &p); err != nil {
		return nil, err
	}
	if p.Username != "" && p.Password == "" {
		return nil, &sdk.ConfigError{Attribute: "username", Message: "needs password"}
	}
	return &p, nil
}

// number reads attribute attr into *dst when it is set (as a number, or a
// string of digits as a variable may give) and within [lo, hi].
func number(attr string, raw json.RawMessage, lo, hi int, dst *int) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	text := string(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		text = s
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < lo || n > hi {
		return &sdk.ConfigError{Attribute: attr, Message: fmt.Sprintf("must be a whole number from %d to %d", lo, hi)}
	}
	*dst = n
	return nil
}

// Check PINGs every target on a bounded pool of workers and returns one
// result per target, in order. ctx's deadline is the check timeout.
func (c *checker) Check(ctx context.Context, targets []sdk.Target) []sdk.Result {
	res := make([]sdk.Result, len(targets))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(int(c.concurrency.Load()), len(targets))) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				t := targets[i]
				if ctx.Err() != nil {
					// Nobody looked at this backend: no verdict, so xlbd
					// holds its last known health instead of failing it.
					res[i] = sdk.Result{ID: t.ID, Status: sdk.StatusUnknown, Message: "not probed: the check timed out first"}
					continue
				}
				start := time.Now()
				p, _ := t.Params.(*params)
				if p == nil {
					p = &params{} // a direct caller without parameters
				}
				err := ping(ctx, p, t)
				res[i] = sdk.Result{ID: t.ID, Status: sdk.StatusPass, Latency: time.Since(start)}
				if err != nil {
					res[i].Status, res[i].Message = sdk.StatusFail, err.Error()
				}
			}
		})
	}
	wg.Wait()
	return res
}

// ping dials t, sends AUTH (when configured) and PING in one write, and
// reads their replies, all before ctx's deadline.
func ping(ctx context.Context, cfg *params, t sdk.Target) error {
	port := int(t.Port)
	if port == 0 {
		port = defaultPort
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(t.Address, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A cancel before the deadline (xlbd stopping) ends the I/O too.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var req []byte
	if cfg.Password != "" {
		if cfg.Username != "" {
			req = command(req, "AUTH", cfg.Username, cfg.Password)
		} else {
			req = command(req, "AUTH", cfg.Password)
		}
	}
	req = command(req, "PING")
	if _, err := conn.Write(req); err != nil {
		return err
	}
	r := bufio.NewReaderSize(conn, maxReply)
	if cfg.Password != "" {
		if err := expect(r, "AUTH", "+OK"); err != nil {
			return err
		}
	}
	return expect(r, "PING", "+PONG")
}

// command appends cmd as a RESP array of bulk strings, the form every
// Redis version accepts: *<n>\r\n then $<len>\r\n<arg>\r\n per argument.
func command(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// expect reads one reply line and wants it to be exactly want; a RESP
// error ("-NOAUTH ...", "-LOADING ...") is quoted in the failure.
func expect(r *bufio.Reader, what, want string) error {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("%s: reply longer than %d bytes", what, maxReply)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	got := strings.TrimSuffix(string(line), "\r\n")
	if got == want {
		return nil
	}
	if strings.HasPrefix(got, "-") {
		return fmt.Errorf("%s: server error: %s", what, got[1:])
	}
	return fmt.Errorf("%s: unexpected reply %q, want %q", what, got, want)
}

func main() { sdk.ServeHealthChecker(newChecker()) }

var (
	_ sdk.HealthChecker = (*checker)(nil)
	_ sdk.Describer     = (*checker)(nil)
	_ sdk.Configurer    = (*checker)(nil)
	_ sdk.ParamsParser  = (*checker)(nil)
)
