package admin

import (
	"bytes"
	"net/http"
)

// graph serves GET /v1/graph: the running graph in Graphviz DOT with the
// packets each edge passed and each element's drops (pipeline's WriteDOT
// over the live Stats), for `xlbctl graph | dot -Tsvg`.
func graph(src Source) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		g := src.Graph()
		if g == nil {
			writeJSON(w, http.StatusServiceUnavailable, Error{Error: "no graph runs yet"})
			return
		}
		var b bytes.Buffer
		if err := g.WriteDOT(&b, src.Stats()); err != nil {
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
			return
		}
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		_, _ = w.Write(b.Bytes())
	}
}
