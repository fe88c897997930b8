package httpfield

import "strings"

// ListSpace is the white space NextListItem trims off an item. The
// callers differ on purpose, and each must keep reading a list as it
// always has.
type ListSpace int

const (
	// ASCIISpace is SP, HTAB, CR and LF: what net/http trims off a
	// Connection header's tokens (textproto.TrimString) when
	// httputil.ReverseProxy removes hop-by-hop headers. The direct path
	// (proxy/internal/direct) reads Connection and Te with it, so that it
	// removes exactly the headers ReverseProxy removes.
	ASCIISpace ListSpace = iota
	// UnicodeSpace is white space as strings.TrimSpace sees it: also
	// U+0085, U+00A0 and the other Unicode spaces. The stripping of
	// Connection tokens that name gatehouse's headers (package proxy)
	// reads with it, so a token some hop would trim to such a name is
	// taken for one too (failing closed); auth reads X-Forwarded-For
	// with it.
	UnicodeSpace
)

// NextListItem returns the item of the comma-separated list that starts
// at list[from:] (up to the next comma), trimmed of sp, and the offset of
// the item after it. ok is false when no item is left: from > len(list).
// The items are those of strings.Split(list, ","), empty ones included:
// "" has one empty item, and "a," has "a" and "". It does not allocate.
// The items of a list, in order:
//
//	for item, i, ok := httpfield.NextListItem(list, 0, sp); ok; item, i, ok = httpfield.NextListItem(list, i, sp) {
//		...
//	}
func NextListItem(list string, from int, sp ListSpace) (item string, next int, ok bool) {
	if from > len(list) || from < 0 {
		return "", len(list) + 1, false
	}
	end := strings.IndexByte(list[from:], ',')
	if end < 0 {
		end = len(list)
	} else {
		end += from
	}
	item = list[from:end]
	if sp == UnicodeSpace {
		item = strings.TrimSpace(item)
	} else {
		item = trimASCIISpace(item)
	}
	return item, end + 1, true
}

// trimASCIISpace trims SP, HTAB, CR and LF, as strings.Trim(s, " \t\r\n")
// does, without building a set each call.
func trimASCIISpace(s string) string {
	for len(s) > 0 && isASCIISpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isASCIISpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isASCIISpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
