package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/sessions"
)

// benchSetup returns gatehouse and a bare reverse proxy in front of the
// same upstream, and a session cookie for gatehouse. The bare proxy uses
// transport. The identity provider is never contacted: the session is
// made through the store, as the load program does. extra is YAML
// appended to the config.
func benchSetup(b *testing.B, upstream string, transport http.RoundTripper, extra ...string) (gate http.Handler, bare http.Handler, cookie string) {
	b.Helper()
	cfg, err := config.Parse([]byte(`external_url: http://127.0.0.1:4180
upstream: `+upstream+`
oidc:
  issuer: http://127.0.0.1:1
  client_id: bench
  client_secret: bench
cookie:
  secret: `+strings.Repeat("b", 32)+`
`+benchAllow(extra)+strings.Join(extra, "")), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	// In front of a real upstream gatehouse runs as shipped, with its own
	// transport and direct path; the canned transport replaces both.
	gateTransport := transport
	if _, real := transport.(*http.Transport); real {
		gateTransport = nil
	}
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Transport: gateTransport})
	if err != nil {
		b.Fatal(err)
	}
	s := &sessions.Session{ID: sessions.NewID(), Subject: "alice", User: "alice", Email: "alice@example.com",
		PreferredUsername: "alice", Groups: []string{"admins", "staff"}, Created: time.Now()}
	if err := gw.Store.Create(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	c, err := gw.Auth().SessionCookie(s.ID)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(upstream)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = transport
	return gw.Handler, rp, c.Name + "=" + c.Value
}

// cannedTransport answers every request at once without a network, so a
// benchmark measures the proxies' own work.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Request: r,
		Header: http.Header{"Content-Type": {"text/plain"}}, Body: http.NoBody}, nil
}

// browserHeaders are what a browser sends with a page request.
var browserHeaders = [][2]string{
	{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"},
	{"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"Accept-Language", "en-GB,en;q=0.9"},
	{"Accept-Encoding", "gzip, deflate, br"},
	{"Sec-Fetch-Mode", "navigate"}, {"Sec-Fetch-Site", "same-origin"}, {"Sec-Fetch-Dest", "document"},
	{"Referer", "http://127.0.0.1:4180/app/"},
}

func benchServe(b *testing.B, h http.Handler, cookie string) {
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4180/app/page?x=1", nil)
	for _, kv := range browserHeaders {
		req.Header.Set(kv[0], kv[1])
	}
	cookies := "app_pref=dark"
	if cookie != "" {
		cookies = cookie + "; " + cookies
	}
	req.Header.Set("Cookie", cookies)
	benchLoop(b, h, req)
}

// benchLoop serves req with h until the benchmark ends, and fails it on
// any answer but 200.
func benchLoop(b *testing.B, h http.Handler, req *http.Request) {
	hdr := req.Header
	b.ReportAllocs()
	for b.Loop() {
		// Every request comes with its own header map, which gatehouse
		// edits (it removes its cookie); both proxies pay for the copy.
		req.Header = hdr.Clone()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkMiddleware compares gatehouse with a bare reverse proxy when the
// upstream costs nothing: the difference is gatehouse's own work (strip
// headers, open the cookie, find the session, check the policy, set the
// identity headers) and the allocations it adds.
func BenchmarkMiddleware(b *testing.B) {
	gate, bare, cookie := benchSetup(b, "http://127.0.0.1:9", cannedTransport{})
	b.Run("bare", func(b *testing.B) { benchServe(b, bare, "") })
	b.Run("bare-pooled", func(b *testing.B) { benchServe(b, pooled(bare), "") })
	b.Run("gatehouse", func(b *testing.B) { benchServe(b, gate, cookie) })
}

// pooled gives a bare reverse proxy a BufferPool like gatehouse's, so that
// the comparison shows gatehouse's own work rather than the pool's gain.
func pooled(h http.Handler) http.Handler {
	rp := *h.(*httputil.ReverseProxy)
	rp.BufferPool = &arrayPool{p: sync.Pool{New: func() any { return new([32 << 10]byte) }}}
	return &rp
}

// arrayPool pools 32 KiB arrays by pointer, so a Put does not allocate.
type arrayPool struct{ p sync.Pool }

func (a *arrayPool) Get() []byte { return a.p.Get().(*[32 << 10]byte)[:] }
func (a *arrayPool) Put(b []byte) {
	if len(b) == 32<<10 {
		a.p.Put((*[32 << 10]byte)(b))
	}
}

// BenchmarkRequest sends an authenticated request through gatehouse and
// the same request through a bare reverse proxy (keep-alive pool of 256),
// both to one real httptest upstream on loopback.
func BenchmarkRequest(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the upstream\n")
	}))
	defer up.Close()
	transport := &http.Transport{MaxIdleConnsPerHost: 256}
	gate, bare, cookie := benchSetup(b, up.URL, transport)
	b.Run("bare", func(b *testing.B) { benchServe(b, bare, "") })
	b.Run("bare-pooled", func(b *testing.B) { benchServe(b, pooled(bare), "") })
	b.Run("gatehouse", func(b *testing.B) { benchServe(b, gate, cookie) })
	b.Run("bare-parallel", func(b *testing.B) { benchParallel(b, bare, "") })
	b.Run("bare-pooled-parallel", func(b *testing.B) { benchParallel(b, pooled(bare), "") })
	b.Run("gatehouse-parallel", func(b *testing.B) { benchParallel(b, gate, cookie) })
}

// BenchmarkAssertion measures what the signed identity assertion adds to
// an authenticated request: the same gatehouse with assertions on (the
// default) and off, through the canned transport (gatehouse's own work
// only) and to a real upstream on loopback (the whole request). The
// assertion is signed once per session and route and then served from a
// cache, so "on" should cost a map lookup and a header, not an ECDSA
// signature.
func BenchmarkAssertion(b *testing.B) {
	const off = "assertion:\n  enabled: false\n"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the upstream\n")
	}))
	defer up.Close()
	transport := &http.Transport{MaxIdleConnsPerHost: 256}
	for _, c := range []struct {
		name, upstream string
		transport      http.RoundTripper
	}{
		{"middleware", "http://127.0.0.1:9", cannedTransport{}},
		{"request", up.URL, transport},
	} {
		on, _, onCookie := benchSetup(b, c.upstream, c.transport)
		offGate, _, offCookie := benchSetup(b, c.upstream, c.transport, off)
		b.Run(c.name+"/on", func(b *testing.B) { benchServe(b, on, onCookie) })
		b.Run(c.name+"/off", func(b *testing.B) { benchServe(b, offGate, offCookie) })
	}
}

func benchParallel(b *testing.B, h http.Handler, cookie string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4180/app/page?x=1", nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		hdr := req.Header
		for pb.Next() {
			req.Header = hdr.Clone()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

// BenchmarkUnauthenticated measures the answer to a request without a
// session: a 302 to the login for a browser, 401 for an API client.
func BenchmarkUnauthenticated(b *testing.B) {
	gate, _, _ := benchSetup(b, "http://127.0.0.1:9", cannedTransport{})
	for _, tc := range []struct{ name, accept string }{{"browser-302", "text/html"}, {"api-401", "application/json"}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4180/app/page?x=1", nil)
			req.Header.Set("Accept", tc.accept)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				gate.ServeHTTP(w, req)
				if w.Code != http.StatusFound && w.Code != http.StatusUnauthorized {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// benchAllow is the top-level policy of a benchmark whose extra YAML
// gives none: every signed-in user, as the load program's sessions are.
func benchAllow(extra []string) string {
	for _, e := range extra {
		if strings.HasPrefix(e, "allow:") || strings.Contains(e, "\nallow:") {
			return ""
		}
	}
	return "allow: {any_user: true}\n"
}

// benchRoutesConfig returns gatehouse with n routes on n/2 hosts, each
// with a public prefix and a group policy, and a session for a member.
func benchRoutesGateway(b *testing.B, n int, extra string) (http.Handler, string) {
	b.Helper()
	var routes strings.Builder
	routes.WriteString("routes:\n")
	for i := range n {
		fmt.Fprintf(&routes, "  - match: {host: app%d.example.com, path_prefix: /section%d}\n    upstream: http://127.0.0.1:9\n    public: [/section%d/static]\n    allow: {groups: [staff]}\n", i/2, i, i)
	}
	cfg, err := config.Parse([]byte(`external_url: http://127.0.0.1:4180
oidc:
  issuer: http://127.0.0.1:1
  client_id: bench
  client_secret: bench
cookie:
  secret: `+strings.Repeat("b", 32)+"\n"+routes.String()+extra), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Transport: cannedTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	s := &sessions.Session{ID: sessions.NewID(), Subject: "bob", User: "bob", Email: "bob@example.com",
		Groups: []string{"staff"}, Created: time.Now()}
	if err := gw.Store.Create(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	c, _ := gw.Auth().SessionCookie(s.ID)
	return gw.Handler, c.Name + "=" + c.Value
}

// BenchmarkRoutes sends an authenticated request through gatehouse
// configured with 1, 50 and 500 routes: route matching must not grow with
// the number of routes.
func BenchmarkRoutes(b *testing.B) {
	for _, n := range []int{1, 50, 500} {
		h, cookie := benchRoutesGateway(b, n, "")
		host := fmt.Sprintf("app%d.example.com", (n-1)/2)
		path := fmt.Sprintf("/section%d/page/x", n-1)
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
			req.Header.Set("Cookie", cookie)
			benchLoop(b, h, req)
		})
	}
}

// BenchmarkForwardAuth answers an allowed forward-auth call from nginx
// (auth_request with X-Original-URL) and one without a session (401).
func BenchmarkForwardAuth(b *testing.B) {
	h, cookie := benchRoutesGateway(b, 50, "forward_auth: {mode: nginx}\n")
	for _, tc := range []struct {
		name, cookie string
		status       int
	}{{"allowed", cookie, 200}, {"no-session-401", "", 401}} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4180/_gatehouse/auth", nil)
			req.Header.Set("X-Original-Method", "GET")
			req.Header.Set("X-Original-URL", "https://app12.example.com/section24/page?x=1")
			req.RemoteAddr = "127.0.0.1:40000"
			if tc.cookie != "" {
				req.Header.Set("Cookie", tc.cookie)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != tc.status {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
