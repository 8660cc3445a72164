package hcl

import (
	"bytes"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// parseText parses src as hclsyntax.ParseConfig does, from start: with
// fastParse when it can, which builds the very same body (the differential
// tests and FuzzFastParse compare them) at a fraction of the cost, and
// with hclsyntax.ParseConfig otherwise, so that every diagnostic is
// hclsyntax's. The File has no Nav (a loaded File keeps none either).
func parseText(src []byte, filename string, start hcl.Pos) (*hcl.File, hcl.Diagnostics) {
	if body, ok := fastParse(src, filename, start); ok {
		return &hcl.File{Body: body, Bytes: src}, nil
	}
	return hclsyntax.ParseConfig(src, filename, start)
}

// fastParse parses src, from start, as hclsyntax.ParseConfig would, when
// src is what quickLexer reads, without a comment of other than ASCII, and
// holds only bodies, attributes, blocks and these expressions: numbers,
// true, false and null, quoted strings without templates nor \u escapes,
// names and their attributes (var.x), the unary - and !, and tuples and
// objects of them. It reports false for anything else and for anything
// hclsyntax would report, all of which hclsyntax parses instead. A
// service configuration, with its thousands of backends, is almost always
// of that kind; hclsyntax's lexer, its slice of tokens and its general
// parser cost several times as much as the walk below.
func fastParse(src []byte, filename string, start hcl.Pos) (body *hclsyntax.Body, ok bool) {
	p := &fastParser{src: src, text: string(src), filename: filename, start: start,
		lex: quickLexer{src: src}, line: start.Line, newlines: []bool{true}}
	defer func() {
		if r := recover(); r != nil {
			if r != errNotFast {
				panic(r)
			}
			body, ok = nil, false
		}
	}()
	return p.body(hclsyntax.TokenEOF, true), true
}

// errNotFast is what fastParser panics with when it meets what it leaves
// to hclsyntax; fastParse recovers it.
var errNotFast = new(int)

// fastParser is the state of one fastParse: hclsyntax's peeker on
// quickLexer's tokens, which it reads one at a time, with the same
// treatment of newlines and comments.
type fastParser struct {
	src []byte
	// text is src as a string: names and strings are parts of it, with
	// no allocation of their own.
	text     string
	filename string
	start    hcl.Pos
	lex      quickLexer
	// line and lineStart are the line of the next token to lex and the
	// offset where it starts.
	line, lineStart int
	// newlines is hclsyntax's IncludeNewlinesStack: whether a newline is
	// a token (in bodies and objects) or space (in brackets).
	newlines []bool
	// prev is the range of the last token read (hclsyntax's PrevRange).
	prev hcl.Range
	// The token peeked, if any, in which newline mode, and the lexer's
	// state after it.
	peeked     bool
	peekedMode bool
	next       fastToken
	after      fastState
	// numbers are the values of the numbers read so far, by text: a
	// configuration repeats its weights and ports.
	numbers map[string]cty.Value

	// The nodes are made in slabs: a parse makes hundreds of thousands
	// that live and die together.
	bodies   slab[hclsyntax.Body]
	blocks   slab[hclsyntax.Block]
	attrs    slab[hclsyntax.Attribute]
	literals slab[hclsyntax.LiteralValueExpr]
	tmpls    slab[hclsyntax.TemplateExpr]
	parts    slab[hclsyntax.Expression]
	labels   slab[string]
	ranges   slab[hcl.Range]
}

// slabSize is how many values a slab allocates at a time.
const slabSize = 32

// A slab hands out values from arrays it allocates slabSize at a time.
type slab[T any] []T

// new returns a new zero value.
func (s *slab[T]) new() *T { return &s.take(1)[0] }

// take returns n new zero values, as a slice of capacity n.
func (s *slab[T]) take(n int) []T {
	if cap(*s)-len(*s) < n {
		*s = make([]T, 0, max(slabSize, n))
	}
	i := len(*s)
	*s = (*s)[:i+n]
	return (*s)[i : i+n : i+n]
}

type fastToken struct {
	ty   hclsyntax.TokenType
	text []byte
	// off is where text starts in src.
	off int
	rng hcl.Range
}

// str returns the text of tok as a string.
func (p *fastParser) str(tok fastToken) string { return p.text[tok.off : tok.off+len(tok.text)] }

type fastState struct {
	lex             quickLexer
	line, lineStart int
}

func notFast() { panic(errNotFast) }

// pos is the position of offset off, on the line being lexed.
func (p *fastParser) pos(off int) hcl.Pos {
	col := off - p.lineStart + 1
	if p.line == p.start.Line {
		col += p.start.Column - 1
	}
	return hcl.Pos{Line: p.line, Column: col, Byte: p.start.Byte + off}
}

// lexOne returns the next token of the lexer, with its range.
func (p *fastParser) lexOne() fastToken {
	ty, from, to, ok := p.lex.next()
	if !ok {
		notFast()
	}
	text := p.src[from:to]
	r := hcl.Range{Filename: p.filename, Start: p.pos(from)}
	switch {
	case ty == hclsyntax.TokenNewline || ty == hclsyntax.TokenComment && text[len(text)-1] == '\n':
		p.line, p.lineStart = p.line+1, to
	case ty == hclsyntax.TokenComment:
		// A comment at the end of the file: the columns after it are
		// counted in bytes here, and in characters by hclsyntax.
		for _, c := range text {
			if c >= 0x80 {
				notFast()
			}
		}
	}
	r.End = p.pos(to)
	return fastToken{ty, text, from, r}
}

// peek returns the next token as hclsyntax's peeker does: comments are
// skipped, and newlines too where they are not tokens; where they are, a
// comment that ends a line stands for a newline, with the comment's range.
func (p *fastParser) peek() fastToken {
	mode := p.newlines[len(p.newlines)-1]
	if p.peeked && p.peekedMode == mode {
		return p.next
	}
	saved := fastState{p.lex, p.line, p.lineStart}
	var tok fastToken
	for {
		tok = p.lexOne()
		if tok.ty == hclsyntax.TokenComment {
			if !mode || tok.text[len(tok.text)-1] != '\n' {
				continue
			}
			tok.ty, tok.text = hclsyntax.TokenNewline, tok.text[len(tok.text)-1:]
		}
		if tok.ty != hclsyntax.TokenNewline || mode {
			break
		}
	}
	p.next, p.peeked, p.peekedMode = tok, true, mode
	p.after = fastState{p.lex, p.line, p.lineStart}
	p.lex, p.line, p.lineStart = saved.lex, saved.line, saved.lineStart
	return tok
}

// read returns the next token and moves past it.
func (p *fastParser) read() fastToken {
	tok := p.peek()
	p.lex, p.line, p.lineStart = p.after.lex, p.after.line, p.after.lineStart
	p.peeked = false
	p.prev = tok.rng
	return tok
}

// expect reads the next token, which must be of type ty.
func (p *fastParser) expect(ty hclsyntax.TokenType) fastToken {
	if p.peek().ty != ty {
		notFast()
	}
	return p.read()
}

func (p *fastParser) push(newlines bool) { p.newlines = append(p.newlines, newlines) }
func (p *fastParser) pop()               { p.newlines = p.newlines[:len(p.newlines)-1] }

// body is hclsyntax's parser.ParseBody: the items up to end. top is the
// file's body, which starts at its first token.
func (p *fastParser) body(end hclsyntax.TokenType, top bool) *hclsyntax.Body {
	attrs := hclsyntax.Attributes{}
	blocks := hclsyntax.Blocks{}
	startRange := p.prev
	if top {
		startRange = p.peek().rng
	}
	var endRange hcl.Range
	for {
		next := p.peek()
		switch next.ty {
		case end:
			endRange = p.read().rng
			b := p.bodies.new()
			*b = hclsyntax.Body{
				Attributes: attrs,
				Blocks:     blocks,
				SrcRange:   hcl.RangeBetween(startRange, endRange),
				EndRange:   hcl.Range{Filename: endRange.Filename, Start: endRange.End, End: endRange.End},
			}
			return b
		case hclsyntax.TokenNewline:
			p.read()
		case hclsyntax.TokenIdent:
			ident := p.read()
			switch p.peek().ty {
			case hclsyntax.TokenEqual:
				a := p.attribute(ident, false)
				if _, dup := attrs[a.Name]; dup {
					notFast()
				}
				attrs[a.Name] = a
			case hclsyntax.TokenOQuote, hclsyntax.TokenOBrace, hclsyntax.TokenIdent:
				blocks = append(blocks, p.block(ident))
			default:
				notFast()
			}
		default:
			notFast()
		}
	}
}

// attribute is hclsyntax's finishParsingBodyAttribute.
func (p *fastParser) attribute(ident fastToken, singleLine bool) *hclsyntax.Attribute {
	eq := p.expect(hclsyntax.TokenEqual)
	expr := p.expr()
	endRange := p.prev
	if !singleLine {
		if ty := p.peek().ty; ty != hclsyntax.TokenNewline && ty != hclsyntax.TokenEOF {
			notFast()
		}
		p.read()
	}
	a := p.attrs.new()
	*a = hclsyntax.Attribute{
		Name:        p.str(ident),
		Expr:        expr,
		SrcRange:    hcl.RangeBetween(ident.rng, endRange),
		NameRange:   ident.rng,
		EqualsRange: eq.rng,
	}
	return a
}

// block is hclsyntax's finishParsingBodyBlock.
func (p *fastParser) block(ident fastToken) *hclsyntax.Block {
	// Labels are one or two: on the stack until they are all read.
	var labelsBuf [2]string
	var rangesBuf [2]hcl.Range
	labels, labelRanges := labelsBuf[:0], rangesBuf[:0]
	for p.peek().ty != hclsyntax.TokenOBrace {
		switch p.peek().ty {
		case hclsyntax.TokenOQuote:
			label, r := p.label()
			labels, labelRanges = append(labels, label), append(labelRanges, r)
		case hclsyntax.TokenIdent:
			tok := p.read()
			labels, labelRanges = append(labels, p.str(tok)), append(labelRanges, tok.rng)
		default:
			notFast()
		}
	}
	if len(labels) == 0 {
		labels, labelRanges = nil, nil
	} else {
		labels = append(p.labels.take(len(labels))[:0], labels...)
		labelRanges = append(p.ranges.take(len(labelRanges))[:0], labelRanges...)
	}
	oBrace := p.read()
	var body *hclsyntax.Body
	switch p.peek().ty {
	case hclsyntax.TokenNewline, hclsyntax.TokenEOF, hclsyntax.TokenCBrace:
		body = p.body(hclsyntax.TokenCBrace, false)
	default:
		// A block of one attribute on one line.
		a := p.attribute(p.expect(hclsyntax.TokenIdent), true)
		body = p.bodies.new()
		*body = hclsyntax.Body{
			Attributes: hclsyntax.Attributes{a.Name: a},
			SrcRange:   a.SrcRange,
			EndRange:   hcl.Range{Filename: a.SrcRange.Filename, Start: a.SrcRange.End, End: a.SrcRange.End},
		}
		p.expect(hclsyntax.TokenCBrace)
	}
	cBraceRange := p.prev
	if ty := p.peek().ty; ty != hclsyntax.TokenNewline && ty != hclsyntax.TokenEOF {
		notFast()
	}
	p.read()
	b := p.blocks.new()
	*b = hclsyntax.Block{
		Type:            p.str(ident),
		Labels:          labels,
		Body:            body,
		TypeRange:       ident.rng,
		LabelRanges:     labelRanges,
		OpenBraceRange:  oBrace.rng,
		CloseBraceRange: cBraceRange,
	}
	return b
}

// label is hclsyntax's parseQuotedStringLiteral.
func (p *fastParser) label() (string, hcl.Range) {
	open := p.read()
	s := ""
	if p.peek().ty == hclsyntax.TokenQuotedLit {
		s = p.unquote(p.read())
	}
	return s, hcl.RangeBetween(open.rng, p.expect(hclsyntax.TokenCQuote).rng)
}

// unquote is hclsyntax.ParseStringLiteralToken for a quoted text whose
// escapes are \n, \r, \t, \" and \\ (the lexer keeps out templates).
func (p *fastParser) unquote(tok fastToken) string {
	text := tok.text
	i := bytes.IndexByte(text, '\\')
	if i < 0 {
		return p.str(tok)
	}
	out := make([]byte, 0, len(text))
	for ; i >= 0; i = bytes.IndexByte(text, '\\') {
		out = append(out, text[:i]...)
		switch text[i+1] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '"', '\\':
			out = append(out, text[i+1])
		default:
			notFast()
		}
		text = text[i+2:]
	}
	return string(append(out, text...))
}

// expr parses an expression that ends where the caller expects a token
// that no operator, conditional, index or attribute starts, which the
// caller then checks: hclsyntax would go on otherwise.
func (p *fastParser) expr() hclsyntax.Expression {
	tok := p.peek()
	switch tok.ty {
	case hclsyntax.TokenNumberLit:
		p.read()
		return p.literal(p.number(tok), tok.rng)
	case hclsyntax.TokenIdent:
		p.read()
		switch next := p.peek().ty; {
		case next == hclsyntax.TokenOParen || next == hclsyntax.TokenDoubleColon:
			notFast() // a function call
		case string(tok.text) == "true":
			return p.literal(cty.True, tok.rng)
		case string(tok.text) == "false":
			return p.literal(cty.False, tok.rng)
		case string(tok.text) == "null":
			return p.literal(cty.NullVal(cty.DynamicPseudoType), tok.rng)
		}
		e := &hclsyntax.ScopeTraversalExpr{
			Traversal: hcl.Traversal{hcl.TraverseRoot{Name: p.str(tok), SrcRange: tok.rng}},
			SrcRange:  tok.rng,
		}
		for p.peek().ty == hclsyntax.TokenDot {
			dot := p.read()
			attr := p.expect(hclsyntax.TokenIdent)
			r := hcl.RangeBetween(dot.rng, attr.rng)
			e.Traversal = append(e.Traversal, hcl.TraverseAttr{Name: p.str(attr), SrcRange: r})
			e.SrcRange = hcl.RangeBetween(e.SrcRange, r)
		}
		return e
	case hclsyntax.TokenOQuote:
		return p.template()
	case hclsyntax.TokenMinus, hclsyntax.TokenBang:
		p.read()
		op := hclsyntax.OpNegate
		if tok.ty == hclsyntax.TokenBang {
			op = hclsyntax.OpLogicalNot
		}
		val := p.expr()
		return &hclsyntax.UnaryOpExpr{Op: op, Val: val, SrcRange: hcl.RangeBetween(tok.rng, val.Range()), SymbolRange: tok.rng}
	case hclsyntax.TokenOBrack:
		return p.tuple()
	case hclsyntax.TokenOBrace:
		return p.object()
	}
	notFast()
	return nil
}

// literal returns a LiteralValueExpr.
func (p *fastParser) literal(v cty.Value, r hcl.Range) *hclsyntax.LiteralValueExpr {
	e := p.literals.new()
	*e = hclsyntax.LiteralValueExpr{Val: v, SrcRange: r}
	return e
}

// number is the value of a number literal, as hclsyntax's numberLitValue
// makes it, once for each text: values are immutable.
func (p *fastParser) number(tok fastToken) cty.Value {
	if v, ok := p.numbers[string(tok.text)]; ok {
		return v
	}
	text := p.str(tok)
	v, err := cty.ParseNumberVal(text)
	if err != nil {
		notFast()
	}
	if p.numbers == nil {
		p.numbers = map[string]cty.Value{}
	}
	p.numbers[text] = v
	return v
}

// template is a quoted string without templates, as hclsyntax's
// parseExpressionTerm makes it: a TemplateExpr of one literal part.
func (p *fastParser) template() hclsyntax.Expression {
	open := p.read()
	var part *hclsyntax.LiteralValueExpr
	if tok := p.peek(); tok.ty == hclsyntax.TokenQuotedLit {
		p.read()
		part = p.literal(cty.StringVal(p.unquote(tok)), tok.rng)
	}
	close := p.expect(hclsyntax.TokenCQuote)
	if part == nil {
		// hclsyntax's empty part: an empty range at the end of the
		// token after the opening quote.
		part = p.literal(cty.StringVal(""), hcl.Range{Filename: close.rng.Filename, Start: close.rng.End, End: close.rng.End})
	}
	parts := p.parts.take(1)
	parts[0] = part
	t := p.tmpls.new()
	*t = hclsyntax.TemplateExpr{Parts: parts, SrcRange: hcl.RangeBetween(open.rng, close.rng)}
	return t
}

// tuple is hclsyntax's parseTupleCons, without for expressions.
func (p *fastParser) tuple() hclsyntax.Expression {
	open := p.read()
	p.push(false)
	defer p.pop()
	if tok := p.peek(); tok.ty == hclsyntax.TokenIdent && string(tok.text) == "for" {
		notFast()
	}
	var exprs []hclsyntax.Expression
	for p.peek().ty != hclsyntax.TokenCBrack {
		exprs = append(exprs, p.expr())
		if p.peek().ty == hclsyntax.TokenCBrack {
			break
		}
		p.expect(hclsyntax.TokenComma)
	}
	close := p.read()
	return &hclsyntax.TupleConsExpr{Exprs: exprs, SrcRange: hcl.RangeBetween(open.rng, close.rng), OpenRange: open.rng}
}

// object is hclsyntax's parseObjectCons, without for expressions and
// keys in parentheses.
func (p *fastParser) object() hclsyntax.Expression {
	open := p.read()
	p.push(false)
	if tok := p.peek(); tok.ty == hclsyntax.TokenIdent && string(tok.text) == "for" || tok.ty == hclsyntax.TokenOParen {
		notFast()
	}
	p.pop()
	p.push(true)
	defer p.pop()
	var items []hclsyntax.ObjectConsItem
	for {
		switch p.peek().ty {
		case hclsyntax.TokenNewline:
			p.read()
			continue
		case hclsyntax.TokenCBrace:
			close := p.read()
			return &hclsyntax.ObjectConsExpr{Items: items, SrcRange: hcl.RangeBetween(open.rng, close.rng), OpenRange: open.rng}
		case hclsyntax.TokenOParen:
			notFast()
		}
		key := &hclsyntax.ObjectConsKeyExpr{Wrapped: p.expr()}
		if ty := p.peek().ty; ty != hclsyntax.TokenEqual && ty != hclsyntax.TokenColon {
			notFast()
		}
		p.read()
		items = append(items, hclsyntax.ObjectConsItem{KeyExpr: key, ValueExpr: p.expr()})
		switch p.peek().ty {
		case hclsyntax.TokenCBrace:
		case hclsyntax.TokenComma, hclsyntax.TokenNewline:
			p.read()
		default:
			notFast()
		}
	}
}
