package hcl

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints diagnostics the way compilers do, so that editors
// and grep can jump to them: a "file:line:col: severity: summary" line, the
// source line with the subject underlined, and the detail.
//
//	lab.hcl:23:5: error: Unsupported argument
//	   23 |     capcity = 65536
//	      |     ^^^^^^^
//	   In element `ct` (ConnTrack): An argument named "capcity" is not expected here. ...
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	var b strings.Builder
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		if d.Subject == nil {
			fmt.Fprintf(&b, "%s: %s\n", sev, d.Summary)
		} else {
			s := d.Subject
			fmt.Fprintf(&b, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, sev, d.Summary)
			if f := files[s.Filename]; f != nil {
				writeSnippet(&b, f.Bytes, *s)
			}
		}
		if d.Detail != "" {
			fmt.Fprintf(&b, "   %s\n", d.Detail)
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSnippet prints the subject's first line with carets under the
// subject (to the end of the line when it spans several).
func writeSnippet(b *strings.Builder, src []byte, r hcl.Range) {
	lines := bytes.Split(src, []byte("\n"))
	if r.Start.Line < 1 || r.Start.Line > len(lines) {
		return
	}
	line := strings.TrimRight(string(lines[r.Start.Line-1]), "\r")
	start := min(max(r.Start.Column-1, 0), len(line))
	end := len(line)
	if r.End.Line == r.Start.Line {
		end = min(max(r.End.Column-1, start+1), len(line))
	}
	// Tabs keep their width under the carets so that they line up.
	pad := []byte(line[:start])
	for i, c := range pad {
		if c != '\t' {
			pad[i] = ' '
		}
	}
	num := fmt.Sprintf("%5d", r.Start.Line)
	fmt.Fprintf(b, "%s | %s\n%s | %s%s\n", num, line, strings.Repeat(" ", len(num)), pad, strings.Repeat("^", max(end-start, 1)))
}
