package auth

import (
	"strings"
	"testing"
)

// FuzzNextCookie: nextCookie, now reading the line with
// httpfield.NextCookie, finds what the scanner it replaced found
// (refNextCookie, kept here as it was), for any line and name: the same
// session cookies are tried, in the same order.
func FuzzNextCookie(f *testing.F) {
	for _, s := range []string{"__Host-gatehouse=a", "x=1; __Host-gatehouse=\"a\"; __Host-gatehouse=b", " __Host-gatehouse = a",
		"\u00a0__Host-gatehouse=a;x", ";;__Host-gatehouse;__Host-gatehouse=", "__HOST-gatehouse=a; __Host-gatehouse=\"\"", ""} {
		f.Add(s, "__Host-gatehouse")
	}
	f.Fuzz(func(t *testing.T, line, name string) {
		for rest, refRest := line, line; ; {
			v, r, found := nextCookie(rest, name)
			rv, rr, rfound := refNextCookie(refRest, name)
			if v != rv || r != rr || found != rfound {
				t.Fatalf("nextCookie(%q, %q) = %q, %q, %v; want %q, %q, %v", rest, name, v, r, found, rv, rr, rfound)
			}
			if !found || r == rest {
				return
			}
			rest, refRest = r, rr
		}
	})
}

// refNextCookie is nextCookie before it used httpfield.
func refNextCookie(line, name string) (value, rest string, found bool) {
	for line != "" {
		var pair string
		pair, line, _ = strings.Cut(line, ";")
		pair = strings.TrimSpace(pair)
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, line, true
	}
	return "", "", false
}
