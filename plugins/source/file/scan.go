package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// maxFileSize is the largest document read, in bytes: hcl.MaxFileSize,
// which xlbd's loader enforces. The plugin keeps its own copy so that it
// depends on the SDK alone; a larger file would be refused by the loader
// anyway, so it is reported without being read.
const maxFileSize = 16 << 20

// scan is one reading of the configured paths.
type scan struct {
	docs []sdk.Document
	// missing lists configured paths that do not exist.
	missing []string
	// problems lists files that exist and cannot be read (too large,
	// permissions, not a regular file): the update is then Unavailable,
	// since sending the set without them would delete their services.
	problems []string
}

// read reads every configured path: a directory's documents sorted by
// name, then the next path. A document reached twice (a file listed and
// also in a listed directory) is sent once, under its first name. It
// calls watch with what to watch for the next change, each before reading
// it: a change made after is seen by the watch, one made before is in
// what is read.
func read(paths []string, watch func(string)) scan {
	var sc scan
	seen := map[string]bool{}
	add := func(name string, content []byte) {
		if seen[name] {
			return
		}
		seen[name] = true
		sc.docs = append(sc.docs, sdk.Document{Name: name, Format: format(name), Content: content})
	}
	for _, p := range paths {
		for _, wp := range watchPaths(p) {
			watch(wp)
		}
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			sc.missing = append(sc.missing, p)
			continue
		case err != nil:
			sc.problems = append(sc.problems, err.Error())
			continue
		case !fi.IsDir():
			content, err := readFile(p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				sc.missing = append(sc.missing, p)
			case err != nil:
				sc.problems = append(sc.problems, err.Error())
			default:
				add(p, content)
			}
			continue
		}
		entries, err := os.ReadDir(p) // sorted by name
		if err != nil {
			sc.problems = append(sc.problems, err.Error())
			continue
		}
		for _, e := range entries {
			if !isDocument(e.Name()) {
				continue
			}
			name := filepath.Join(p, e.Name())
			if e.Type()&fs.ModeSymlink != 0 {
				// The directory's watch does not see a change to the
				// link's target.
				watch(name)
			}
			content, err := readFile(name)
			switch {
			case errors.Is(err, fs.ErrNotExist), errors.Is(err, errNotRegular):
				// Deleted since the listing, a dangling link, or a
				// directory named x.hcl: not a document.
			case err != nil:
				sc.problems = append(sc.problems, err.Error())
			default:
				add(name, content)
			}
		}
	}
	return sc
}

// isDocument reports whether a directory entry is a document: *.hcl or
// *.hcl.json, not hidden. Editors' files are named otherwise: vim's swap
// (.x.hcl.swp, .swx), backup (x.hcl~) and probe (4913) files, emacs's
// autosave (#x.hcl#) and lock link (.#x.hcl), other tools' x.hcl.tmp, and
// Kubernetes' ..data directories.
func isDocument(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") {
		return false
	}
	return strings.HasSuffix(name, ".hcl") || strings.HasSuffix(name, ".hcl.json")
}

// format is a document's syntax by its name, as the shared rule says:
// "json" (HCL's JSON syntax) for a name ending in .json, else "hcl".
func format(name string) string {
	if strings.HasSuffix(name, ".json") {
		return "json"
	}
	return "hcl"
}

var errNotRegular = errors.New("not a regular file")

// readFile reads a document of at most maxFileSize bytes. O_NONBLOCK
// keeps a FIFO named x.hcl from blocking the open; it is then refused as
// not a regular file.
func readFile(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", name, errNotRegular)
	}
	if fi.Size() > maxFileSize {
		return nil, tooLarge(name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, tooLarge(name)
	}
	return b, nil
}

func tooLarge(name string) error {
	return fmt.Errorf("%s is larger than the %d MiB a configuration file may hold: not read", name, maxFileSize>>20)
}

// watchPaths lists what to watch for the configured path p: p itself
// (a directory's entries, or a file's content, through symlinks), its
// parent (p created, deleted, or replaced by a rename), and the parent of
// every symlink on the way to p, where a deploy tool swaps a "current"
// link or Kubernetes its ConfigMap's ..data link.
func watchPaths(p string) []string {
	out := []string{p, filepath.Dir(p)}
	abs, err := filepath.Abs(p)
	if err != nil {
		return out
	}
	for a := filepath.Dir(abs); a != filepath.Dir(a); a = filepath.Dir(a) {
		if fi, err := os.Lstat(a); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			out = append(out, filepath.Dir(a))
		}
	}
	return out
}
