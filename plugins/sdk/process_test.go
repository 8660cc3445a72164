package sdk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// helperEnv makes the test binary serve a plugin instead of running tests,
// so that the handshake is tested against a real process.
const helperEnv = "XLB_SDK_TEST_PLUGIN"

func helperCmd() *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=healthchecker")
	return cmd
}

func newProcessClient(t *testing.T, hs plugin.HandshakeConfig) *plugin.Client {
	t.Helper()
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  hs,
		Plugins:          PluginMap,
		Cmd:              helperCmd(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     20 * time.Second,
		Logger:           hclog.NewNullLogger(),
	})
	t.Cleanup(c.Kill)
	return c
}

func TestSubprocessRoundTrip(t *testing.T) {
	c := newProcessClient(t, Handshake)
	rpc, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(string(KindHealthChecker))
	if err != nil {
		t.Fatal(err)
	}
	hc := raw.(*HealthCheckerClient)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := hc.Info(ctx)
	if err != nil || in.Kind != KindHealthChecker || in.Version != "1.2.3" {
		t.Fatalf("Info = %+v, %v", in, err)
	}
	ts := targets(1000)
	rs, err := hc.CheckBatch(ctx, nil, ts, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkBatch(t, ts, rs)
}

func TestHandshakeVersionMismatch(t *testing.T) {
	hs := Handshake
	hs.ProtocolVersion = ProtocolVersion + 1
	_, err := newProcessClient(t, hs).Client()
	if err == nil {
		t.Fatal("a plugin speaking another protocol version was accepted")
	}
	if !strings.Contains(err.Error(), "incompatible API version") || !strings.Contains(err.Error(), "Plugin version: 1") {
		t.Errorf("mismatch error %q does not say the versions are incompatible", err)
	}
}

func TestHandshakeCookieMismatch(t *testing.T) {
	hs := Handshake
	hs.MagicCookieValue = "not-xlb"
	_, err := newProcessClient(t, hs).Client()
	if err == nil {
		t.Fatal("a plugin was started with the wrong magic cookie")
	}
	t.Logf("refused: %v", err)
}

// TestRunByHand: a plugin started without the host's cookie refuses to run
// and says what it is.
func TestRunByHand(t *testing.T) {
	cmd := helperCmd()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("plugin run by hand: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), "This binary is a plugin") {
		t.Errorf("plugin run by hand said %q", stderr.String())
	}
}

const (
	stopFileEnv = "XLB_SDK_TEST_STOP_FILE" // where stoppingAnnouncer records Stop
	stopHangEnv = "XLB_SDK_TEST_STOP_HANG" // non-empty: Stop never returns
)

// stoppingAnnouncer records in file that Stop was called, with a deadline.
type stoppingAnnouncer struct {
	fakeAnnouncer
	file string
	hang bool
}

func (a *stoppingAnnouncer) Stop(ctx context.Context) error {
	_, ok := ctx.Deadline()
	if err := os.WriteFile(a.file, []byte(fmt.Sprint("stopped, deadline ", ok)), 0o644); err != nil {
		return err
	}
	if a.hang {
		select {}
	}
	return nil
}

// TestRouteAnnouncerSIGTERM: SIGTERM makes a route-announcer process call
// its Stop with a deadline and exit with status 0, also when Stop does not
// return.
func TestRouteAnnouncerSIGTERM(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprint("hang=", hang), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "stopped")
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), helperEnv+"=routeannouncer", stopFileEnv+"="+file,
				Handshake.MagicCookieKey+"="+Handshake.MagicCookieValue,
				fmt.Sprintf("PLUGIN_PROTOCOL_VERSIONS=%d", ProtocolVersion))
			if hang {
				cmd.Env = append(cmd.Env, stopHangEnv+"=1")
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() {
				// The handshake line says the plugin serves (and so has
				// its handler installed).
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				if !strings.Contains(line, "grpc") {
					exited <- fmt.Errorf("handshake line %q", line)
					return
				}
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					exited <- err
					return
				}
				exited <- cmd.Wait()
			}()
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("after SIGTERM: %v, want exit status 0; stderr:\n%s", err, stderr.String())
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatal("the plugin did not exit after SIGTERM")
			}
			got, err := os.ReadFile(file)
			if err != nil || string(got) != "stopped, deadline true" {
				t.Errorf("Stop: %q, %v; want it called with a deadline", got, err)
			}
			if hang && !strings.Contains(stderr.String(), "did not finish in time") {
				t.Errorf("a Stop that hung was not logged; stderr:\n%s", stderr.String())
			}
		})
	}
}
