package auth

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// FuzzClientIP: clientIP, now reading X-Forwarded-For with
// httpfield.NextListItem, finds what its own parse found (refClientIP,
// kept here as it was), for any header value: the last item trimmed of
// Unicode white space, none when it is empty.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"", "203.0.113.9", "198.51.100.1, 203.0.113.9", "203.0.113.9,", " , ", "a,\u00a0b\u00a0",
		strings.Repeat("1", 80), ",,\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, xff string) {
		r := &http.Request{Header: http.Header{}, RemoteAddr: "192.0.2.1:4711"}
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if got, want := clientIP(r), refClientIP(r); got != want {
			t.Fatalf("clientIP with X-Forwarded-For %q = %q, the old parse %q", xff, got, want)
		}
	})
}

// refClientIP is clientIP before it used httpfield.
func refClientIP(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		parts := strings.Split(xff, ",")
		if ip := strings.TrimSpace(parts[len(parts)-1]); ip != "" {
			return truncate(ip, 64)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}
