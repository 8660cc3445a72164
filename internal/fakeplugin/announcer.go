package fakeplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// AnnouncerName is the name under which the test binary serves the route
// announcer.
const AnnouncerName = "fake-announcer"

// Announcer returns the path of a link, in dir, to the running test
// binary under AnnouncerName: a plugin path that serves the announcer.
func Announcer(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, AnnouncerName)
	return path, os.Symlink(exe, path)
}

// Call is one call the announcer got, as it records them: one JSON object
// per line in the file its record setting names.
type Call struct {
	Time   time.Time `json:"time"`
	PID    int       `json:"pid"`
	Method string    `json:"method"` // "SetRoutes", "WithdrawAll" or "Stop" (on SIGTERM)
	Routes []string  `json:"routes,omitempty"`
	// Params holds each route's parameters (ParamsJSON) by prefix.
	Params map[string]string `json:"params,omitempty"`
}

// ReadCalls returns the calls recorded in the file at path, in order.
func ReadCalls(path string) ([]Call, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []Call
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var c Call
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, line, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// announcer records every call in its record file. It refuses the setting
// refuse = true, a neighbor whose peer_as is 0 (at neighbors[i].peer_as),
// and the parameter med below 0. SetRoutes fails while the file at its
// fail setting exists, so that a test can make sends fail and recover.
type announcer struct {
	mu       sync.Mutex
	record   string
	failFile string
	// neighbors and routes are what Sessions reports: one established
	// session per configured neighbor ("neighbor-0", ...), each with the
	// routes last set.
	neighbors, routes int
}

type announcerConfig struct {
	Record    string `json:"record"`
	Fail      string `json:"fail"`
	Refuse    bool   `json:"refuse"`
	Neighbors []struct {
		PeerAS int `json:"peer_as"`
	} `json:"neighbors"`
}

func (a *announcer) Describe() sdk.Info {
	return sdk.Info{Version: Version,
		Schema: []sdk.Attribute{{Name: "record", Type: "string"}, {Name: "fail", Type: "string"},
			{Name: "refuse", Type: "bool"}, {Name: "neighbors", Type: "list"}},
		Params: []sdk.Attribute{{Name: "med", Type: "number"}},
	}
}

func (a *announcer) Configure(config []byte) error {
	var c announcerConfig
	if err := sdk.DecodeConfig(config, &c); err != nil {
		return err
	}
	if c.Refuse {
		return &sdk.ConfigError{Attribute: "refuse", Message: "refused by the plugin"}
	}
	for i, n := range c.Neighbors {
		if n.PeerAS == 0 {
			return &sdk.ConfigError{Attribute: fmt.Sprintf("neighbors[%d].peer_as", i), Message: "must be an AS number, not 0"}
		}
	}
	a.mu.Lock()
	a.record, a.failFile, a.neighbors = c.Record, c.Fail, len(c.Neighbors)
	a.mu.Unlock()
	return nil
}

type announceParams struct {
	MED int `json:"med"`
}

func (a *announcer) ParseParams(js []byte) (any, error) {
	var p announceParams
	if err := sdk.DecodeConfig(js, &p); err != nil {
		return nil, err
	}
	if p.MED < 0 {
		return nil, &sdk.ConfigError{Attribute: "med", Message: "must be at least 0"}
	}
	return &p, nil
}

func (a *announcer) SetRoutes(_ context.Context, routes []sdk.Route) error {
	a.mu.Lock()
	fail := a.failFile
	a.mu.Unlock()
	if fail != "" {
		if _, err := os.Stat(fail); err == nil {
			return fmt.Errorf("failing on purpose while %s exists", fail)
		}
	}
	a.mu.Lock()
	a.routes = len(routes)
	a.mu.Unlock()
	c := Call{Method: "SetRoutes", Routes: []string{}}
	for _, r := range routes {
		c.Routes = append(c.Routes, r.Prefix.String())
		if len(r.ParamsJSON) > 0 {
			if c.Params == nil {
				c.Params = map[string]string{}
			}
			c.Params[r.Prefix.String()] = string(r.ParamsJSON)
		}
	}
	return a.write(c)
}

func (a *announcer) WithdrawAll(context.Context) error {
	a.mu.Lock()
	a.routes = 0
	a.mu.Unlock()
	return a.write(Call{Method: "WithdrawAll"})
}

func (a *announcer) Sessions(context.Context) ([]sdk.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]sdk.Session, a.neighbors)
	for i := range out {
		out[i] = sdk.Session{Peer: fmt.Sprintf("neighbor-%d", i), State: "established", Up: true, Prefixes: a.routes}
	}
	return out, nil
}

func (a *announcer) Stop(context.Context) error {
	return a.write(Call{Method: "Stop"})
}

// write appends c to the record file, one line with O_APPEND, so that a
// restarted process adds to what its predecessor wrote.
func (a *announcer) write(c Call) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.record == "" {
		return nil
	}
	c.Time, c.PID = time.Now(), os.Getpid()
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(a.record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var (
	_ sdk.RouteAnnouncer  = (*announcer)(nil)
	_ sdk.ParamsParser    = (*announcer)(nil)
	_ sdk.Describer       = (*announcer)(nil)
	_ sdk.Configurer      = (*announcer)(nil)
	_ sdk.Stopper         = (*announcer)(nil)
	_ sdk.SessionReporter = (*announcer)(nil)
)
