package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// The status page's files: HTML, CSS and a script that reads /v1/* and
// redraws, all served from here (no other origin, nothing fetched).
//
//go:embed page
var pageFiles embed.FS

// pageRoutes serves the read-only status page at / and its files at
// /static/. It writes nothing: its script only GETs the API.
func pageRoutes(mux *http.ServeMux) {
	files, err := fs.Sub(pageFiles, "page")
	if err != nil {
		panic(err)
	}
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		h := w.Header()
		// The page's own files only, and the API as its one connection;
		// no frame may embed it (it would show the daemon's state to
		// another origin's page).
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "+
			"base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// A new xlbd's page is seen at once, never a cached old one.
		h.Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, name)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") })
	for _, name := range []string{"page.css", "page.js"} {
		mux.HandleFunc("GET /static/"+name, func(w http.ResponseWriter, r *http.Request) { serve(w, r, name) })
	}
}
