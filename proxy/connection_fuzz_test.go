package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzProtectConnection: protectConnection, now reading the Connection
// header with httpfield.NextListItem, keeps what its own parse kept
// (refProtectConnection, kept here as it was), for any Connection lines:
// tokens trimmed of Unicode white space, empty ones and those naming a
// protected header dropped.
func FuzzProtectConnection(f *testing.F) {
	for _, s := range [][2]string{{"keep-alive, X-Forwarded-User", ""}, {"x_forwarded_email ,X-App-Hop,,", "close"},
		{"\u00a0X-Forwarded-User\u00a0, X-Gatehouse-Assertion", "X-Auth-Request-User, x"}, {"X-Other-Thing", "-"}} {
		f.Add(s[0], s[1])
	}
	s := newStripper("X-Custom-Identity")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		got := http.Header{"Connection": {line1, line2}}
		want := http.Header{"Connection": {line1, line2}}
		s.protectConnection(got)
		refProtectConnection(s, want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("protectConnection(%q, %q) = %q, the old parse %q", line1, line2, got["Connection"], want["Connection"])
		}
	})
}

// refProtectConnection is protectConnection before it used httpfield.
func refProtectConnection(s *stripper, h http.Header) {
	lines := h["Connection"]
	for i, line := range lines {
		if !strings.ContainsFunc(line, func(r rune) bool { return r == '-' || r == '_' }) {
			continue
		}
		var kept []string
		for tok := range strings.SplitSeq(line, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !s.protected(tok) {
				kept = append(kept, tok)
			}
		}
		lines[i] = strings.Join(kept, ", ")
	}
}
