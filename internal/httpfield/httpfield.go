// Package httpfield scans HTTP field values that gatehouse reads on the
// request path, without allocating: Cookie header lines (NextCookie) and
// comma-separated lists (NextListItem). It is the one parser of each, so
// that the session lookup (package auth), the stripping of gatehouse's
// cookies and Connection tokens before a request goes upstream (package
// proxy), the direct path's hop-by-hop header handling and auth's
// reading of X-Forwarded-For cannot come to read the same line
// differently; where they must trim differently, ListSpace says so.
package httpfield

import "strings"

// CookiePair is one pair of a Cookie header line (RFC 6265 §4.2.1: pairs
// separated by ";").
type CookiePair struct {
	// Name is the part before the first "=", and Value the part after
	// it, of the pair trimmed of white space as strings.TrimSpace does.
	// Unicode white space counts, not only SP and HTAB: a name such as
	// "\u00a0session" reads as "session", so a look-alike that some
	// application would read as gatehouse's cookie is also taken for it
	// by gatehouse. One pair of double quotes around Value is removed.
	Name, Value string
	// HasValue reports whether the pair has an "=". A pair without one
	// has its whole text as Name.
	HasValue bool
	// Start and End bound the pair in the line, without the SP and HTAB
	// (OWS, RFC 9110 §5.6.3) around it: line[Start:End].
	Start, End int
}

// NextCookie returns the first pair of line[from:] that is not empty
// (white space only), and the offset from which to look for the next.
// ok is false when no pair is left. It does not allocate. The pairs of a
// line, in order:
//
//	for p, i, ok := httpfield.NextCookie(line, 0); ok; p, i, ok = httpfield.NextCookie(line, i) {
//		...
//	}
func NextCookie(line string, from int) (p CookiePair, next int, ok bool) {
	for i := from; i < len(line); {
		j := strings.IndexByte(line[i:], ';')
		next = len(line)
		if j >= 0 {
			next = i + j + 1
		} else {
			j = len(line) - i
		}
		raw := line[i : i+j]
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" {
			i = next
			continue
		}
		p.Start = i + len(raw) - len(strings.TrimLeft(raw, " \t"))
		p.End = i + len(strings.TrimRight(raw, " \t"))
		p.Name, p.Value, p.HasValue = strings.Cut(trimmed, "=")
		if v := p.Value; len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			p.Value = v[1 : len(v)-1]
		}
		return p, next, true
	}
	return CookiePair{}, len(line), false
}

// Trimmed returns the pair's text trimmed of white space as
// strings.TrimSpace does: "name=value" as the line has it.
func (p CookiePair) Trimmed(line string) string { return strings.TrimSpace(line[p.Start:p.End]) }
