package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPageRoutes: / is the status page and /static/ its two files, each
// under a Content-Security-Policy that allows only the page's own files
// and API; the page takes no other method, and no other file is served.
func TestPageRoutes(t *testing.T) {
	h := Handler(&fake{overrides: map[string]Override{}})
	for _, c := range []struct{ method, path, ctype, body string }{
		{"GET", "/", "text/html; charset=utf-8", `<script src="/static/page.js" defer></script>`},
		{"HEAD", "/", "text/html; charset=utf-8", ""},
		{"GET", "/static/page.js", "text/javascript; charset=utf-8", `fetch(path, { cache: "no-store"`},
		{"GET", "/static/page.css", "text/css; charset=utf-8", "tr.draining"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != 200 || w.Header().Get("Content-Type") != c.ctype || !strings.Contains(w.Body.String(), c.body) {
			t.Errorf("%s %s: %d %q, want %s with %q", c.method, c.path, w.Code, w.Header().Get("Content-Type"), c.ctype, c.body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("%s %s: Content-Security-Policy %q", c.method, c.path, csp)
		}
	}
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/", http.StatusMethodNotAllowed},
		{"GET", "/static/", http.StatusNotFound},
		{"GET", "/static/index.html", http.StatusNotFound},
		{"GET", "/index.html", http.StatusNotFound},
		{"GET", "/page/page.js", http.StatusNotFound},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.code || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q, want %d in JSON", c.method, c.path, w.Code, w.Header().Get("Content-Type"), c.code)
		}
	}
}

// TestGraphRoute: before a graph runs, /v1/graph says so.
func TestGraphRoute(t *testing.T) {
	w := httptest.NewRecorder()
	Handler(&fake{}).ServeHTTP(w, httptest.NewRequest("GET", "/v1/graph", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no graph runs yet") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
}
