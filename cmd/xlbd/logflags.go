package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logFlags are -log-format and -log-level: one logger for xlbd and the
// plugins it runs, whose lines it re-emits with plugin=<name> (see
// plugins/host), so that one format and one level hold for all.
type logFlags struct {
	format, level string
}

// addLogFlags registers -log-format and -log-level on fs.
func addLogFlags(fs *flag.FlagSet) *logFlags {
	f := &logFlags{}
	fs.StringVar(&f.format, "log-format", "text", "the log's format: text (key=value) or json (one object a line)")
	fs.StringVar(&f.level, "log-level", "info", "the least severe log lines written: debug, info, warn or error")
	return f
}

// logger returns the logger the flags ask for, writing to w.
func (f *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", f.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", f.format)
}
