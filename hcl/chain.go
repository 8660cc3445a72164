package hcl

import (
	"fmt"
	"unicode/utf8"
)

// chainEnd is one endpoint of a connection chain such as
// "ct.miss -> sel -> ct.learn": an element name and an optional port, with
// the byte offsets of "name[.port]" in the chain text.
type chainEnd struct {
	name, port string
	start, end int
}

// chainError is a syntax error at bytes [start, end) of the chain text.
type chainError struct {
	start, end int
	msg        string
}

// parseChain parses Click's connection syntax restricted to named ports:
//
//	chain    = endpoint "->" endpoint { "->" endpoint }
//	endpoint = name [ "." port ]
//
// The first endpoint's port is an output and the last one's an input; an
// element in the middle takes no port, since one name could not say both
// where packets enter and where they leave (Click writes [in]name[out]; we
// ask for two chains instead).
func parseChain(s string) ([]chainEnd, *chainError) {
	var ends []chainEnd
	i := 0
	expectName := true
	arrowAt := -1
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			break
		}
		if !expectName {
			if s[i] == '-' && i+1 < len(s) && s[i+1] == '>' {
				arrowAt = i
				i += 2
				expectName = true
				continue
			}
			if isNameStart(s[i]) {
				return nil, &chainError{i, identEnd(s, i), `expected "->" between two elements`}
			}
			return nil, unexpected(s, i)
		}
		if !isNameStart(s[i]) {
			if s[i] == '-' && i+1 < len(s) && s[i+1] == '>' {
				return nil, &chainError{i, i + 2, `expected an element name before "->"`}
			}
			return nil, unexpected(s, i)
		}
		e := chainEnd{start: i}
		i = identEnd(s, i)
		e.name = s[e.start:i]
		if i < len(s) && s[i] == '.' {
			i++
			if i == len(s) || !isNameStart(s[i]) {
				if i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '-' {
					return nil, unexpected(s, i)
				}
				return nil, &chainError{e.start, i, fmt.Sprintf(`expected a port name after "%s."`, e.name)}
			}
			p := i
			i = identEnd(s, i)
			e.port = s[p:i]
		}
		e.end = i
		ends = append(ends, e)
		expectName = false
	}
	switch {
	case len(ends) == 0 && arrowAt < 0:
		return nil, &chainError{0, len(s), `the chain is empty`}
	case expectName:
		return nil, &chainError{arrowAt, arrowAt + 2, `expected an element name after "->"`}
	case len(ends) == 1:
		return nil, &chainError{ends[0].start, ends[0].end, `a chain needs at least two elements joined by "->"`}
	}
	for _, e := range ends[1 : len(ends)-1] {
		if e.port != "" {
			return nil, &chainError{e.start, e.end, fmt.Sprintf(
				`%s.%s is in the middle of the chain, where a port name cannot say both where packets enter and where they leave; write two chains instead, one ending at %s.INPUT and one starting from %s.OUTPUT`,
				e.name, e.port, e.name, e.name)}
		}
	}
	return ends, nil
}

func unexpected(s string, i int) *chainError {
	r, n := utf8.DecodeRuneInString(s[i:])
	return &chainError{i, i + n, fmt.Sprintf("unexpected character %q", r)}
}

func isNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isNameByte(c byte) bool {
	return isNameStart(c) || c >= '0' && c <= '9'
}

// identEnd returns the end of the name starting at i: letters, digits,
// underscores, and dashes that do not begin an arrow.
func identEnd(s string, i int) int {
	for i < len(s) {
		switch {
		case isNameByte(s[i]):
		case s[i] == '-' && (i+1 == len(s) || s[i+1] != '>'):
		default:
			return i
		}
		i++
	}
	return i
}

// validName reports whether s is a valid element instance name: the names
// chains can refer to.
func validName(s string) bool {
	return s != "" && isNameStart(s[0]) && identEnd(s, 0) == len(s) && s[len(s)-1] != '-'
}

// chainNames returns every name-like word in a chain, also a broken one,
// so that outputs left unconnected because of the break are not reported
// on top of it.
func chainNames(s string) []string {
	var names []string
	for i := 0; i < len(s); {
		if isNameStart(s[i]) {
			j := identEnd(s, i)
			if i == 0 || s[i-1] != '.' {
				names = append(names, s[i:j])
			}
			i = j
			continue
		}
		i++
	}
	return names
}
