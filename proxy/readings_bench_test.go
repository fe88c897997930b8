package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkPathReadings is BenchmarkRoutes' request (50 routes, signed
// in) with paths that differ only in what makes server families read
// them differently: a plain path (one scan), a ";jsessionid=" and an
// encoded space inside the route (every reading computed, one route).
func BenchmarkPathReadings(b *testing.B) {
	h, cookie := benchRoutesGateway(b, 50, "")
	for _, tc := range []struct{ name, path string }{
		{"plain", "/section49/page/x"},
		{"path-parameter", "/section49/page/x;jsessionid=0123456789ABCDEF"},
		{"encoded-space", "/section49/page/a%20b"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("http://app24.example.com%s", tc.path), nil)
			req.Header.Set("Cookie", cookie)
			benchLoop(b, h, req)
		})
	}
}
