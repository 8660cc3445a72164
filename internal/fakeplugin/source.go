package fakeplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// SourceName is the name under which the test binary serves the config
// source.
const SourceName = "fake-source"

// Source returns the path of a link, in dir, to the running test binary
// under SourceName: a plugin path that serves the config source.
func Source(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, SourceName)
	return path, os.Symlink(exe, path)
}

// source serves the files of a directory (its dir setting, relative to its
// working directory) as documents, each named prefix + file name, polled
// every 10 ms; dot files script it: .revision holds the revision (else a
// count of changes), .unavailable makes every update Unavailable with its
// content. With a peers setting (a directory) it is a Publisher: Publish
// writes peers/NODE.json, WatchPeers sends every file there. Each Watch
// call appends a line to the file its record setting names.
type source struct {
	mu  sync.Mutex
	cfg sourceConfig
}

type sourceConfig struct {
	Dir    string `json:"dir"`
	Prefix string `json:"prefix"`
	Peers  string `json:"peers"`
	Record string `json:"record"`
}

func (s *source) Describe() sdk.Info {
	return sdk.Info{Version: Version, Schema: []sdk.Attribute{{Name: "dir", Type: "string", Required: true},
		{Name: "prefix", Type: "string"}, {Name: "peers", Type: "string"}, {Name: "record", Type: "string"}}}
}

func (s *source) Configure(config []byte) error {
	var c sourceConfig
	if err := sdk.DecodeConfig(config, &c); err != nil {
		return err
	}
	if _, err := os.Stat(c.Dir); err != nil {
		return &sdk.ConfigError{Attribute: "dir", Message: err.Error()}
	}
	s.mu.Lock()
	s.cfg = c
	s.mu.Unlock()
	return nil
}

func (s *source) config() sourceConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// poll calls read every 10 ms and send with what it returns whenever that
// changed, until ctx ends or send fails.
func poll[T any](ctx context.Context, read func() T, same func(a, b T) bool, send func(T) error) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var last T
	for first := true; ; first = false {
		if cur := read(); first || !same(cur, last) {
			if err := send(cur); err != nil {
				return err
			}
			last = cur
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *source) Watch(ctx context.Context, send func(sdk.ConfigUpdate) error) error {
	c := s.config()
	if c.Record != "" {
		appendLine(c.Record, fmt.Sprintf("watch %d", os.Getpid()))
	}
	changes := 0
	return poll(ctx, func() sdk.ConfigUpdate { return readDir(c) }, sameUpdate, func(u sdk.ConfigUpdate) error {
		changes++
		if u.Revision == "" && u.Unavailable == "" {
			u.Revision = fmt.Sprint(changes)
		}
		return send(u)
	})
}

func readDir(c sourceConfig) sdk.ConfigUpdate {
	if b, err := os.ReadFile(filepath.Join(c.Dir, ".unavailable")); err == nil {
		return sdk.ConfigUpdate{Unavailable: strings.TrimSpace(string(b))}
	}
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return sdk.ConfigUpdate{Unavailable: err.Error()}
	}
	var u sdk.ConfigUpdate
	if b, err := os.ReadFile(filepath.Join(c.Dir, ".revision")); err == nil {
		u.Revision = strings.TrimSpace(string(b))
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.Dir, e.Name()))
		if err != nil {
			continue
		}
		format := "hcl"
		if strings.HasSuffix(e.Name(), ".json") {
			format = "json"
		}
		u.Documents = append(u.Documents, sdk.Document{Name: c.Prefix + e.Name(), Format: format, Content: b})
	}
	return u
}

func sameUpdate(a, b sdk.ConfigUpdate) bool {
	return a.Revision == b.Revision && a.Unavailable == b.Unavailable && slices.EqualFunc(a.Documents, b.Documents,
		func(x, y sdk.Document) bool {
			return x.Name == y.Name && x.Format == y.Format && bytes.Equal(x.Content, y.Content)
		})
}

// notPublisher is what a source without a peers setting answers: what the
// SDK answers for a plugin that does not implement Publisher.
var notPublisher = status.Error(codes.Unimplemented, "fake source without peers")

func (s *source) Publish(_ context.Context, n sdk.NodeStatus) error {
	c := s.config()
	if c.Peers == "" {
		return notPublisher
	}
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.Peers, "."+n.Node)
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.Peers, n.Node+".json"))
}

func (s *source) WatchPeers(ctx context.Context, send func(sdk.PeersUpdate) error) error {
	c := s.config()
	if c.Peers == "" {
		return notPublisher
	}
	read := func() []byte {
		var all []byte
		ents, _ := os.ReadDir(c.Peers)
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(c.Peers, e.Name())); err == nil && strings.HasSuffix(e.Name(), ".json") {
				all = append(append(all, b...), '\n')
			}
		}
		return all
	}
	return poll(ctx, read, bytes.Equal, func(all []byte) error {
		var u sdk.PeersUpdate
		for _, line := range bytes.Split(bytes.TrimSpace(all), []byte("\n")) {
			var n sdk.NodeStatus
			if json.Unmarshal(line, &n) == nil {
				u.Nodes = append(u.Nodes, n)
			}
		}
		return send(u)
	})
}

// appendLine appends line to the file at path.
func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

var (
	_ sdk.ConfigSource = (*source)(nil)
	_ sdk.Publisher    = (*source)(nil)
	_ sdk.Describer    = (*source)(nil)
	_ sdk.Configurer   = (*source)(nil)
)
