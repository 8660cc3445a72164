package client

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkRoundTrip is one held connection's request and answer against
// a local net/http server, and BenchmarkNetHTTP the same over net/http's
// client keep-alive connection: the client's CPU per request of Hold's
// reader against the standard client (the server's share is in both).
func BenchmarkRoundTrip(b *testing.B) {
	srv := benchServer()
	defer srv.Close()
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 1024)
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: xlb-client-hold\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := roundTrip(nc, br, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNetHTTP(b *testing.B) {
	srv := benchServer()
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	url := srv.URL + "/"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := get(context.Background(), hc, url); err != nil {
			b.Fatal(err)
		}
	}
}

func benchServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "be1")
		w.Write([]byte("be1\n"))
	}))
}
