// Package client is the lab's HTTP load generator: real net/http requests
// to the VIP, each on a new TCP connection (so each is a new flow with its
// own source port) or all over one keep-alive connection, summarised per
// backend from the X-Backend header the lab's backends set.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Config is one run.
type Config struct {
	URL         string
	Requests    int
	Concurrency int // parallel requests (new-connection mode only)
	// KeepAlive sends every request, one after another, over a single
	// keep-alive connection instead of one connection per request.
	KeepAlive bool
	Timeout   time.Duration // per request
}

// Summary is what xlb-client prints as JSON.
type Summary struct {
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Backends    map[string]int `json:"backends"`     // OK responses per X-Backend
	Errors      map[string]int `json:"errors"`       // failures by kind
	FirstError  string         `json:"first_error"`  // one failure in full
	Connections int            `json:"connections"`  // TCP connections opened
	SourcePorts int            `json:"source_ports"` // distinct local ports among them
	DurationMS  int64          `json:"duration_ms"`
}

// Run sends the requests and summarises them. It returns an error only for
// a bad Config; failed requests are counted in the Summary.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if cfg.Requests <= 0 || cfg.URL == "" {
		return Summary{}, errors.New("client: URL and Requests > 0 are required")
	}
	if cfg.Concurrency <= 0 || cfg.KeepAlive {
		cfg.Concurrency = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	s := Summary{Requests: cfg.Requests, Backends: map[string]int{}, Errors: map[string]int{}}
	var mu sync.Mutex
	ports := map[string]bool{}
	d := &net.Dialer{Timeout: cfg.Timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				s.Connections++
				ports[c.LocalAddr().String()] = true
				mu.Unlock()
			}
			return c, err
		},
		DisableKeepAlives:   !cfg.KeepAlive,
		MaxConnsPerHost:     cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		Proxy:               nil, // never a proxy from the environment
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: cfg.Timeout}

	start := time.Now()
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for range jobs {
				backend, err := get(ctx, hc, cfg.URL)
				mu.Lock()
				if err != nil {
					s.Failed++
					s.Errors[errKind(err)]++
					if s.FirstError == "" {
						s.FirstError = err.Error()
					}
				} else {
					s.OK++
					s.Backends[backend]++
				}
				mu.Unlock()
			}
		})
	}
	for range cfg.Requests {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	s.DurationMS = time.Since(start).Milliseconds()
	s.SourcePorts = len(ports)
	return s, nil
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	// Read to the end so a keep-alive connection can be reused.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	b := resp.Header.Get("X-Backend")
	if b == "" {
		return "", errors.New("no X-Backend header")
	}
	return b, nil
}

// errKind names a failure without the addresses and ports that would make
// every message unique.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}

// Shares returns each backend's fraction of OK responses, sorted by name.
func (s Summary) Shares() []Share {
	var out []Share
	for b, n := range s.Backends {
		out = append(out, Share{Backend: b, Count: n, Fraction: float64(n) / float64(max(s.OK, 1))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Backend < out[j].Backend })
	return out
}

// Share is one backend's part of a Summary.
type Share struct {
	Backend  string
	Count    int
	Fraction float64
}
