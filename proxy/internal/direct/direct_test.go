package direct

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/proxy/internal/direct/directtest"
)

// The engine's own tests: the direct path against httputil.ReverseProxy
// with Rewrite and NewTransport, with nothing of gatehouse around them.
// Package proxy's direct tests run the same comparisons through whole
// gateways, on the same scripted upstream.

// The scripted upstream both this package's tests and package proxy's
// gateway tests drive (directtest).
type reply = directtest.Reply

var newScriptedUpstream = directtest.NewUpstream

// reverseProxy is the reverse proxy gatehouse runs beside the direct
// path, as package proxy builds it: Rewrite, the given transport and
// testHooks' error answers.
func reverseProxy(target *url.URL, transport http.RoundTripper, preserveHost bool) *httputil.ReverseProxy {
	hooks := testHooks{}
	return &httputil.ReverseProxy{
		Rewrite:      Rewrite(target, preserveHost),
		Transport:    transport,
		ErrorHandler: hooks.Fail,
		ErrorLog:     slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
}

// testHooks answer failures as gatehouse does, by status: 504 for a
// timeout, nothing for a client gone, else 502.
type testHooks struct{}

func (testHooks) Fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		return
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		http.Error(w, "upstream timeout", http.StatusGatewayTimeout)
		return
	}
	http.Error(w, "upstream unavailable", http.StatusBadGateway)
}

func (testHooks) Answered(*http.Response) {}

func (testHooks) Upstream(time.Duration) {}

// bufferPool lends copy buffers, as gatehouse's does.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if p, ok := b.p.Get().(*[32 << 10]byte); ok {
		return p[:]
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(p []byte) { b.p.Put((*[32 << 10]byte)(p)) }

// forwarders starts two servers in front of upstream: one forwarding
// every request the direct path takes through it (with its pool), the
// other every request through ReverseProxy with transport. Both set
// X-Request-Id on the answer first, as gatehouse does.
func forwarders(t testing.TB, upstream string, transport *http.Transport, timeout time.Duration) (direct, standard *httptest.Server, pools *Pools) {
	t.Helper()
	if !Supported {
		t.Skip("the direct path does not run on this system")
	}
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	pools = NewPools()
	fw := New(Config{Target: target, Timeout: timeout, Pool: pools.Get(target.Host), Buffers: &bufferPool{},
		Log: slog.New(slog.DiscardHandler), Hooks: testHooks{}})
	rp := reverseProxy(target, transport, false)
	rp.BufferPool = &bufferPool{}
	withID := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
			next.ServeHTTP(w, r)
		})
	}
	direct = httptest.NewServer(withID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fw.Eligible(r) {
			t.Errorf("the direct path does not take %s %s", r.Method, r.URL)
			http.Error(w, "not eligible", http.StatusTeapot)
			return
		}
		fw.ServeHTTP(w, r)
	})))
	standard = httptest.NewServer(withID(rp))
	t.Cleanup(func() {
		direct.Close()
		standard.Close()
		pools.CloseIdle()
	})
	return direct, standard, pools
}

// sortedHead is a request head with its header lines sorted: the
// standard path writes them sorted, the direct path in map order.
func sortedHead(h string) string {
	lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
	slices.Sort(lines[1:])
	return strings.Join(lines, "\n")
}

// FuzzDirectHead writes requests built from fuzzed paths, queries and
// headers with the direct path's checkHead and writeHead, and sends the
// same requests // through ReverseProxy with Rewrite and a real http.Transport to an
// upstream that records what arrives: wherever the direct path takes a
// request, the upstream must get the same head (header lines in any
// order), and one refuses exactly what the other refuses.
func FuzzDirectHead(f *testing.F) {
	f.Add("/app/page", "a=1&b=2", "X-Custom", "value", "keep-alive, X-Custom", "trailers", "agent/1", "", false)
	f.Add("/", "", "Te", "trailers", "Te", "deflate", "", "/base/", true)
	f.Add("/a b/%c3%a9", "q", "X-Bad", "a\rb", "", "", "", "/base", false)
	f.Add("/x", "", "Forwarded", "for=1.2.3.4", "close, Forwarded", "", "", "", false)
	f.Add("/x", "", "Content-Length", "5", "", "", "  padded  ", "/", false)
	f.Add("/x", "", "X-Forwarded-For", "203.0.113.7", "X-Forwarded-Host", "", "", "", true)
	f.Add("/x", "", "X-Forwarded-Host", "h.example", "X-Forwarded-Host, X-Other", "\x01", "a\x01", "", false)
	up := newScriptedUpstream(f, func(_, _ int, _ string) reply {
		return reply{Now: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}
	})
	transport := NewTransport(5 * time.Second)
	f.Fuzz(func(t *testing.T, path, query, name, value, connection, te, ua, targetPath string, preserveHost bool) {
		name = http.CanonicalHeaderKey(name)
		if !config.ValidToken(name) || !strings.HasPrefix(path, "/") || (targetPath != "" && !strings.HasPrefix(targetPath, "/")) ||
			!requestLineSafe(query) || !requestLineSafe(targetPath) {
			t.Skip("not a request net/http would hand gatehouse")
		}
		target, err := url.Parse(up.URL() + targetPath)
		if err != nil || target.RawPath != "" || target.RawQuery != "" || target.Fragment != "" {
			t.Skip("not an upstream gatehouse's configuration accepts")
		}
		r := httptest.NewRequest(http.MethodGet, "http://app.example.com/", nil)
		r.URL = &url.URL{Path: path, RawQuery: query}
		r.Header = http.Header{}
		for _, kv := range [][2]string{{name, value}, {"Connection", connection}, {"Te", te}, {"User-Agent", ua}} {
			if kv[1] != "" {
				r.Header[kv[0]] = append(r.Header[kv[0]], kv[1])
			}
		}
		d := &Forwarder{target: target, preserveHost: preserveHost}
		if !d.Eligible(r) {
			return // ReverseProxy's own
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		derr := checkHead(r)
		if derr == nil {
			derr = d.writeHead(bw, r)
		}
		bw.Flush()

		rp := reverseProxy(target, transport, preserveHost)
		before := up.Requests()
		w := httptest.NewRecorder()
		rp.ServeHTTP(w, r.Clone(r.Context()))
		got := up.LastHead()
		if w.Code != http.StatusOK {
			if derr == nil {
				t.Fatalf("ReverseProxy refused the request (%d: %s) but the direct path wrote\n%s", w.Code, w.Body, buf.String())
			}
			return
		}
		if derr != nil {
			t.Fatalf("the direct path refused a request ReverseProxy sent (%v):\n%s", derr, got)
		}
		if up.Requests() == before {
			t.Fatal("the upstream recorded no new request")
		}
		if a, b := sortedHead(strings.TrimSuffix(buf.String(), "\r\n")), sortedHead(got); a != b {
			t.Fatalf("the direct path wrote\n%s\n\nReverseProxy and http.Transport sent\n%s", a, b)
		}
	})
}

// requestLineSafe reports whether s could come from a request line's
// target: no spaces, control characters or fragment.
func requestLineSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}
