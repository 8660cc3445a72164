package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// Source is what the API reads and changes: xlbd run's daemon. Every read
// may be called from any goroutine while the daemon runs.
type Source interface {
	Status() Status
	Snapshot() *snapshot.Snapshot
	// Pools names each VIP's pool, by VIP name (the snapshot has none).
	Pools() map[string]string
	Stats() []pipeline.ElementStats
	// Graph is the running graph, whose Stats are; nil before it runs.
	Graph() *pipeline.Graph
	// Health is each checked backend's health, by name.
	Health() map[string]bool
	Overrides() map[string]Override
	Plugins() []host.Status
	Routes() []host.AnnouncerStatus

	// Reload reads the configuration anew, as SIGHUP does.
	Reload(ctx context.Context) (Result, error)
	// Override changes a backend's runtime override with set and applies
	// the configuration with it, as one transaction of the apply loop. An
	// unknown backend is an *InputError and changes nothing; so is a
	// change the configuration rejects (Result says why).
	Override(ctx context.Context, backend string, set func(*Override)) (Result, error)
}

// InputError is a request the daemon refused for what it asked: a 400.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// Handler serves the API of src under /v1/.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	get := func(path string, f func(*http.Request) (any, error)) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { v, err := f(r); reply(w, v, err) })
	}
	post := func(path string, f func(*http.Request) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) { v, err := f(r); reply(w, v, err) })
	}
	get("/v1/status", func(*http.Request) (any, error) { return src.Status(), nil })
	get("/v1/vips", func(*http.Request) (any, error) { return vips(src.Snapshot(), src.Pools()), nil })
	get("/v1/backends", func(r *http.Request) (any, error) { return backends(src, r.URL.Query().Get("vip")) })
	get("/v1/counters", func(*http.Request) (any, error) { return counters(src.Stats()), nil })
	get("/v1/plugins", func(*http.Request) (any, error) { return plugins(src.Plugins()), nil })
	get("/v1/routes", func(*http.Request) (any, error) { return routes(src.Routes()), nil })
	mux.HandleFunc("GET /v1/graph", graph(src))
	pageRoutes(mux)
	post("/v1/reload", func(r *http.Request) (any, error) { return src.Reload(r.Context()) })
	post("/v1/backends/{name}/drain", func(r *http.Request) (any, error) {
		return src.Override(r.Context(), r.PathValue("name"), func(o *Override) { o.Drain = ptr(true) })
	})
	post("/v1/backends/{name}/undrain", func(r *http.Request) (any, error) {
		return src.Override(r.Context(), r.PathValue("name"), func(o *Override) { o.Drain = ptr(false) })
	})
	post("/v1/backends/{name}/weight", func(r *http.Request) (any, error) {
		weight, err := decodeWeight(r)
		if err != nil {
			return nil, err
		}
		return src.Override(r.Context(), r.PathValue("name"), func(o *Override) { o.Weight = &weight })
	})
	if fs, ok := src.(FlowSource); ok {
		flowRoutes(get, post, src, fs)
	}
	// The mux answers an unknown path with a text 404 and a known path's
	// other method with a text 405: JSON for both, as for every error.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			rec := &statusRecorder{header: http.Header{}}
			mux.ServeHTTP(rec, r)
			code := rec.code
			if code != http.StatusMethodNotAllowed {
				code = http.StatusNotFound
			}
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			writeJSON(w, code, Error{Error: fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, strings.ToLower(http.StatusText(code)))})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusRecorder keeps only the status and headers of the mux's own error
// reply, which Handler replaces by JSON.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

func ptr[T any](v T) *T { return &v }

// decodeWeight reads {"weight": N} with N an integer in 0..2^32-1.
func decodeWeight(r *http.Request) (uint32, error) {
	var req WeightRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, &InputError{Msg: fmt.Sprintf("malformed JSON body: %v; want {\"weight\": N}", err)}
	}
	if len(req.Weight) == 0 || string(req.Weight) == "null" {
		return 0, &InputError{Msg: `missing "weight": want {"weight": N}`}
	}
	n, err := strconv.ParseUint(string(req.Weight), 10, 32)
	if err != nil {
		return 0, &InputError{Msg: fmt.Sprintf("bad weight %s: want an integer from 0 to %d", req.Weight, uint32(math.MaxUint32))}
	}
	return uint32(n), nil
}

// reply writes v as JSON, or err as an error: an *InputError is a 400
// (with the diagnostics of a rejected change), a 404 when it names an
// unknown VIP, anything else a 500.
func reply(w http.ResponseWriter, v any, err error) {
	var in *InputError
	var nf *notFound
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, v)
	case errors.As(err, &nf):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.As(err, &in):
		e := Error{Error: err.Error()}
		if res, ok := v.(Result); ok {
			e.Diagnostics = res.Diagnostics
		}
		writeJSON(w, http.StatusBadRequest, e)
	default:
		writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type notFound struct{ msg string }

func (e *notFound) Error() string { return e.msg }

func protoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprint(p)
}

func vips(snap *snapshot.Snapshot, pools map[string]string) []VIP {
	out := make([]VIP, 0, len(snap.VIPs))
	for i := range snap.VIPs {
		v := &snap.VIPs[i]
		n := 0
		for _, id := range v.Reals {
			if r := snap.Reals.At(id); r.Epoch != 0 && r.State == snapshot.Up {
				n++
			}
		}
		ports := v.Ports
		if ports == nil {
			ports = []uint16{}
		}
		out = append(out, VIP{Name: v.Name, Address: v.Addr.String(), Protocol: protoName(v.Proto), Ports: ports,
			Pool: pools[v.Name], TableSize: len(v.Table), TableDigest: v.TableDigest, Backends: n})
	}
	return out
}

// backends lists every VIP's reals (only vip's when it is set) with their
// traffic: the encapsulators' per-backend metrics, as xlbd run prints them
// at exit.
func backends(src Source, vip string) ([]Backend, error) {
	snap := src.Snapshot()
	health, overrides := src.Health(), src.Overrides()
	traffic := Traffic(src.Stats())
	out := []Backend{}
	found := vip == ""
	for i := range snap.VIPs {
		v := &snap.VIPs[i]
		if vip != "" && v.Name != vip {
			continue
		}
		found = true
		for _, id := range v.Reals {
			r := snap.Reals.At(id)
			if r.Epoch == 0 {
				continue
			}
			b := Backend{VIP: v.Name, Backend: r.Backend, Address: r.Addr.String(), Weight: r.Weight, State: r.State.String(), Health: "unchecked"}
			if up, ok := health[r.Backend]; ok {
				b.Health = map[bool]string{true: "up", false: "down"}[up]
			}
			t := traffic[[2]string{v.Name, r.Backend}]
			b.Packets, b.Bytes = t.Packets, t.Bytes
			if o, ok := overrides[r.Backend]; ok {
				b.Override = &o
			}
			b.SNAT = v.SNAT.Text(id)
			out = append(out, b)
		}
	}
	if !found {
		return nil, &notFound{msg: fmt.Sprintf("no VIP %q in the running configuration", vip)}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].VIP != out[j].VIP {
			return out[i].VIP < out[j].VIP
		}
		return out[i].Backend < out[j].Backend
	})
	return out, nil
}

// counters splits the engine's drop counters out of the elements' metrics.
func counters(stats []pipeline.ElementStats) Counters {
	c := Counters{Elements: make([]pipeline.ElementStats, len(stats)), Drops: []Drop{}}
	for i, s := range stats {
		c.Elements[i] = s
		c.Elements[i].Metrics = nil
		for _, m := range s.Metrics {
			if m.Name == pipeline.DropMetric {
				c.Drops = append(c.Drops, Drop{Element: m.Labels[0].Value, Reason: m.Labels[1].Value, Packets: m.Value})
			} else {
				c.Elements[i].Metrics = append(c.Elements[i].Metrics, m)
			}
		}
	}
	return c
}

// BackendTraffic is what the encapsulators sent to one backend of one VIP.
type BackendTraffic struct{ Packets, Bytes uint64 }

// Traffic sums the encapsulators' per-backend metrics by (VIP, backend).
func Traffic(stats []pipeline.ElementStats) map[[2]string]BackendTraffic {
	out := map[[2]string]BackendTraffic{}
	for _, s := range stats {
		for _, m := range s.Metrics {
			var key [2]string
			for _, l := range m.Labels {
				switch l.Name {
				case "vip":
					key[0] = l.Value
				case "backend":
					key[1] = l.Value
				}
			}
			if key[1] == "" {
				continue
			}
			t := out[key]
			switch m.Name {
			case "xlb_encap_backend_packets_total":
				t.Packets += m.Value
			case "xlb_encap_backend_bytes_total":
				t.Bytes += m.Value
			}
			out[key] = t
		}
	}
	return out
}
