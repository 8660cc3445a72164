package hcl

import (
	"bytes"

	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Literal reports whether evaluating fr costs no more than reading it:
// its text is within the limits, parses, and holds only literal values,
// lists and objects of them, strings without interpolation or directives,
// signs, and references to variables and locals (values the main file
// already computed). A function call, a for expression, a template, an
// operator or a splat can ask for far more than the text's size, so a
// fragment with one is not literal: a daemon evaluates it in a bounded
// child first (cmd/xlbd's precheck), where a literal one needs none.
func Literal(fr Fragment) bool {
	if fr.isJSON() {
		// Every JSON string is a template, and only one with an
		// interpolation or a directive does more than stand for itself.
		return !checkJSONLimits(fr.Src, fr.Name).HasErrors() &&
			!bytes.Contains(fr.Src, []byte("${")) && !bytes.Contains(fr.Src, []byte("%{"))
	}
	f, diags := parseConfig(fr.Src, fr.Name)
	if diags.HasErrors() {
		return false
	}
	body, ok := f.Body.(*hclsyntax.Body)
	return ok && literalBody(body)
}

func literalBody(b *hclsyntax.Body) bool {
	for _, a := range b.Attributes {
		if !literalExpr(a.Expr) {
			return false
		}
	}
	for _, blk := range b.Blocks {
		if !literalBody(blk.Body) {
			return false
		}
	}
	return true
}

func literalExpr(e hclsyntax.Expression) bool {
	switch e := e.(type) {
	case *hclsyntax.LiteralValueExpr, *hclsyntax.ScopeTraversalExpr:
		return true
	case *hclsyntax.TemplateExpr:
		return e.IsStringLiteral()
	case *hclsyntax.UnaryOpExpr:
		return literalExpr(e.Val)
	case *hclsyntax.TupleConsExpr:
		for _, x := range e.Exprs {
			if !literalExpr(x) {
				return false
			}
		}
		return true
	case *hclsyntax.ObjectConsExpr:
		for _, it := range e.Items {
			if !literalExpr(it.KeyExpr) || !literalExpr(it.ValueExpr) {
				return false
			}
		}
		return true
	case *hclsyntax.ObjectConsKeyExpr:
		return literalExpr(e.Wrapped)
	}
	return false
}
