package hcl

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in the canonical layout of hclwrite.Format, the one
// terraform fmt writes. A file with syntax errors is not formatted, since
// hclwrite would lay out a guess, nor is one over the limits Load has
// (MaxFileSize, MaxNesting): Format returns src and the errors (filename
// names it in them). File IO is the caller's (xlbd fmt).
func Format(filename string, src []byte) ([]byte, hcl.Diagnostics) {
	if _, diags := parseConfig(src, filename); diags.HasErrors() {
		return src, diags
	}
	return hclwrite.Format(src), nil
}
