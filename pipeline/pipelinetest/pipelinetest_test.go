package pipelinetest

import (
	"bytes"
	"errors"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/quick"

	"github.com/xlbproject/xlb/pipeline"
)

type valueKey struct{}

// split is the element under test here: packets from `in` leave by `even`
// or `odd` after their Hash; packets from `side` get Epoch 1 and leave by
// `even`. Provision needs a value under valueKey.
type split struct {
	Bad   bool
	nows  []int64
	count atomic.Uint64
}

func (s *split) Validate() error {
	if s.Bad {
		return &pipeline.AttrError{Attr: "bad", Msg: "must be false"}
	}
	return nil
}

func (s *split) Provision(ctx *pipeline.Context) error {
	if ctx.Value(valueKey{}) == nil {
		return errors.New("no value")
	}
	return nil
}

func (s *split) StartBatch(now int64) { s.nows = append(s.nows, now) }

func (s *split) Push(in int, p *pipeline.Packet) int {
	s.count.Add(1)
	if in == 1 {
		p.Epoch = 1
		return 0
	}
	return int(p.Hash % 2)
}

func (s *split) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_split_packets_total", Value: s.count.Load()})
}

func init() {
	pipeline.Register(pipeline.ElementType{Name: "testSplit", Inputs: []string{"in", "side"}, Outputs: []string{"even", "odd"},
		Routes: [][]int{{0, 1}, {0}}, New: func() pipeline.Element { return &split{} }})
}

var values = map[any]any{valueKey{}: true}

// frames returns n packets with Hash i and a one-byte frame {i}.
func frames(n int) []*pipeline.Packet {
	ps := make([]*pipeline.Packet, n)
	for i := range ps {
		ps[i] = Packet([]byte{byte(i)})
		ps[i].Hash = uint64(i)
	}
	return ps
}

func TestPush(t *testing.T) {
	h := New(t, "testSplit", Options{Values: values})
	ps := frames(5)
	out := h.Push(7, ps...)
	if !slices.Equal(out["even"], []*pipeline.Packet{ps[0], ps[2], ps[4]}) || !slices.Equal(out["odd"], []*pipeline.Packet{ps[1], ps[3]}) {
		t.Fatalf("Push: %v", out)
	}
	// Each Push returns its own batch's packets only.
	side := frames(2)
	out = h.PushTo("side", 8, side...)
	if len(out) != 1 || !slices.Equal(out["even"], side) || side[1].Epoch != 1 {
		t.Fatalf("PushTo side: %v", out)
	}
	if nows := h.Element().(*split).nows; !slices.Equal(nows, []int64{7, 8}) {
		t.Errorf("batch clocks %v, want [7 8]", nows)
	}
	s := h.Stats()
	if s.Name != elemName || s.In[0].Packets != 5 || s.In[1].Packets != 2 || s.Out[0].Packets != 5 || s.Out[1].Packets != 2 {
		t.Errorf("stats %+v", s)
	}
	if len(s.Metrics) != 1 || s.Metrics[0].Value != 7 {
		t.Errorf("metrics %+v, want 7 packets", s.Metrics)
	}
}

func TestRun(t *testing.T) {
	const workers = 3
	h := New(t, "testSplit", Options{Values: values, Workers: workers})
	a, b := frames(4), frames(2)
	out := h.Run(Batch{Now: 1, Pkts: a}, Batch{Now: 2, Input: "side", Pkts: b}, Batch{Now: 3})
	even := out["even"]
	if len(even) != 4*workers || len(out["odd"]) != 2*workers {
		t.Fatalf("Run: %d even, %d odd; want %d, %d", len(even), len(out["odd"]), 4*workers, 2*workers)
	}
	// Worker 0 pushed the packets given, the others copies of them.
	if !slices.Equal(even[:4], []*pipeline.Packet{a[0], a[2], b[0], b[1]}) {
		t.Errorf("worker 0 got %v", even[:4])
	}
	for i, p := range even[4:] {
		q := even[i%4]
		if p == q || &p.Data()[0] == &q.Data()[0] || !bytes.Equal(p.Data(), q.Data()) || p.Hash != q.Hash || p.Epoch != q.Epoch {
			t.Errorf("worker %d packet %d: not a copy of worker 0's", 1+i/4, i%4)
		}
	}
	if nows := h.Element().(*split).nows; !slices.Equal(nows, []int64{1, 2, 3}) {
		t.Errorf("batch clocks %v, want [1 2 3]", nows)
	}
	if got := h.Stats().In[0].Packets; got != 4*workers {
		t.Errorf("in %d, want %d", got, 4*workers)
	}
	// A second Run replays only its own batches.
	if out := h.Run(Batch{Pkts: frames(1)}); len(out["even"]) != workers || len(out["odd"]) != 0 {
		t.Errorf("second Run: %v", out)
	}
}

func TestLoop(t *testing.T) {
	h := New(t, "testSplit", Options{Values: values, Loops: []Loop{{From: "odd", To: "side", Func: func(p *pipeline.Packet) { p.VIP = 9 }}}})
	ps := frames(4)
	out := h.Push(0, ps...)
	if len(out) != 1 || !slices.Equal(out["even"], []*pipeline.Packet{ps[0], ps[2], ps[1], ps[3]}) {
		t.Fatalf("Push: %v", out)
	}
	if ps[1].VIP != 9 || ps[1].Epoch != 1 || ps[0].VIP != 0 || ps[0].Epoch != 0 {
		t.Errorf("odd packets did not go through the loop's function and `side`: %+v %+v", ps[0], ps[1])
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(t, "noSuchType", Options{}); err == nil || !strings.Contains(err.Error(), "noSuchType") {
		t.Errorf("unknown type: %v", err)
	}
	at := pipeline.Range{Filename: "x.hcl", Start: pipeline.Pos{Line: 3}}
	_, err := Start(t, "testSplit", Options{Values: values, AttrRanges: pipeline.AttrRanges{{Name: "bad", Range: at}},
		Configure: func(e pipeline.Element) error { e.(*split).Bad = true; return nil }})
	var errs pipeline.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Range != at {
		t.Errorf("invalid configuration: %v, want a Build error at %s", err, at)
	}
	if _, err := Start(t, "testSplit", Options{}); err == nil || !strings.Contains(err.Error(), "no value") {
		t.Errorf("Start without the value: %v", err)
	}
	if _, err := Start(t, "testSplit", Options{Values: values, Loops: []Loop{{From: "even", To: "in"}}}); err == nil {
		t.Error("a loop that cannot terminate was accepted")
	}
}

func TestPacket(t *testing.T) {
	frame := []byte{1, 2, 3}
	p := Packet(frame)
	frame[0] = 9
	if !bytes.Equal(p.Data(), []byte{1, 2, 3}) || p.Headroom() != pipeline.Headroom || p.Tailroom() != 0 {
		t.Errorf("data % x, headroom %d, tailroom %d", p.Data(), p.Headroom(), p.Tailroom())
	}
}

type owner struct{}

func (owner) Recycle(*pipeline.Packet) {}

// TestClone fills every exported field of a Packet, so that a field added
// to pipeline.Packet and not copied by clone fails here.
func TestClone(t *testing.T) {
	p := Packet([]byte{1, 2, 3})
	v := reflect.ValueOf(p).Elem()
	rnd := rand.New(rand.NewSource(1))
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case !v.Type().Field(i).IsExported():
		case f.Kind() == reflect.Interface:
			f.Set(reflect.ValueOf(owner{}))
		default:
			x, ok := quick.Value(f.Type(), rnd)
			if !ok {
				t.Fatalf("cannot fill field %s", v.Type().Field(i).Name)
			}
			f.Set(x)
		}
	}
	c := clone(p)
	cv := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		if name := v.Type().Field(i).Name; v.Type().Field(i).IsExported() && !reflect.DeepEqual(v.Field(i).Interface(), cv.Field(i).Interface()) {
			t.Errorf("clone: field %s not copied", name)
		}
	}
	if !bytes.Equal(c.Data(), p.Data()) || c.Headroom() != p.Headroom() || &c.Data()[0] == &p.Data()[0] {
		t.Error("clone: frame not copied")
	}
}
