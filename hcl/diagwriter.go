package hcl

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

const (
	// maxPrinted is how many diagnostics WriteDiagnostics prints. Past a
	// hundred, a file repeats one mistake or generated its errors; the
	// first ones say what to fix, and printing them all would take longer
	// than loading the file.
	maxPrinted = 100
	// snippetWidth is the most bytes of a source line printed under a
	// diagnostic: enough for any hand-written line, and a window around
	// the subject of a generated one (a list of 65,535 ports).
	snippetWidth = 120
)

// WriteDiagnostics prints diagnostics the way compilers do, so that editors
// and grep can jump to them: a "file:line:col: severity: summary" line, the
// source line with the subject underlined, and the detail.
//
//	lab.hcl:23:5: error: Unsupported argument
//	   23 |     capcity = 65536
//	      |     ^^^^^^^
//	   In element `ct` (ConnTrack): An argument named "capcity" is not expected here. ...
//
// It prints the first 100 diagnostics, in the order given (Load's, and
// pipeline.Errors', is file order), and then how many more there are.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	var b strings.Builder
	lines := map[string][]int{}
	for i, d := range diags {
		if i == maxPrinted {
			writeRest(&b, diags[i:])
			break
		}
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
				if _, ok := lines[s.Filename]; !ok {
					lines[s.Filename] = lineStarts(f.Bytes)
				}
				writeSnippet(&b, f.Bytes, lines[s.Filename], *s)
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

// writeRest says how many diagnostics were not printed.
func writeRest(b *strings.Builder, rest hcl.Diagnostics) {
	errs := 0
	for _, d := range rest {
		if d.Severity == hcl.DiagError {
			errs++
		}
	}
	var counts []string
	if errs > 0 {
		counts = append(counts, plural(errs, "error"))
	}
	if warns := len(rest) - errs; warns > 0 {
		counts = append(counts, plural(warns, "warning"))
	}
	fmt.Fprintf(b, "... and %s more, not shown: only the first %d diagnostics are printed; fix these and run again.\n",
		strings.Join(counts, " and "), maxPrinted)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// lineStarts returns the byte offset where each line of src starts.
func lineStarts(src []byte) []int {
	starts := []int{0}
	for i := 0; ; {
		j := bytes.IndexByte(src[i:], '\n')
		if j < 0 {
			return starts
		}
		i += j + 1
		starts = append(starts, i)
	}
}

// writeSnippet prints the subject's first line with carets under the
// subject (to the end of the line when it spans several). A line longer
// than snippetWidth is cut to a window around the subject's start, with
// "…" where it is cut.
func writeSnippet(b *strings.Builder, src []byte, starts []int, r hcl.Range) {
	if r.Start.Line < 1 || r.Start.Line > len(starts) {
		return
	}
	first := starts[r.Start.Line-1]
	last := len(src)
	if r.Start.Line < len(starts) {
		last = starts[r.Start.Line] - 1
	}
	line := string(bytes.TrimRight(src[first:last], "\r"))
	// The subject's byte offsets place the carets whatever the characters
	// before it; a range without them (Byte 0 past the first line) has
	// its columns taken as bytes.
	col := func(p hcl.Pos) int {
		if p.Byte >= first && p.Byte <= last && (p.Byte > 0 || first == 0) {
			return p.Byte - first
		}
		return p.Column - 1
	}
	start := min(max(col(r.Start), 0), len(line))
	end := len(line)
	if r.End.Line == r.Start.Line {
		end = min(max(col(r.End), start+1), len(line))
	}
	lo, hi := 0, len(line)
	if len(line) > snippetWidth {
		lo = max(0, start-snippetWidth/3)
		hi = min(len(line), lo+snippetWidth)
		lo = max(0, hi-snippetWidth)
		for lo > 0 && !utf8.RuneStart(line[lo]) {
			lo--
		}
		for hi < len(line) && !utf8.RuneStart(line[hi]) {
			hi--
		}
	}
	start, end = max(start, lo), min(end, hi)
	var shown, before strings.Builder
	if lo > 0 {
		shown.WriteString("…")
		before.WriteString("…")
	}
	shown.WriteString(line[lo:hi])
	before.WriteString(line[lo:start])
	if hi < len(line) {
		shown.WriteString("…")
	}
	// Tabs keep their width under the carets so that they line up; any
	// other character takes one column.
	pad := []rune(before.String())
	for i, c := range pad {
		if c != '\t' {
			pad[i] = ' '
		}
	}
	num := fmt.Sprintf("%5d", r.Start.Line)
	fmt.Fprintf(b, "%s | %s\n%s | %s%s\n", num, shown.String(), strings.Repeat(" ", len(num)), string(pad),
		strings.Repeat("^", max(utf8.RuneCountInString(line[start:max(end, start)]), 1)))
}
