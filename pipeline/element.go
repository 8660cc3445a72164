package pipeline

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
)

// Element is an instance of an element type. What it must implement depends
// on its declared ports: an element with inputs implements Pusher; an
// element without inputs is a source and implements Source. The optional
// interfaces below add configuration checks, resources and timers.
//
// Configuration is the element's own exported fields: the loader decodes an
// element's HCL body into the value New returns (fields tagged
// `hcl:"name,optional"`, defaults set by New), so each element type owns its
// schema and an unknown attribute is reported at its own line.
//
// A worker runs each batch in this order: the StartBatch of its Local
// objects (the snapshot view), every element's StartBatch in declaration
// order, the packets through the graph (Prefetch, then Push, per input),
// every element's EndBatch, and the EndBatch of its Local objects. A packet
// ends either consumed (Push returned Consumed) or dropped (Push returned
// Drop, counted by the engine), exactly once.
type Element any

// Pusher handles one packet arriving on input port in and returns the output
// port it leaves by, Consumed when the element took the packet out of the
// graph (transmitted or written), or Drop when the element drops it.
type Pusher interface {
	Push(in int, p *Packet) int
}

// BatchPusher is implemented by an element whose common case is decided
// without dropping, consuming or emitting a packet, or, for a sink (an
// element without outputs, such as TxXDP), by consuming it: PushBatch
// takes pkts in order, each as Push would, setting ports[i] to the output
// port pkts[i] leaves by (a sink sets none), up to the first packet it
// leaves to Push, and returns how many it took (len(ports) >= len(pkts)).
// The engine routes those (counts them consumed, for a sink), hands the
// next to Push and calls PushBatch again with the rest.
//
// The loop is the element's, not the engine's, because that is where the
// common case's code is inlined: through Push, every packet of every node
// costs an interface call after which the compiler reloads all the loop
// keeps in registers (Go's calling convention saves none of them). An
// element implements Push by PushBatch on one packet, so that each case
// is written once.
type BatchPusher interface {
	PushBatch(in int, pkts []*Packet, ports []uint8) int
}

// Consumed is returned by Push when the packet left the graph: the element
// owns it from now on.
const Consumed = -1

// Drop is returned by Push when the element drops the packet, with
// p.Reason set to why. The engine counts it, under the element and the
// reason (xlb_drop_packets_total{element,reason}), and recycles the frame:
// elements keep no drop counters of their own. An element that loses
// packets after consuming them (a full transmit ring) counts them through
// its Context.DropCounter.
const Drop = -2

// Source produces batches. Pull fills b (b.N packets, each with the output
// port it leaves by, and b.Now) and returns nil; it returns io.EOF when the
// source is exhausted and will never produce again. A live source returns an
// empty batch when nothing arrived within its poll interval.
type Source interface {
	Pull(b *Batch) error
}

// Validator checks the decoded configuration. It must have no side effects:
// `xlbd validate` calls it without provisioning anything.
type Validator interface {
	Validate() error
}

// BackendChecker is implemented by an element whose configuration bounds
// the backends it can send to (DirectRoute reaches only hosts on its
// interface's segments). BackendCheck returns the check of one backend
// address, nil when there is nothing to check here (no interface named,
// or none of that name on this host: provisioning says so). The loader
// calls it after Validate, with every backend the node serves, so that a
// backend out of reach is refused at its address when the file is
// checked or loaded. Like Validate it must have no side effects; it may
// read the host's interfaces. An element that sends to backends from a
// snapshot still checks them there, for what changes without a load.
type BackendChecker interface {
	BackendCheck() func(netip.Addr) error
}

// Provisioner acquires what the element needs to run (tables, files,
// sockets, snapshot stores) after configuration and validation.
type Provisioner interface {
	Provision(ctx *Context) error
}

// Cleaner releases what Provision acquired. It must work after a partial
// or failed Provision, and when Provision was never called (another
// element failed first).
type Cleaner interface {
	Cleanup() error
}

// BatchStarter is called once per batch before any packet of it reaches the
// element: the place to read the batch clock and what the batch's
// worker-local views hold (Context.Local), so that nothing on the
// per-packet path takes a lock.
//
// Every element of a batch must see the same state of anything shared with
// other goroutines, such as the control plane's snapshot: an element must
// not load shared state in its own StartBatch, since another goroutine may
// change it between two elements' StartBatch calls. It reads a worker-local
// object instead, which the engine refreshes once per batch before any
// element's StartBatch (see Context.Local).
type BatchStarter interface {
	StartBatch(now int64)
}

// BatchEnder is called once per batch after every packet of it has left the
// graph: the place to flush transmit queues, publish counters and let go of
// what StartBatch read.
type BatchEnder interface {
	EndBatch()
}

// Prefetcher is called with all of a batch's packets queued for an input
// before Push sees the first of them. An element whose per-packet work
// starts with a cache miss (a large flow table) touches that memory here
// for every packet, so that the misses overlap instead of being paid one
// after another inside Push.
type Prefetcher interface {
	Prefetch(in int, pkts []*Packet)
}

// Metric is one counter or gauge value an element reports.
type Metric struct {
	Name   string // xlb_<subsystem>_<name>
	Help   string
	Labels []Label
	Value  uint64
	Gauge  bool
}

// Label is one metric label.
type Label struct{ Name, Value string }

// StatsReporter reports an element's own metrics beyond the per-port packet
// counts the engine keeps. It is called off the hot path, concurrently with
// the worker, so values must be read atomically.
type StatsReporter interface {
	Stats(emit func(Metric))
}

// ElementType is the registration of an element type (Caddy's
// {ID, New}). Port names are the ones written in HCL (`ct.miss`); port 0 is
// the default when a connection names none.
type ElementType struct {
	Name    string // CamelCase, e.g. "ConnTrack"
	Doc     string // one sentence for `xlbd graph` and docs
	Inputs  []string
	Outputs []string
	// Routes says, for each input, which outputs a packet arriving there can
	// leave by. nil means every input can reach every output. The graph
	// check uses it to tell loops that terminate (ct.miss -> sel ->
	// ct.learn -> ct.hit) from ones that cannot.
	Routes [][]int
	// New returns a new instance with default configuration. It must have
	// no side effects.
	New func() Element
}

func (t *ElementType) port(names []string, name string) int {
	if name == "" {
		return 0
	}
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

// InputPort returns the index of the named input ("" is port 0), or -1.
func (t *ElementType) InputPort(name string) int { return t.port(t.Inputs, name) }

// OutputPort returns the index of the named output ("" is port 0), or -1.
func (t *ElementType) OutputPort(name string) int { return t.port(t.Outputs, name) }

func (t *ElementType) routes(in int) []int {
	if t.Routes != nil {
		return t.Routes[in]
	}
	all := make([]int, len(t.Outputs))
	for i := range all {
		all[i] = i
	}
	return all
}

var registry = struct {
	sync.RWMutex
	types map[string]*ElementType
}{types: map[string]*ElementType{}}

// Register adds an element type. Call it from init; it panics on a duplicate
// name or an inconsistent declaration, which are programming errors.
func Register(t ElementType) {
	if t.Name == "" || t.New == nil {
		panic("pipeline: Register needs a Name and a New function")
	}
	if len(t.Outputs) > 255 {
		panic(fmt.Sprintf("pipeline: element type %s has too many outputs", t.Name))
	}
	if t.Routes != nil && len(t.Routes) != len(t.Inputs) {
		panic(fmt.Sprintf("pipeline: element type %s: Routes has %d entries for %d inputs", t.Name, len(t.Routes), len(t.Inputs)))
	}
	for _, r := range t.Routes {
		for _, o := range r {
			if o < 0 || o >= len(t.Outputs) {
				panic(fmt.Sprintf("pipeline: element type %s: route to output %d out of range", t.Name, o))
			}
		}
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.types[t.Name]; dup {
		panic(fmt.Sprintf("pipeline: element type %s registered twice", t.Name))
	}
	registry.types[t.Name] = &t
}

// Lookup returns the registered element type with the given name.
func Lookup(name string) (*ElementType, bool) {
	registry.RLock()
	defer registry.RUnlock()
	t, ok := registry.types[name]
	return t, ok
}

// Types returns the names of all registered element types, sorted.
func Types() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.types))
	for n := range registry.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Context is what an element gets at Provision: which worker it runs in,
// its instance name, a logger, and values the embedding program provides
// (the snapshot store, for one), looked up by key as in context.Context.
type Context struct {
	Name    string // instance name from the graph, e.g. "ct"
	Worker  int    // 0-based worker index
	Workers int    // number of workers running the graph
	Logger  *slog.Logger

	values map[any]any
	shared *sharedStore
	local  *localStore
	drops  *DropCounter
	emit   *Emitter
}

// FrameSupplier is implemented by a source that can lend spare packets:
// frames of its own that nothing was received into, for an element that
// emits one more packet than it received (Emitter). Spare returns an empty
// packet (Len 0, at least Headroom bytes of headroom, Owner and Handle set
// so that Recycle and a transmit in place work) or nil when none is left.
// It must not allocate: the source keeps a bounded reserve, at least
// MaxBatch packets per batch, and may reuse a spare's Packet once the batch
// is over, as it does its received ones.
type FrameSupplier interface {
	Spare() *Packet
}

// Emitter lets an element emit more packets than it received: Spare lends
// a packet from the source of the batch being processed, Emit queues it on
// one of the element's outputs. The contract:
//
//   - Spare and Emit are called only from Push, on the worker's goroutine.
//   - A spare is either emitted (by the Push that took it) or handed back
//     with Recycle; it then leaves the graph like any packet.
//   - Emit queues the packet ahead of the one Push is handling, on the
//     same batch: the engine counts it on the output port.
//   - A batch holds at most MaxBatch extra packets, so every node queue
//     (2*MaxBatch slots) has room; beyond that, or when the source has no
//     spare frame (or is not a FrameSupplier), Spare returns nil and the
//     element drops what it cannot emit with a reason of its own.
//
// Outside a graph (NewContext) Spare always returns nil.
type Emitter struct {
	inst *Instance
	elem *instElem
}

// Spare lends a packet from the batch's source, or returns nil when the
// batch has had its MaxBatch spares or the source has none.
func (em *Emitter) Spare() *Packet {
	inst := em.inst
	if inst == nil || inst.supplier == nil || inst.lent >= MaxBatch {
		return nil
	}
	p := inst.supplier.Spare()
	if p != nil {
		inst.lent++
	}
	return p
}

// Emit queues p, which Spare lent, on output port out of the element; it
// reports false (and leaves p to the caller) when out is not a port or
// the batch has had its MaxBatch extra packets, which only an element that
// breaks the contract (emitting what Spare did not lend) reaches.
func (em *Emitter) Emit(out int, p *Packet) bool {
	e, inst := em.elem, em.inst
	if e == nil || out < 0 || out >= len(e.out) || inst.emitted >= MaxBatch {
		return false
	}
	inst.emitted++
	e.counts[out]++
	e.nEmitted++
	d := e.out[out]
	d.q[d.n] = p
	d.n++
	return true
}

// Emitter returns the element's Emitter (see Emitter for the contract).
func (c *Context) Emitter() *Emitter {
	if c.emit == nil {
		c.emit = &Emitter{}
	}
	return c.emit
}

// DropCounter returns the element's drop counts, which the engine keeps
// and reports: for an element that loses packets after its Push returned
// Consumed for them (see DropCounter.Add).
func (c *Context) DropCounter() *DropCounter {
	if c.drops == nil {
		c.drops = &DropCounter{}
	}
	return c.drops
}

// Value returns the value stored under key by the embedding program, or nil.
func (c *Context) Value(key any) any { return c.values[key] }

// Shared returns the object stored under key for the whole run (all workers),
// creating it with create on first use. Share-nothing is the rule on the hot
// path; this is for offline sinks such as one capture file written by every
// worker, which then synchronise themselves.
func (c *Context) Shared(key any, create func() any) any {
	c.shared.Lock()
	defer c.shared.Unlock()
	if v, ok := c.shared.m[key]; ok {
		return v
	}
	v := create()
	c.shared.m[key] = v
	return v
}

// Local returns the object stored under key for this worker, creating it
// with create on first use: one per worker, shared by the worker's
// elements and by no other goroutine. It is the place for a per-worker view
// of state that other goroutines change, such as the control plane's
// snapshot: when the object implements BatchStarter, the engine calls its
// StartBatch at the start of every batch, before any element's; when it
// implements BatchEnder, its EndBatch after every element's. So every
// element of a batch reads what one StartBatch loaded, and a view can drop
// its reference at the end of a batch, so that an idle worker pins nothing.
// Objects run in the order they were created. Outside a graph (NewContext)
// nothing calls them: the caller drives them itself.
func (c *Context) Local(key any, create func() any) any {
	if v, ok := c.local.m[key]; ok {
		return v
	}
	v := create()
	c.local.m[key] = v
	c.local.order = append(c.local.order, v)
	return v
}

// NewContext returns a Context for provisioning an element outside a graph,
// as unit tests and tools do. values are returned by Value.
func NewContext(name string, worker, workers int, values map[any]any) *Context {
	return &Context{Name: name, Worker: worker, Workers: max(workers, 1),
		Logger: slog.New(slog.DiscardHandler), values: values, shared: &sharedStore{m: map[any]any{}}, local: newLocalStore()}
}

// NewContexts returns a Context for each of workers workers, as NewContext
// does, sharing what Shared holds as a graph's workers do: for tools that
// drive several workers' elements themselves.
func NewContexts(name string, workers int, values map[any]any) []*Context {
	workers = max(workers, 1)
	shared := &sharedStore{m: map[any]any{}}
	cs := make([]*Context, workers)
	for w := range cs {
		cs[w] = NewContext(name, w, workers, values)
		cs[w].shared = shared
	}
	return cs
}

type sharedStore struct {
	sync.Mutex
	m map[any]any
}

// localStore holds one worker's Local objects; only that worker's
// goroutine (and Provision, before it runs) touches it.
type localStore struct {
	m     map[any]any
	order []any
}

func newLocalStore() *localStore { return &localStore{m: map[any]any{}} }
