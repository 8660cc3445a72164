package hcl

import (
	"bytes"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// quickScan is lexScan without hclsyntax's lexer, whose slice of tokens
// for a file of megabytes costs more than the rest of a load to grow (see
// quickTokens). It reports false for a file that quickTokens cannot read
// and for a file over the limit, which lexScan then reads to say where.
func quickScan(src []byte, filename string, start hcl.Pos, every int) ([]segment, bool) {
	var n nesting
	c := newCutter(filename, start, every)
	// quickTokens reads ASCII only: columns count bytes.
	line, lineStart := start.Line, 0
	pos := func(off int) hcl.Pos {
		col := off - lineStart + 1
		if line == start.Line {
			col += start.Column - 1
		}
		return hcl.Pos{Line: line, Column: col, Byte: start.Byte + off}
	}
	ok := quickTokens(src, func(ty hclsyntax.TokenType, text []byte, end int) bool {
		frames := n.frames()
		if n.next(ty, text) > MaxNesting {
			return false
		}
		r := hcl.Range{Filename: filename, Start: pos(end - len(text))}
		if ty == hclsyntax.TokenNewline || ty == hclsyntax.TokenComment && text[len(text)-1] == '\n' {
			line, lineStart = line+1, end
		}
		r.End = pos(end)
		c.token(ty, text, r, frames, n.frames())
		return true
	})
	if !ok {
		return nil, false
	}
	r := pos(len(src))
	c.token(hclsyntax.TokenEOF, nil, hcl.Range{Filename: filename, Start: r, End: r}, n.frames(), n.frames())
	return c.segments(), true
}

// quickTokens reads the tokens of src as hclsyntax's lexer does
// (scan_tokens.rl) when src is made of ASCII code, comments that start
// with # or //, and quoted strings without templates, and calls token for
// each but quoted text and the end of file, with the offset where it
// ends, until token returns false. It reports false for anything else
// (heredocs, interpolations, block comments, other characters), or when
// token did.
func quickTokens(src []byte, token func(ty hclsyntax.TokenType, text []byte, end int) bool) bool {
	x := quickLexer{src: src}
	for {
		ty, from, to, ok := x.next()
		switch {
		case !ok:
			return false
		case ty == hclsyntax.TokenEOF:
			return true
		case ty != hclsyntax.TokenQuotedLit && !token(ty, src[from:to], to):
			return false
		}
	}
}

// quickLexer reads src's tokens one at a time, as quickTokens reads them,
// quoted text included: a quoted string is an opening quote, its text
// when it is not empty (one token, escapes and all) and a closing quote.
type quickLexer struct {
	src []byte
	i   int
	// text and close are the offsets of the text and the closing quote
	// of the string whose opening quote was read last; 0 after them.
	text, close int
}

// next returns the next token: its type and where it starts and ends in
// src; TokenEOF at the end, again and again; ok false where quickTokens
// reports false.
func (x *quickLexer) next() (ty hclsyntax.TokenType, from, to int, ok bool) {
	src := x.src
	switch {
	case x.text > 0 && x.text < x.close:
		from, x.text = x.text, x.close
		return hclsyntax.TokenQuotedLit, from, x.close, true
	case x.close > 0:
		from, x.text, x.close = x.close, 0, 0
		x.i = from + 1
		return hclsyntax.TokenCQuote, from, from + 1, true
	}
	i := x.i
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	if i == len(src) {
		x.i = i
		return hclsyntax.TokenEOF, i, i, true
	}
	c := src[i]
	end := i + 1
	switch {
	case c == '#' || c == '/' && i+1 < len(src) && src[i+1] == '/':
		// A comment runs to the end of its line, newline included:
		// it makes no newline token.
		end = len(src)
		if j := bytes.IndexByte(src[i:], '\n'); j >= 0 {
			end = i + j + 1
		}
		if !utf8.Valid(src[i:end]) {
			// hclsyntax counts lines by grapheme clusters, and a broken
			// UTF-8 sequence can swallow the newline after it: where the
			// line ends is then hclsyntax's to say (FuzzFastParse found it).
			return 0, 0, 0, false
		}
		ty = hclsyntax.TokenComment
	case c == '\n':
		ty = hclsyntax.TokenNewline
	case c == '\r' && i+1 < len(src) && src[i+1] == '\n':
		ty, end = hclsyntax.TokenNewline, i+2
	case isLetter(c) || c == '_':
		ty = hclsyntax.TokenIdent
		for end < len(src) && (isLetter(src[end]) || isDigit(src[end]) || src[end] == '_' || src[end] == '-') {
			end++
		}
	case isDigit(c):
		ty, end = hclsyntax.TokenNumberLit, numberEnd(src, i)
	case c == '"':
		e := stringEnd(src, i+1)
		if e < 0 {
			return hclsyntax.TokenNil, i, i, false
		}
		ty, x.text, x.close = hclsyntax.TokenOQuote, i+1, e-1
	default:
		var w int
		if ty, w = operator(src[i:]); w == 0 {
			return hclsyntax.TokenNil, i, i, false
		}
		end = i + w
	}
	x.i = end
	return ty, i, end, true
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numberEnd returns the end of the number starting at i: digits, dots and
// exponents (e5, E-5), not ending with a dot.
func numberEnd(src []byte, i int) int {
	j, end := i+1, i+1
	for j < len(src) {
		switch c := src[j]; {
		case isDigit(c):
			j++
			end = j
		case c == '.':
			j++
		case c == 'e' || c == 'E':
			k := j + 1
			if k < len(src) && (src[k] == '+' || src[k] == '-') {
				k++
			}
			if k == len(src) || !isDigit(src[k]) {
				return end
			}
			j = k + 1
			end = j
		default:
			return end
		}
	}
	return end
}

// stringEnd returns the end of the quoted string whose text starts at i,
// after its closing quote; -1 for a string that quickScan leaves to the
// lexer: with a template sequence, a line break, non-ASCII or control
// characters, or no end.
func stringEnd(src []byte, i int) int {
	for i < len(src) {
		switch c := src[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 == len(src) || src[i+1] < ' ' || src[i+1] >= 0x80 {
				return -1
			}
			i += 2
		case (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == '{':
			return -1
		case c < ' ' && c != '\t' || c >= 0x80:
			return -1
		default:
			i++
		}
	}
	return -1
}

// operator returns the punctuation token that s starts with and its
// length, or 0 for one that quickScan leaves to the lexer (<< starts a
// heredoc, /* a comment, ~ and ; are errors).
func operator(s []byte) (hclsyntax.TokenType, int) {
	if len(s) >= 3 && s[0] == '.' && s[1] == '.' && s[2] == '.' {
		return hclsyntax.TokenEllipsis, 3
	}
	if len(s) >= 2 {
		switch t, ok := pairs[string(s[:2])]; {
		case ok && t == hclsyntax.TokenNil:
			return t, 0
		case ok:
			return t, 2
		}
	}
	if t := hclsyntax.TokenType(s[0]); singles[t] {
		return t, 1
	}
	return hclsyntax.TokenNil, 0
}

// pairs are the tokens of two characters; TokenNil for those that start
// what quickScan leaves to the lexer.
var pairs = map[string]hclsyntax.TokenType{
	"==": hclsyntax.TokenEqualOp, "!=": hclsyntax.TokenNotEqual,
	">=": hclsyntax.TokenGreaterThanEq, "<=": hclsyntax.TokenLessThanEq,
	"&&": hclsyntax.TokenAnd, "||": hclsyntax.TokenOr,
	"::": hclsyntax.TokenDoubleColon, "=>": hclsyntax.TokenFatArrow,
	"<<": hclsyntax.TokenNil, "/*": hclsyntax.TokenNil,
}

// singles are the tokens of one character that quickScan reads, each
// typed by its character.
var singles = map[hclsyntax.TokenType]bool{
	hclsyntax.TokenOBrack: true, hclsyntax.TokenCBrack: true, hclsyntax.TokenOParen: true, hclsyntax.TokenCParen: true,
	hclsyntax.TokenOBrace: true, hclsyntax.TokenCBrace: true, hclsyntax.TokenDot: true, hclsyntax.TokenComma: true,
	hclsyntax.TokenStar: true, hclsyntax.TokenSlash: true, hclsyntax.TokenPercent: true, hclsyntax.TokenPlus: true,
	hclsyntax.TokenMinus: true, hclsyntax.TokenEqual: true, hclsyntax.TokenLessThan: true, hclsyntax.TokenGreaterThan: true,
	hclsyntax.TokenBang: true, hclsyntax.TokenQuestion: true, hclsyntax.TokenColon: true,
	hclsyntax.TokenBitwiseAnd: true, hclsyntax.TokenBitwiseOr: true,
}
