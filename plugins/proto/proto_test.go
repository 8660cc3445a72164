package pluginpb

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xlbproject/xlb/internal/testenv"
)

// TestGeneratedCodeIsFresh regenerates the Go code into a temporary
// directory with the pinned tools and compares it with the committed files,
// so that a .proto edited without `make proto` fails here.
func TestGeneratedCodeIsFresh(t *testing.T) {
	testenv.RequireTool(t, "protoc")
	dir := t.TempDir()
	cmd := exec.Command("sh", "generate.sh", dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		testenv.Missing(t, "the pinned protoc and generators ("+string(bytes.TrimSpace(out))+")")
	}
	if err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, out)
	}
	fresh, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob("*.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) != len(committed) {
		t.Errorf("generate.sh makes %d files, %d are committed: run make proto", len(fresh), len(committed))
	}
	for _, f := range fresh {
		name := filepath.Base(f)
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s is not committed: run make proto", name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make proto", name)
		}
	}
}
