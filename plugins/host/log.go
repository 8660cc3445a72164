package host

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns the hclog.Logger go-plugin writes to (its own
// messages and the plugin's stderr lines, which it re-logs): JSON lines
// into a writer that re-emits each entry on l, which already carries
// plugin=<name>.
func newHCLogger(l *slog.Logger) hclog.Logger {
	level := hclog.Info
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Output:     &lineWriter{log: l, stream: "log"},
		Level:      level,
		JSONFormat: true,
	})
}

// lineWriter turns written lines into slog records. A line that is an
// hclog JSON entry keeps its level, message, module and fields; any other
// line is logged at info with stream=<stream> (the plugin's os.Stdout and
// os.Stderr, which go-plugin streams over gRPC after Serve). Safe for
// concurrent use.
type lineWriter struct {
	log    *slog.Logger
	stream string

	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	// A partial line longer than this is logged as it is rather than held.
	if len(w.buf) > 64<<10 {
		w.line(w.buf)
		w.buf = w.buf[:0]
	}
	return len(b), nil
}

func (w *lineWriter) line(l []byte) {
	l = bytes.TrimRight(l, "\r")
	if len(bytes.TrimSpace(l)) == 0 {
		return
	}
	var e map[string]any
	if l[0] != '{' || json.Unmarshal(l, &e) != nil {
		w.log.Info(string(l), "stream", w.stream)
		return
	}
	msg, _ := e["@message"].(string)
	lvl, _ := e["@level"].(string)
	attrs := []slog.Attr{}
	if m, _ := e["@module"].(string); m != "" {
		attrs = append(attrs, slog.String("module", m))
	}
	keys := make([]string, 0, len(e))
	for k := range e {
		if k == "" || k[0] != '@' {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, e[k]))
	}
	w.log.LogAttrs(context.Background(), slogLevel(lvl), msg, attrs...)
}

func slogLevel(hcl string) slog.Level {
	switch hclog.LevelFromString(hcl) {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

var _ io.Writer = (*lineWriter)(nil)
