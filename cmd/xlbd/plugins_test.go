package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exampleWith returns the offline example at path with check
// (health_check blocks) in pool web and extra at the end, for writing into
// a test's directory.
func exampleWith(t *testing.T, path, check, extra string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(src), "  pools = [\"canary\"]\n", "  pools = [\"canary\"]\n"+check, 1)
	return s + extra
}

// TestPluginPathNotFromPATH: with the file in the current directory, a
// plugin path written as a bare name or "./name", and a built-in found
// through -plugin-dir ".", run the file beside the configuration, never a
// binary of that name on $PATH.
func TestPluginPathNotFromPATH(t *testing.T) {
	decoys := t.TempDir()
	marker := filepath.Join(t.TempDir(), "decoy-ran")
	if err := os.WriteFile(filepath.Join(decoys, "redis-check"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", decoys+string(os.PathListSeparator)+os.Getenv("PATH"))
	dir := t.TempDir()
	// The file beside the configuration is not a plugin either: the
	// handshake fails, which is the error expected.
	if err := os.WriteFile(filepath.Join(dir, "redis-check"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ex, err := filepath.Abs(example)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		name, method, extra string
		args                []string
	}{
		{"bare name", "redis", "plugin \"redis\" {\n  path = \"redis-check\"\n}\n", nil},
		{"dot slash", "redis", "plugin \"redis\" {\n  path = \"./redis-check\"\n}\n", nil},
		{"plugin dir", "redis-check", "", []string{"-plugin-dir", "."}},
	} {
		src := exampleWith(t, ex, "  health_check \""+tc.method+"\" {}\n", tc.extra)
		if err := os.WriteFile("x.hcl", []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if rc := validateCmd(append(tc.args, "x.hcl"), &stdout, &stderr); rc != 1 {
			t.Errorf("%s: validate rc %d, want 1\n%s", tc.name, rc, stderr.String())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%s: the redis-check on $PATH ran", tc.name)
		}
		if want := filepath.Join(dir, "redis-check"); !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: the error does not name %s:\n%s", tc.name, want, stderr.String())
		}
	}
}
