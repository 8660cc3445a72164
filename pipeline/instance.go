package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure the instantiation of a graph.
type Options struct {
	// Workers is how many copies of the graph run, each in its own
	// goroutine with its own elements (share nothing). 0 means 1.
	Workers int
	Logger  *slog.Logger
	// Values are handed to elements through Context.Value.
	Values map[any]any
	// Pin, when set, is called by each worker on its own locked OS thread
	// before it runs, to bind that thread to a CPU: a worker then keeps
	// its caches and its RX queue's interrupts on one core.
	Pin func(worker int) error
	// StallAfter is how long a worker's loop may stand still before
	// Runtime.SelfCheck reports it; 0 means DefaultStallAfter. It is
	// raised to ten of the longest wait of any source (PollWaiter).
	StallAfter time.Duration
}

// Instance is one worker's copy of the graph. It is driven by one goroutine;
// only Stats may be called from others.
type Instance struct {
	worker  int
	elems   []*instElem
	order   []*node
	sources []*instElem

	starters []BatchStarter
	enders   []BatchEnder

	// supplier is the source of the batch being processed when it lends
	// spare packets (nil otherwise); lent and emitted count the batch's
	// spares and extra packets, each at most MaxBatch: see Emitter.
	supplier      FrameSupplier
	lent, emitted int

	// iters counts the turns of Run's loop and state is where Run is
	// (notRunning, running, exited): the self-check reads both.
	iters atomic.Uint64
	state atomic.Int32
}

type instElem struct {
	decl *ElementDecl
	typ  *ElementType
	el   Element
	src  Source
	// supplier is src when it lends spare packets (FrameSupplier).
	supplier FrameSupplier
	out      []*node // destination node of each output port

	inPkts   []atomic.Uint64
	outPkts  []atomic.Uint64
	consumed atomic.Uint64
	emitted  atomic.Uint64
	counts   []uint32 // per-output scratch for one batch
	nEmitted uint32   // packets emitted in one batch (scratch)
	drops    DropCounter
	// One node run's drops by reason, and the reasons counted in it.
	dropCounts  [MaxReasons]uint32
	dropReasons []Reason
}

// node is one input port of one element instance, with the packets queued
// for it during the current batch. A batch holds at most MaxBatch packets
// from its source and MaxBatch more that elements emitted (Emitter), and
// each is in exactly one queue, so 2*MaxBatch slots always suffice.
type node struct {
	elem     *instElem
	push     Pusher
	batch    BatchPusher // nil unless the element implements it
	prefetch Prefetcher  // nil unless the element implements it
	in       int
	n        int
	q        [2 * MaxBatch]*Packet
	// ports is PushBatch's scratch: the output port of each packet of q.
	ports [2 * MaxBatch]uint8
}

// instantiate builds worker's copy of the graph: New, Configure and
// Validate for every element, then Provision, sources first and the others
// in declaration order. Sources own the frames packets live in, so an
// element that transmits them (TxXDP) finds its source's socket whatever
// order the file declares them in. On error every element is cleaned up.
func (g *Graph) instantiate(worker int, opts Options, shared *sharedStore) (_ *Instance, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	workers := max(opts.Workers, 1)
	if shared == nil {
		shared = &sharedStore{m: map[any]any{}}
	}
	inst := &Instance{worker: worker}
	local := newLocalStore()
	defer func() {
		if err != nil {
			inst.Close()
		}
	}()
	wrap := func(ie *instElem, err error) error {
		return fmt.Errorf("while configuring `%s` (%s): %w", ie.decl.Name, ie.typ.Name, err)
	}
	for i := range g.elems {
		ge := &g.elems[i]
		ie := &instElem{decl: ge.decl, typ: ge.typ, el: ge.typ.New(),
			inPkts: make([]atomic.Uint64, len(ge.typ.Inputs)), outPkts: make([]atomic.Uint64, len(ge.typ.Outputs)),
			counts: make([]uint32, len(ge.typ.Outputs)), dropReasons: make([]Reason, 0, MaxReasons)}
		inst.elems = append(inst.elems, ie)
		if ge.decl.Configure != nil {
			if err := ge.decl.Configure(ie.el); err != nil {
				return nil, wrap(ie, err)
			}
		}
		if v, ok := ie.el.(Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, wrap(ie, err)
			}
		}
		if len(ge.typ.Inputs) == 0 {
			src, ok := ie.el.(Source)
			if !ok {
				return nil, wrap(ie, errors.New("element type has no inputs but does not implement pipeline.Source"))
			}
			ie.src = src
			ie.supplier, _ = src.(FrameSupplier)
			inst.sources = append(inst.sources, ie)
		} else if _, ok := ie.el.(Pusher); !ok {
			return nil, wrap(ie, errors.New("element type has inputs but does not implement pipeline.Pusher"))
		}
		if s, ok := ie.el.(BatchStarter); ok {
			inst.starters = append(inst.starters, s)
		}
		if e, ok := ie.el.(BatchEnder); ok {
			inst.enders = append(inst.enders, e)
		}
	}
	provision := func(ie *instElem) error {
		p, ok := ie.el.(Provisioner)
		if !ok {
			return nil
		}
		ctx := &Context{Name: ie.decl.Name, Worker: worker, Workers: workers,
			Logger: opts.Logger.With("element", ie.decl.Name, "worker", worker), values: opts.Values, shared: shared, local: local,
			drops: &ie.drops, emit: &Emitter{inst: inst, elem: ie}}
		if err := p.Provision(ctx); err != nil {
			return wrap(ie, err)
		}
		return nil
	}
	for _, ie := range inst.sources {
		if err := provision(ie); err != nil {
			return nil, err
		}
	}
	for _, ie := range inst.elems {
		if ie.src == nil {
			if err := provision(ie); err != nil {
				return nil, err
			}
		}
	}
	// The worker's Local objects frame every batch: their StartBatch runs
	// before any element's, their EndBatch after every element's.
	var starters []BatchStarter
	for _, v := range local.order {
		if s, ok := v.(BatchStarter); ok {
			starters = append(starters, s)
		}
		if e, ok := v.(BatchEnder); ok {
			inst.enders = append(inst.enders, e)
		}
	}
	inst.starters = append(starters, inst.starters...)
	nodes := map[nodeRef]*node{}
	for _, ref := range g.order {
		ie := inst.elems[ref.elem]
		n := &node{elem: ie, push: ie.el.(Pusher), in: ref.in}
		n.batch, _ = ie.el.(BatchPusher)
		n.prefetch, _ = ie.el.(Prefetcher)
		nodes[ref] = n
		inst.order = append(inst.order, n)
	}
	for i, ge := range g.elems {
		inst.elems[i].out = make([]*node, len(ge.out))
		for o, dst := range ge.out {
			inst.elems[i].out[o] = nodes[dst]
		}
	}
	return inst, nil
}

// Process runs one batch from source src (an index into Sources) through the
// graph to completion: every packet ends consumed by some element.
func (inst *Instance) Process(src int, b *Batch) {
	for _, s := range inst.starters {
		s.StartBatch(b.Now)
	}
	se := inst.sources[src]
	inst.supplier, inst.lent, inst.emitted = se.supplier, 0, 0
	se.route(b.Pkts[:b.N], b.Ports[:b.N])
	se.publish()
	for _, n := range inst.order {
		if n.n > 0 {
			n.run()
		}
	}
	for _, e := range inst.enders {
		e.EndBatch()
	}
	inst.supplier = nil
}

// run pushes the node's queued packets through its element and queues each
// on the input its output port leads to, counts it consumed when the
// element took it (a sink's PushBatch takes what it consumes), or counts
// and recycles it when the element drops it. Counters are summed locally
// and published once per batch, so the per-packet cost is a plain
// increment.
//
// What the loop reads of n and e is held in locals: Push is an interface
// call, after which the compiler must otherwise load it all again. Queue
// slots are not cleared after use: only the first n are ever read, and a
// stale pointer keeps alive nothing but a source's packet array.
func (n *node) run() {
	q := n.q[:n.n]
	n.n = 0
	e := n.elem
	in := n.in
	e.inPkts[in].Add(uint64(len(q)))
	if n.prefetch != nil {
		n.prefetch.Prefetch(in, q)
	}
	if n.batch == nil {
		n.pushEach(q)
	} else {
		sink := len(e.out) == 0
		consumed := 0
		for len(q) > 0 {
			k := n.batch.PushBatch(in, q, n.ports[:len(q)])
			if sink {
				consumed += k
			} else {
				e.route(q[:k], n.ports[:k])
			}
			if k == len(q) {
				break
			}
			n.pushEach(q[k : k+1])
			q = q[k+1:]
		}
		if consumed > 0 {
			e.consumed.Add(uint64(consumed))
		}
	}
	e.publish()
}

// pushEach pushes q's packets through the element one by one.
func (n *node) pushEach(q []*Packet) {
	e := n.elem
	counts, out := e.counts, e.out
	push, in := n.push, n.in
	consumed := uint64(0)
	for _, p := range q {
		port := push.Push(in, p)
		if port < 0 {
			if port == Drop {
				e.drop(p)
			} else {
				consumed++
			}
			continue
		}
		counts[port]++
		d := out[port]
		d.q[d.n] = p
		d.n++
	}
	if consumed > 0 {
		e.consumed.Add(consumed)
	}
}

// route queues each packet of q on the input its port in ports leads to.
// Packets that all leave by one port, as they do on a hit path, are
// queued with one copy: queued one by one, each waits for the queue's
// length that the one before stored.
func (e *instElem) route(q []*Packet, ports []uint8) {
	counts, out := e.counts, e.out
	ports = ports[:len(q)]
	if len(q) > 0 && samePort(ports) {
		port := ports[0]
		counts[port] += uint32(len(q))
		d := out[port]
		d.n += copy(d.q[d.n:], q)
		return
	}
	for i, p := range q {
		port := ports[i]
		counts[port]++
		d := out[port]
		d.q[d.n] = p
		d.n++
	}
}

// samePort reports whether every port of ports (at least one) is the
// first's, comparing eight at a time.
func samePort(ports []uint8) bool {
	all := uint64(ports[0]) * 0x0101010101010101
	for len(ports) >= 8 {
		if binary.LittleEndian.Uint64(ports) != all {
			return false
		}
		ports = ports[8:]
	}
	for _, p := range ports {
		if p != uint8(all) {
			return false
		}
	}
	return true
}

// drop counts p under its reason in the batch's scratch and recycles it.
func (e *instElem) drop(p *Packet) {
	r := bounded(p.Reason)
	if e.dropCounts[r] == 0 {
		e.dropReasons = append(e.dropReasons, r)
	}
	e.dropCounts[r]++
	p.Recycle()
}

// publish adds the batch's per-output and per-reason counts to the shared
// counters and clears the scratch.
func (e *instElem) publish() {
	for o, c := range e.counts {
		if c > 0 {
			e.outPkts[o].Add(uint64(c))
			e.counts[o] = 0
		}
	}
	if e.nEmitted > 0 {
		e.emitted.Add(uint64(e.nEmitted))
		e.nEmitted = 0
	}
	for _, r := range e.dropReasons {
		e.drops.n[r].Add(uint64(e.dropCounts[r]))
		e.dropCounts[r] = 0
	}
	e.dropReasons = e.dropReasons[:0]
}

// Sources returns how many source elements the instance has.
func (inst *Instance) Sources() int { return len(inst.sources) }

// Run pulls from every source in turn and processes what it returns, until
// all sources reach io.EOF, a source fails, or ctx is done.
func (inst *Instance) Run(ctx context.Context) error {
	inst.state.Store(running)
	defer inst.state.Store(exited)
	var b Batch
	done := make([]bool, len(inst.sources))
	live := len(inst.sources)
	for live > 0 {
		if err := ctx.Err(); err != nil {
			return nil
		}
		inst.iters.Add(1)
		for i, s := range inst.sources {
			if done[i] {
				continue
			}
			b.Reset()
			err := s.src.Pull(&b)
			if errors.Is(err, io.EOF) {
				done[i] = true
				live--
			} else if err != nil {
				return fmt.Errorf("worker %d: %s: %w", inst.worker, s.decl.Name, err)
			}
			if b.N > 0 || err == nil {
				inst.Process(i, &b)
			}
		}
	}
	return nil
}

// Close cleans up every element, in reverse order of creation, and returns
// the errors joined.
func (inst *Instance) Close() error {
	var errs []error
	for i := len(inst.elems) - 1; i >= 0; i-- {
		if c, ok := inst.elems[i].el.(Cleaner); ok {
			if err := c.Cleanup(); err != nil {
				errs = append(errs, fmt.Errorf("cleaning up `%s`: %w", inst.elems[i].decl.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Element returns the instance of the named element, for tests and tools.
func (inst *Instance) Element(name string) Element {
	for _, e := range inst.elems {
		if e.decl.Name == name {
			return e.el
		}
	}
	return nil
}

// Runtime is every worker's instance of one graph.
type Runtime struct {
	graph *Graph
	insts []*Instance
	pin   func(worker int) error
	check selfCheck
}

// Start instantiates the graph once per worker. On error nothing is left
// provisioned.
func (g *Graph) Start(opts Options) (*Runtime, error) {
	workers := max(opts.Workers, 1)
	opts.Workers = workers
	shared := &sharedStore{m: map[any]any{}}
	rt := &Runtime{graph: g, pin: opts.Pin}
	for w := 0; w < workers; w++ {
		inst, err := g.instantiate(w, opts, shared)
		if err != nil {
			rt.Close()
			return nil, err
		}
		rt.insts = append(rt.insts, inst)
	}
	rt.check.after = stallAfter(opts.StallAfter, rt.insts)
	return rt, nil
}

// Run runs every worker until all of its sources are exhausted or ctx is
// done, and returns the first error. A failing worker cancels the others.
func (rt *Runtime) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(rt.insts))
	for i, inst := range rt.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The thread stays locked to the end: a pinned thread must not
			// go back to the scheduler's pool with its affinity.
			runtime.LockOSThread()
			if rt.pin != nil {
				if errs[i] = rt.pin(i); errs[i] != nil {
					errs[i] = fmt.Errorf("worker %d: pinning: %w", i, errs[i])
					cancel()
					return
				}
			}
			if errs[i] = inst.Run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Workers returns the per-worker instances.
func (rt *Runtime) Workers() []*Instance { return rt.insts }

// Close cleans up every worker's elements.
func (rt *Runtime) Close() error {
	var errs []error
	for _, inst := range rt.insts {
		errs = append(errs, inst.Close())
	}
	return errors.Join(errs...)
}

// Preflighter is implemented by elements that need something of the host
// (an interface, privileges, kernel features): Preflight says what is
// missing and how to get it, one error a problem, before anything is
// started.
type Preflighter interface {
	Preflight() []error
}

// Preflight asks every element that can whether the host has what it
// needs, configuring throwaway instances as SuggestedWorkers does. Each
// problem names the first element that found it (RxXDP and TxXDP on one
// interface lack the same things); all are returned at once, joined.
func (g *Graph) Preflight() error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range g.elems {
		el := e.typ.New()
		pf, ok := el.(Preflighter)
		if !ok {
			continue
		}
		if e.decl.Configure != nil {
			if err := e.decl.Configure(el); err != nil {
				errs = append(errs, fmt.Errorf("while configuring `%s` (%s): %w", e.decl.Name, e.typ.Name, err))
				continue
			}
		}
		for _, err := range pf.Preflight() {
			if !seen[err.Error()] {
				seen[err.Error()] = true
				errs = append(errs, fmt.Errorf("`%s` (%s): %w", e.decl.Name, e.typ.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// WorkerSuggester is implemented by sources that know how many workers suit
// them: RxXDP suggests one per RX queue of its interface.
type WorkerSuggester interface {
	SuggestWorkers() (int, error)
}

// SuggestedWorkers returns the smallest number of workers the graph's
// sources suggest, capped by the number of CPUs; 1 when none suggests any.
// It configures throwaway instances (New has no side effects) to ask them.
func (g *Graph) SuggestedWorkers() (int, error) {
	n := 0
	for _, e := range g.elems {
		el := e.typ.New()
		ws, ok := el.(WorkerSuggester)
		if !ok {
			continue
		}
		if e.decl.Configure != nil {
			if err := e.decl.Configure(el); err != nil {
				return 0, fmt.Errorf("while configuring `%s` (%s): %w", e.decl.Name, e.typ.Name, err)
			}
		}
		k, err := ws.SuggestWorkers()
		if err != nil {
			return 0, fmt.Errorf("`%s` (%s): %w", e.decl.Name, e.typ.Name, err)
		}
		if k > 0 && (n == 0 || k < n) {
			n = k
		}
	}
	return min(max(n, 1), runtime.NumCPU()), nil
}
