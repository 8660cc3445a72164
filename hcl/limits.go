package hcl

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limits on what the loader parses. hclsyntax's parser recurses once or more
// per level of nesting, and so do evaluation and every walk over the syntax
// tree; a goroutine stack overflow cannot be recovered and ends the process
// (a running xlbd too, on SIGHUP). So every text a user gives is checked on
// its token stream, which the lexer makes without recursion, before it is
// parsed. Both limits are far above real files, whose nesting stays below 20
// and whose size below a few megabytes (10,000 VIPs with 10 backends each
// take 6 MB); docs/hcl.md states them.
const (
	// MaxFileSize is the largest file, in bytes. Loading one takes about
	// 85 bytes of memory per byte of file (500 MB for the 6 MB above):
	// the limit keeps a load under about 1.5 GB.
	MaxFileSize = 16 << 20
	// MaxNesting is the deepest nesting of an expression or block: each
	// bracket, quote or heredoc, interpolation, template directive, and
	// each operator of a chain (a + b + c, !!x, a ? b : c ? d : e, x[i][j])
	// counts as a level.
	MaxNesting = 1000
)

// checkLimits reports the first place where src, parsed from start,
// crosses MaxFileSize or MaxNesting, as an error diagnostic; nil when it
// stays within them. Every text that reaches hclsyntax's parser goes
// through it first.
func checkLimits(src []byte, filename string, start hcl.Pos) hcl.Diagnostics {
	_, diags := scanLimits(src, filename, start, pieceSize)
	return diags
}

// scanLimits checks src as checkLimits does and also returns how to parse
// it in pieces (see parsePieces): segments that each start after a newline
// between items, the first one after every `every` bytes.
func scanLimits(src []byte, filename string, start hcl.Pos, every int) ([]segment, hcl.Diagnostics) {
	if len(src) > MaxFileSize {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "File too large",
			Detail: fmt.Sprintf("The file is larger than the limit of %d bytes (%d MiB) that keeps loading it within bounded time and memory; split the configuration, or generate less of it.",
				MaxFileSize, MaxFileSize>>20),
			Subject: bytePos(src, filename, start, MaxFileSize).Ptr(),
		}}
	}
	if segs, ok := quickScan(src, filename, start, every); ok {
		return segs, nil
	}
	return lexScan(src, filename, start, every)
}

// lexScan is scanLimits on the tokens of hclsyntax's lexer.
func lexScan(src []byte, filename string, start hcl.Pos, every int) ([]segment, hcl.Diagnostics) {
	// The lexer's own diagnostics (invalid characters) are left to the parser.
	tokens, _ := hclsyntax.LexConfig(src, filename, start)
	var n nesting
	c := newCutter(filename, start, every)
	for i := range tokens {
		tok := &tokens[i]
		frames := n.frames()
		if n.next(tok.Type, tok.Bytes) > MaxNesting {
			return nil, tooDeep(tok.Range)
		}
		c.token(tok.Type, tok.Bytes, tok.Range, frames, n.frames())
	}
	return c.segments(), nil
}

// bytePos returns the empty range at byte offset off of src.
func bytePos(src []byte, filename string, start hcl.Pos, off int) hcl.Range {
	line := bytes.Count(src[:off], []byte("\n"))
	col := off - (bytes.LastIndexByte(src[:off], '\n') + 1)
	if line == 0 {
		col += start.Column - 1
	}
	p := hcl.Pos{Line: start.Line + line, Column: col + 1, Byte: start.Byte + off}
	return hcl.Range{Filename: filename, Start: p, End: p}
}

// nesting bounds the depth of the syntax tree hclsyntax would build from a
// token stream, from above. The tree nests at each opening token (until its
// closing one) and at each operator: a chain of operators builds a tree as
// deep as the chain is long (a+b+c is (a+b)+c; !!x is !(!x); a?b:c?d:e
// nests its false results; x[i][j] and splats nest their collections), and
// the chain lasts until a separator: a comma, or a newline where newlines
// end items (bodies and object constructors). Closing tokens that do not
// match are ignored, so broken nesting only counts deeper.
type nesting struct {
	stack []frame
	depth int
	// prev is the type of the previous token other than comments and
	// newlines, and prevIn whether it was the name "in".
	prev   hclsyntax.TokenType
	prevIn bool
}

type frame struct {
	// closer is the token type that ends the frame. A directive frame
	// (%{if}…%{endif}) has none: the template control frame of its
	// endif or endfor ends it.
	closer   hclsyntax.TokenType
	endsWith string // a directive frame's end keyword
	// newlines reports whether a newline ends an item here.
	newlines bool
	// brace is set from a brace to its first token and then to the
	// second when the first is the keyword for: a for expression, where
	// newlines are not separators, is for followed by a name.
	brace int
	// directive is the keyword after %{ in a template control frame;
	// endsParent is set when it ends the directive frame it is in.
	directive  string
	endsParent bool
	chain      int // operators since the last separator
	saved      int // the depth before the frame opened
}

var closers = map[hclsyntax.TokenType]hclsyntax.TokenType{
	hclsyntax.TokenOParen:          hclsyntax.TokenCParen,
	hclsyntax.TokenOBrack:          hclsyntax.TokenCBrack,
	hclsyntax.TokenOBrace:          hclsyntax.TokenCBrace,
	hclsyntax.TokenOQuote:          hclsyntax.TokenCQuote,
	hclsyntax.TokenOHeredoc:        hclsyntax.TokenCHeredoc,
	hclsyntax.TokenTemplateInterp:  hclsyntax.TokenTemplateSeqEnd,
	hclsyntax.TokenTemplateControl: hclsyntax.TokenTemplateSeqEnd,
}

// operators are the tokens that extend a chain: unary and binary operators
// and the conditional's question mark. A star is also the splat of .* and
// [*].
var operators = map[hclsyntax.TokenType]bool{
	hclsyntax.TokenPlus: true, hclsyntax.TokenMinus: true, hclsyntax.TokenStar: true,
	hclsyntax.TokenSlash: true, hclsyntax.TokenPercent: true,
	hclsyntax.TokenEqualOp: true, hclsyntax.TokenNotEqual: true,
	hclsyntax.TokenLessThan: true, hclsyntax.TokenLessThanEq: true,
	hclsyntax.TokenGreaterThan: true, hclsyntax.TokenGreaterThanEq: true,
	hclsyntax.TokenAnd: true, hclsyntax.TokenOr: true, hclsyntax.TokenBang: true,
	hclsyntax.TokenQuestion: true,
}

// postfix reports whether a token of type ty, after one of type prev,
// applies to the term that prev ends, one level above it: an index or a
// splat ([ after a name, a number or a closing token) or an attribute of a
// computed value (. after a closing token; a name's attributes stay one
// flat traversal). prevIn tells the keyword in of a for expression, before
// its collection.
func postfix(ty, prev hclsyntax.TokenType, prevIn bool) bool {
	closing := false
	switch prev {
	case hclsyntax.TokenCParen, hclsyntax.TokenCBrack, hclsyntax.TokenCBrace, hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc:
		closing = true
	}
	switch ty {
	case hclsyntax.TokenOBrack:
		return closing || prev == hclsyntax.TokenNumberLit || prev == hclsyntax.TokenIdent && !prevIn
	case hclsyntax.TokenDot:
		return closing
	}
	return false
}

// next takes the next token, of type ty and text text, and returns the
// depth it brings the tree to.
func (n *nesting) next(ty hclsyntax.TokenType, text []byte) int {
	if ty == hclsyntax.TokenComment {
		return n.depth
	}
	if n.stack == nil {
		// The file's body: newlines end its items.
		n.stack = []frame{{closer: hclsyntax.TokenEOF, newlines: true}}
	}
	top := &n.stack[len(n.stack)-1]
	isName := ty == hclsyntax.TokenIdent
	if top.brace > 0 && ty != hclsyntax.TokenNewline {
		if top.brace == 2 && isName {
			top.newlines = false
		}
		top.brace = 0
		if isName && string(text) == "for" {
			top.brace = 2
		}
	}
	prev, prevIn := n.prev, n.prevIn
	if ty != hclsyntax.TokenNewline {
		n.prev, n.prevIn = ty, isName && string(text) == "in"
	}
	switch {
	case ty == hclsyntax.TokenComma || ty == hclsyntax.TokenNewline && top.newlines:
		n.depth -= top.chain
		top.chain = 0
	case ty == top.closer:
		n.close()
	case isName && prev == hclsyntax.TokenTemplateControl && top.closer == hclsyntax.TokenTemplateSeqEnd:
		top.directive = string(text)
		top.endsParent = n.stack[len(n.stack)-2].endsWith == top.directive
	case operators[ty] || postfix(ty, prev, prevIn):
		top.chain++
		n.depth++
		if ty == hclsyntax.TokenOBrack {
			n.open(ty)
		}
	case closers[ty] != 0:
		n.open(ty)
	}
	return n.depth
}

// frames returns how many frames are open: 1 in the file's body, 2 in the
// body of a top-level block.
func (n *nesting) frames() int { return max(len(n.stack), 1) }

func (n *nesting) open(ty hclsyntax.TokenType) {
	f := frame{closer: closers[ty], saved: n.depth}
	switch ty {
	case hclsyntax.TokenOBrace:
		f.newlines, f.brace = true, 1
	case hclsyntax.TokenTemplateControl:
		// %{if c} nests what follows it up to its %{endif}: the
		// directive frame that close opens counts that level. The
		// condition or collection sits beside the directive, not in it.
		n.stack = append(n.stack, f)
		return
	}
	n.stack = append(n.stack, f)
	n.depth++
}

// close ends the frame on top. A template control frame then opens the
// directive it starts (%{if …}, %{for …}) or ends it (%{endif}, %{endfor}).
func (n *nesting) close() {
	f := n.stack[len(n.stack)-1]
	n.stack = n.stack[:len(n.stack)-1]
	n.depth = f.saved
	switch {
	case f.endsParent:
		n.close()
	case f.directive == "if" || f.directive == "for":
		n.stack = append(n.stack, frame{endsWith: "end" + f.directive, saved: n.depth})
		n.depth++
	}
}
