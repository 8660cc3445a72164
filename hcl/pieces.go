package hcl

import (
	"cmp"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// pieceSize is about how many bytes of a file parseText reads at a time
// (see parseConfig).
const pieceSize = 16 << 10

// parseConfig checks src against the limits and parses it as
// hclsyntax.ParseConfig does, from its start, but in pieces of about
// pieceSize bytes, on every core, each with parseText: hclsyntax's lexer,
// which parseText uses for what fastParse leaves, builds one slice of
// tokens for what it reads, and growing that slice for a file of
// megabytes, under the garbage collector, cost more than all the rest of a
// load. A file of one piece is parsed as it is; otherwise the bodies of
// the pieces are merged into one. The file's Nav is nil when fastParse
// parsed it or when it is in pieces.
func parseConfig(src []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	segs, diags := scanLimits(src, filename, hcl.InitialPos, pieceSize)
	if diags.HasErrors() {
		return nil, diags
	}
	return parsePieces(src, filename, segs)
}

// A segment is a part of a file that hclsyntax parses alone as it parses
// it in the whole: it starts at the file's start or after a newline between
// top-level items, and ends at the file's end or where the next starts.
// A top-level block with a long body is a segment of its own, cut inside
// too.
type segment struct {
	from, to hcl.Pos
	// body are where a top-level block's body is cut, after newlines
	// between its items, and close the block's closing brace, which ends
	// the segment. Empty for a segment of whole items.
	body  []hcl.Pos
	close hcl.Range
}

// cutter finds the segments of a file as its tokens go by: the first
// top-level newline after every `every` bytes ends a segment, and a
// top-level block whose body has such newlines, that closes its body on a
// line of its own and ends with a newline, is cut at them.
type cutter struct {
	filename string
	every    int
	segs     []segment
	from     hcl.Pos // where the current segment starts

	// The current top-level item: where it starts, how many tokens it
	// has, and whether it is an attribute (its second token is =).
	item       hcl.Pos
	itemTokens int
	attribute  bool

	// A top-level block whose body is open: the segment it would make,
	// where the last cut is, and whether its line has had only spaces
	// and comments so far.
	block     *segment
	lastCut   int
	lineStart bool
	// A block whose body has closed, waiting for its newline.
	closed *segment
}

func newCutter(filename string, start hcl.Pos, every int) *cutter {
	return &cutter{filename: filename, every: every, from: start}
}

// token takes the next token, of type ty and text text at r, which took
// the nesting from `before` open frames to `after`.
func (c *cutter) token(ty hclsyntax.TokenType, text []byte, r hcl.Range, before, after int) {
	// A newline-terminated comment counts as a newline, as the parser
	// takes it where newlines end items.
	newline := ty == hclsyntax.TokenNewline || ty == hclsyntax.TokenComment && len(text) > 0 && text[len(text)-1] == '\n'
	if b := c.closed; b != nil {
		c.closed = nil
		if newline || ty == hclsyntax.TokenEOF {
			if b.from.Byte > c.from.Byte {
				c.segs = append(c.segs, segment{from: c.from, to: b.from})
			}
			c.segs = append(c.segs, *b)
			c.from = b.to
		}
	}
	switch {
	case before == 1 && newline:
		c.itemTokens = 0
		if r.End.Byte-c.from.Byte >= c.every {
			c.segs = append(c.segs, segment{from: c.from, to: r.End})
			c.from = r.End
		}
	case before == 1 && ty != hclsyntax.TokenComment && ty != hclsyntax.TokenEOF:
		if c.itemTokens == 0 {
			c.item = r.Start
		}
		c.itemTokens++
		if c.itemTokens == 2 {
			c.attribute = ty == hclsyntax.TokenEqual
		}
		if ty == hclsyntax.TokenOBrace && after == 2 && !c.attribute {
			c.block = &segment{from: c.item}
			c.lastCut = r.End.Byte
			c.lineStart = false
		}
	case before == 2 && c.block != nil:
		switch {
		case newline && after == 2:
			c.lineStart = true
			if r.End.Byte-c.lastCut >= c.every {
				c.block.body = append(c.block.body, r.End)
				c.lastCut = r.End.Byte
			}
		case ty == hclsyntax.TokenCBrace && after == 1:
			if c.lineStart && len(c.block.body) > 0 {
				c.block.to, c.block.close = r.End, r
				c.closed = c.block
			}
			c.block = nil
		case ty != hclsyntax.TokenComment:
			c.lineStart = false
		}
	}
}

// segments returns the segments, once every token including the end of
// file has gone by: the last one is always of whole items.
func (c *cutter) segments() []segment {
	if len(c.segs) == 0 {
		return nil
	}
	return append(c.segs, segment{from: c.from, to: hcl.Pos{Byte: -1}})
}

// parsePieces parses src as hclsyntax.ParseConfig does, segment by
// segment (from scanLimits), and merges the bodies.
func parsePieces(src []byte, filename string, segs []segment) (*hcl.File, hcl.Diagnostics) {
	if len(segs) == 0 {
		return parseText(src, filename, hcl.InitialPos)
	}
	type parsed struct {
		body  *hclsyntax.Body
		diags hcl.Diagnostics
	}
	pieces := make([]parsed, len(segs))
	parallel(len(segs), func(i int) { pieces[i].body, pieces[i].diags = parseSegment(src, filename, segs[i]) })
	body := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}}
	var diags hcl.Diagnostics
	for i, p := range pieces {
		diags = append(diags, p.diags...)
		diags = append(diags, merge(body, p.body)...)
		if i == 0 {
			body.SrcRange = p.body.SrcRange
		}
		body.SrcRange = hcl.RangeBetween(body.SrcRange, p.body.SrcRange)
		body.EndRange = p.body.EndRange
	}
	return &hcl.File{Body: body, Bytes: src}, diags
}

// parallel calls f(0) to f(n-1), on every core: a large file's pieces,
// and a configuration's fragments, are independent until they are merged,
// in order. A panic in f is raised again in the caller's goroutine, where
// xlbd recovers it and rejects the configuration.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var panicked atomic.Pointer[any]
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					panicked.CompareAndSwap(nil, &r)
					next.Store(int64(n)) // the others stop too
				}
			}()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
	if r := panicked.Load(); r != nil {
		panic(*r)
	}
}

// parseSegment parses one segment of src.
func parseSegment(src []byte, filename string, s segment) (*hclsyntax.Body, hcl.Diagnostics) {
	if len(s.body) > 0 {
		return parseBlock(src, filename, s)
	}
	to := s.to.Byte
	if to < 0 {
		to = len(src)
	}
	f, diags := parseText(src[s.from.Byte:to], filename, s.from)
	return f.Body.(*hclsyntax.Body), diags
}

// parseBlock parses a segment that is one top-level block cut in its body:
// its header and first items with a closing brace added, then the other
// items of its body piece by piece. It returns a body that holds the
// block.
func parseBlock(src []byte, filename string, s segment) (*hclsyntax.Body, hcl.Diagnostics) {
	head := append(src[s.from.Byte:s.body[0].Byte:s.body[0].Byte], '}')
	f, diags := parseText(head, filename, s.from)
	top := f.Body.(*hclsyntax.Body)
	if len(top.Blocks) != 1 || len(top.Attributes) > 0 {
		// Not one block after all: parse it whole.
		f, diags = parseText(src[s.from.Byte:s.to.Byte], filename, s.from)
		return f.Body.(*hclsyntax.Body), diags
	}
	b := top.Blocks[0]
	parts := make([]*hcl.File, len(s.body))
	partDiags := make([]hcl.Diagnostics, len(s.body))
	parallel(len(s.body), func(i int) {
		to := s.close.Start
		if i+1 < len(s.body) {
			to = s.body[i+1]
		}
		parts[i], partDiags[i] = parseText(src[s.body[i].Byte:to.Byte], filename, s.body[i])
	})
	for i, f := range parts {
		diags = append(diags, partDiags[i]...)
		diags = append(diags, merge(b.Body, f.Body.(*hclsyntax.Body))...)
	}
	// What the whole parse takes from the real closing brace.
	b.CloseBraceRange = s.close
	b.Body.SrcRange = hcl.RangeBetween(b.OpenBraceRange, s.close)
	b.Body.EndRange = hcl.Range{Filename: filename, Start: s.close.End, End: s.close.End}
	top.SrcRange = hcl.RangeBetween(top.SrcRange, s.close)
	top.EndRange = b.Body.EndRange
	return top, diags
}

// merge adds the items of body from to body into, reporting an attribute
// set in both as the parser reports one set twice in a body.
func merge(into, from *hclsyntax.Body) hcl.Diagnostics {
	var diags hcl.Diagnostics
	attrs := slices.SortedFunc(maps.Values(from.Attributes), func(a, b *hclsyntax.Attribute) int {
		return cmp.Compare(a.SrcRange.Start.Byte, b.SrcRange.Start.Byte)
	})
	for _, a := range attrs {
		if prev, dup := into.Attributes[a.Name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Attribute redefined",
				Detail:   fmt.Sprintf("The argument %q was already set at %s. Each argument may be set only once.", a.Name, prev.NameRange.String()),
				Subject:  &a.NameRange,
			})
			continue
		}
		into.Attributes[a.Name] = a
	}
	into.Blocks = append(into.Blocks, from.Blocks...)
	return diags
}
