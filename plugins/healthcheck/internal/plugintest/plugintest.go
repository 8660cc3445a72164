// Package plugintest builds a health-check plugin's main package and runs
// it through go-plugin as a real subprocess, as xlbd would, for tests.
package plugintest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Start builds the main package in dir (a directory path, normally ".")
// into t.TempDir(), starts it with the SDK's handshake and returns the
// dispensed health checker. The process is killed when t ends.
func Start(t testing.TB, dir string) *sdk.HealthCheckerClient {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "plugin")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginMap,
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     20 * time.Second,
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(c.Kill)
	rpc, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(string(sdk.KindHealthChecker))
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*sdk.HealthCheckerClient)
}
