package proxy

import (
	"net/url"
	"testing"
)

// BenchmarkJudgePath times the path decision alone, on the route set of
// FuzzPathReadings: "match-only" is what was done before every reading
// was judged (one route lookup, one public check); "plain" takes the
// one-scan fast path; the others compute every reading.
func BenchmarkJudgePath(b *testing.B) {
	h, _ := fuzzGate(b, readingsFuzzYAML)
	const host = "gate.example.com"
	for _, tc := range []struct{ name, raw string }{
		{"plain", "/admin/users/page/x"},
		{"path-parameter", "/admin/users/page/x;jsessionid=0123456789ABCDEF"},
		{"encoded-space", "/admin/users/page/a%20b"},
		{"ambiguous", "/admin;jsessionid=1/secret"},
	} {
		u, err := url.ParseRequestURI(tc.raw)
		if err != nil {
			b.Fatal(err)
		}
		clean, _, err := cleanRequestPath(u)
		if err != nil {
			b.Fatal(err)
		}
		if tc.name == "plain" {
			b.Run("match-only", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if rt := h.router.match(host, clean); rt == nil || rt.isPublic(clean) {
						b.Fatal("not the protected admin route")
					}
				}
			})
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rt, public, err := h.judgePath(host, clean, u, nil)
				if (err != nil) != (tc.name == "ambiguous") || (err == nil && (rt == nil || public)) {
					b.Fatalf("judged %v %v %v", rt, public, err)
				}
			}
		})
	}
}
