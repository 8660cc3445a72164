package pipeline

import (
	"context"
	"testing"
)

// BenchmarkRun measures one turn of a worker's loop (Instance.Run) with a
// batch of one packet: what the loop itself costs per Pull, the
// self-check's progress count included.
func BenchmarkRun(b *testing.B) {
	spec := Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("sink", "TSink", 2)},
		Connections: []Connection{conn("src", "sink", 3)}}
	spec.Elements[0].Configure = func(e Element) error {
		s := e.(*tSource)
		s.Count, s.Batch = b.N, 1
		return nil
	}
	g, errs := Build(spec)
	if errs != nil {
		b.Fatal(errs)
	}
	rt, err := g.Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	b.ReportAllocs()
	b.ResetTimer()
	if err := rt.Workers()[0].Run(context.Background()); err != nil {
		b.Fatal(err)
	}
}
