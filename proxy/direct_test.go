package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/proxy/internal/direct"
	"github.com/gatehouse/gatehouse/proxy/internal/direct/directtest"
)

// The direct path's limits, under names that the tests' variables named
// direct do not shadow.
const (
	idleConnTimeout        = direct.IdleConnTimeout
	maxResponseHeaderBytes = direct.MaxResponseHeaderBytes
	max1xx                 = direct.Max1xx
)

// The scripted upstream this package's gateway tests and the direct
// path's own tests drive (directtest).
type reply = directtest.Reply

const pause = directtest.Pause

var newScriptedUpstream = directtest.NewUpstream

// directGateways builds two gatehouses on one configuration in front of
// upstream: one as shipped (the direct path) and one whose transport is
// an http.Transport tuned as gatehouse's own, so every request goes
// through httputil.ReverseProxy. The route is public: the session path is
// the same on both and tested elsewhere.
func directGateways(t testing.TB, upstream, extra string) (direct, standard *httptest.Server, g *Gateway) {
	t.Helper()
	return directGatewaysWith(t, upstream, extra, nil)
}

// directGatewaysWith is directGateways with the standard gatehouse's
// transport given (nil: a new one), so a test can close its idle
// connections.
func directGatewaysWith(t testing.TB, upstream, extra string, transport *http.Transport) (direct, standard *httptest.Server, g *Gateway) {
	t.Helper()
	yml := `external_url: http://127.0.0.1:4180
oidc:
  issuer: http://127.0.0.1:1
  client_id: gatehouse
  client_secret: direct-client-secret
cookie:
  secret: ` + strings.Repeat("d", 32) + `
upstream_timeout: 2s
routes:
  - name: app
    upstream: ` + upstream + `
    public: [/]
` + extra
	cfg, err := config.Parse([]byte(yml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	g, err = New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.pools == nil {
		t.Fatal("the shipped gateway has no direct path")
	}
	if transport == nil {
		transport = newTransport(cfg.UpstreamTimeout)
	}
	gs, err := New(cfg, Options{Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	direct, standard = httptest.NewServer(g.Handler), httptest.NewServer(gs.Handler)
	t.Cleanup(func() {
		direct.Close()
		standard.Close()
		g.pools.CloseIdle()
	})
	return direct, standard, g
}

// exchange sends raw on a new connection to srv and reads every answer
// to it: informational ones, then the final one with its body and
// trailers.
type answer struct {
	status  int
	header  http.Header
	body    string
	trailer http.Header
}

func rawExchange(t *testing.T, srv *httptest.Server, raw string) []answer {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	method, _, _ := strings.Cut(raw, " ")
	var out []answer
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("reading the body: %v", err)
		}
		res.Header.Del("Date")
		out = append(out, answer{res.StatusCode, res.Header, string(body), res.Trailer})
		if res.StatusCode >= 200 {
			return out
		}
	}
}

// sortedHead is a request head with its header lines sorted: the
// standard path writes them sorted, the direct path in map order.
func sortedHead(h string) string {
	lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
	slices.Sort(lines[1:])
	return strings.Join(lines, "\n")
}

// TestDirect_SameAsReverseProxy sends the same requests through the
// direct path and through httputil.ReverseProxy, to an upstream that
// answers with raw bytes, and requires the same request upstream and the
// same answers to the client. Streamed answers name their Content-Type:
// without one, ReverseProxy sniffs it or not depending on whether a timer
// flushes the head before the first body write; the direct path always
// sends the head first and sniffs nothing.
func TestDirect_SameAsReverseProxy(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
	for _, tc := range []struct {
		name, extra, target string
		// hints: ReverseProxy clears the response headers after relaying
		// a 1xx answer, so the later answers lose X-Request-Id; the
		// direct path keeps it on every answer.
		hints        bool
		request      string // after the request line
		method, path string
		answer       string
		// the direct path's request upstream must have these lines and
		// not those (besides matching ReverseProxy's)
		has, hasNot []string
	}{
		{name: "hop-by-hop and Connection-listed headers both ways", path: "/app/page?a=1&b=%20x&c",
			request: "Connection: X-Drop, keep-alive\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n" +
				"Te: deflate, trailers\r\nForwarded: for=203.0.113.9\r\nUser-Agent: agent/1\r\nUser-Agent: agent/2\r\n" +
				"Proxy-Authorization: Basic eDp5\r\nAccept: a\r\nAccept: b\r\nX-Empty:\r\nContent-Length: 0\r\n",
			answer: "HTTP/1.1 200 OK\r\nConnection: X-Resp-Drop\r\nX-Resp-Drop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n" +
				"Upgrade: h2c\r\nX-Keep: 1\r\nX-Keep: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\nhello",
			has: []string{"GET /app/page?a=1&b=%20x&c HTTP/1.1", "Te: trailers", "User-Agent: agent/1", "Accept: a", "Accept: b",
				"X-Empty: ", "X-Forwarded-For: 127.0.0.1", "X-Forwarded-Host: app.example.com", "X-Forwarded-Proto: http", "X-Request-Id: parity-1"},
			hasNot: []string{"X-Drop", "Keep-Alive", "Proxy-", "Forwarded: ", "agent/2", "Connection", "Content-Length", "deflate"}},
		{name: "no User-Agent, Te without trailers", path: "/",
			request: "Te: gzip\r\n", answer: ok},
		{name: "target path joined", target: "/base/", path: "/app/x%20y?q=2",
			answer: ok},
		{name: "target path without a slash, empty query kept", target: "/base", path: "/app?",
			answer: ok},
		{name: "preserve_host", extra: "    preserve_host: true\n", path: "/a",
			answer: ok},
		{name: "chunked with announced trailers", path: "/t", request: "Te: trailers\r\n",
			answer: "HTTP/1.1 200 OK\r\nTrailer: X-Checksum, X-Count\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Count: 2\r\n\r\n"},
		{name: "chunked with a trailer not announced", path: "/t",
			answer: "HTTP/1.1 200 OK\r\nTrailer: X-One\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"3\r\nabc\r\n0\r\nX-One: 1\r\nX-Two: 2\r\n\r\n"},
		{name: "early hints relayed", path: "/hints", hints: true,
			answer: "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
				"HTTP/1.1 103 Early Hints\r\nLink: </app.js>; rel=preload\r\n\r\n" + ok},
		{name: "HEAD keeps the length", method: "HEAD", path: "/h",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html\r\n\r\n"},
		{name: "204", path: "/n", answer: "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
		{name: "304", path: "/c", answer: "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n"},
		{name: "HTTP/1.0 answer delimited by close", path: "/old",
			answer: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"},
		{name: "server-sent events", path: "/events",
			answer: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nContent-Length: 12\r\n\r\ndata: one\n\n\n"},
		{name: "upstream error status", path: "/e",
			answer: "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\nbusy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newScriptedUpstream(t, func(_, _ int, _ string) reply {
				return reply{Now: tc.answer, CloseNow: strings.HasPrefix(tc.answer, "HTTP/1.0")}
			})
			direct, standard, _ := directGateways(t, up.URL()+tc.target, tc.extra)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			raw := method + " " + tc.path + " HTTP/1.1\r\nHost: app.example.com\r\nX-Request-Id: parity-1\r\n" + tc.request + "\r\n"
			var heads [2]string
			var answers [2][]answer
			for i, srv := range []*httptest.Server{direct, standard} {
				answers[i] = rawExchange(t, srv, raw)
				heads[i] = sortedHead(up.LastHead())
			}
			for _, l := range tc.has {
				if !slices.Contains(strings.Split(heads[0], "\n"), l) {
					t.Errorf("the upstream got no line %q:\n%s", l, heads[0])
				}
			}
			for _, l := range tc.hasNot {
				if strings.Contains(heads[0], l) {
					t.Errorf("the upstream got %q:\n%s", l, heads[0])
				}
			}
			if tc.hints {
				for i, a := range answers[0] {
					if a.header.Get("X-Request-Id") != "parity-1" {
						t.Errorf("answer %d (%d) from the direct path lacks X-Request-Id: %v", i, a.status, a.header)
					}
				}
				for _, as := range answers {
					for _, a := range as {
						a.header.Del("X-Request-Id")
					}
				}
			}
			if heads[0] != heads[1] {
				t.Errorf("the upstream got\n%s\n\nfrom the direct path, and from ReverseProxy\n%s", heads[0], heads[1])
			}
			if fmt.Sprint(answers[0]) != fmt.Sprint(answers[1]) {
				t.Errorf("the client got\n%+v\n\nfrom the direct path, and from ReverseProxy\n%+v", answers[0], answers[1])
			}
			if len(answers[0]) == 0 || answers[0][len(answers[0])-1].status == http.StatusBadGateway {
				t.Errorf("no answer relayed: %+v", answers[0])
			}
		})
	}
}

// get sends GET path to srv on a fresh client and returns the status and
// body.
func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	res, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return res.StatusCode, string(b)
}

// okReply answers with the request line's target as the body.
func okReply(head string) string {
	target := strings.Fields(head)[1]
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(target), target)
}

// TestDirect_ConnectionsKeptHonest checks the keep-alive pool: a
// connection is reused only when nothing but its answer came on it, and a
// connection the upstream closed costs the client nothing.
func TestDirect_ConnectionsKeptHonest(t *testing.T) {
	const forged = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
	for _, tc := range []struct {
		name  string
		reply func(conn, n int, head string) reply
		conns int // connections the upstream sees for three requests
	}{
		{"kept alive", func(_, _ int, h string) reply { return reply{Now: okReply(h)} }, 1},
		{"bytes after the answer", func(_, _ int, h string) reply { return reply{Now: okReply(h) + forged} }, 3},
		{"bytes sent while idle", func(_, _ int, h string) reply { return reply{Now: okReply(h), Later: forged} }, 3},
		{"closed while idle", func(_, _ int, h string) reply { return reply{Now: okReply(h), CloseLater: true} }, 3},
		{"closed instead of answering", func(conn, n int, h string) reply {
			if n == 1 { // the second request on every connection
				return reply{CloseNow: true}
			}
			return reply{Now: okReply(h)}
		}, 3}, // the second and third requests are each sent twice
		{"Connection: close", func(_, _ int, h string) reply {
			return reply{Now: strings.Replace(okReply(h), "\r\n", "\r\nConnection: close\r\n", 1)}
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newScriptedUpstream(t, tc.reply)
			direct, _, _ := directGateways(t, up.URL(), "")
			for i := range 3 {
				p := fmt.Sprintf("/req/%d", i)
				if status, body := get(t, direct, p); status != 200 || body != p {
					t.Fatalf("request %d: %d %q, want 200 %q", i, status, body, p)
				}
				time.Sleep(2 * pause) // past any "later"
			}
			if n := up.Connections(); n != tc.conns {
				t.Errorf("the upstream saw %d connections, want %d", n, tc.conns)
			}
		})
	}
}

// TestDirect_UpstreamMisbehaves checks the answers to an upstream that
// breaks the protocol: a 502, and the connection not reused.
func TestDirect_UpstreamMisbehaves(t *testing.T) {
	for _, tc := range []struct {
		name, now string
		status    int
	}{
		{"closes a new connection without answering", "", http.StatusBadGateway},
		{"garbage", "HELLO\r\n\r\n", http.StatusBadGateway},
		{"switches protocols unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", http.StatusBadGateway},
		{"endless early hints", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", max1xx+2), http.StatusBadGateway},
		{"a head over the limit", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes) + "\r\nContent-Length: 0\r\n\r\n", http.StatusBadGateway},
		{"no answer in time", "", http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newScriptedUpstream(t, func(_, _ int, _ string) reply {
				if tc.status == http.StatusGatewayTimeout {
					time.Sleep(3 * time.Second) // upstream_timeout is 2s
				}
				return reply{Now: tc.now, CloseNow: true}
			})
			direct, _, g := directGateways(t, up.URL(), "")
			if status, body := get(t, direct, "/x"); status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if n := g.pools.Get(up.Addr()).Idle(); n != 0 {
				t.Errorf("%d connections kept", n)
			}
		})
	}
}

// TestDirect_ConcurrentAnswersStayWithTheirRequests sends many requests at
// once over the pool, to an upstream that echoes each request's target
// after a random pause, and requires every client to get its own answer.
func TestDirect_ConcurrentAnswersStayWithTheirRequests(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(len(r.URL.RawQuery)%5) * time.Millisecond)
		if r.URL.Query().Get("stream") != "" {
			w.(http.Flusher).Flush() // chunked
		}
		_, _ = io.WriteString(w, r.URL.RequestURI())
	}))
	defer up.Close()
	direct, _, g := directGateways(t, up.URL, "")
	const workers, each = 8, 40
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				target := fmt.Sprintf("/w%d/r%d?q=%s", w, i, strings.Repeat("x", i%7))
				if i%3 == 0 {
					target += "&stream=1"
				}
				res, err := direct.Client().Get(direct.URL + target)
				if err != nil {
					errs <- err
					continue
				}
				b, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 || string(b) != target {
					errs <- fmt.Errorf("%s: %d %q %v", target, res.StatusCode, b, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := g.pools.Get(up.Listener.Addr().String()).Idle(); n == 0 || n > workers {
		t.Errorf("%d idle connections after %d concurrent clients, want 1 to %d", n, workers, workers)
	}
}

// TestDirect_ClientGoneEndsUpstreamCall checks that a client leaving in
// the middle of a streamed answer closes the upstream connection at once,
// not when the upstream next writes.
func TestDirect_ClientGoneEndsUpstreamCall(t *testing.T) {
	upstreamSawClose := make(chan struct{})
	up := newScriptedUpstream(t, func(_, _ int, _ string) reply {
		return reply{Now: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n"}
	})
	direct, _, _ := directGateways(t, up.URL(), "")
	c, err := net.Dial("tcp", direct.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	// The upstream's one chunk arrives: the stream is flowing.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			break
		}
	}
	// Find the upstream side of gatehouse's connection and watch it.
	go func() {
		defer close(upstreamSawClose)
		n := up.Requests()
		if n != 1 {
			return
		}
		for range 100 {
			time.Sleep(20 * time.Millisecond)
			if up.OpenConns() == 0 {
				return
			}
		}
	}()
	c.Close()
	select {
	case <-upstreamSawClose:
		if n := up.OpenConns(); n != 0 {
			t.Fatalf("the upstream connection is still open 2s after the client left (%d open)", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
}

// TestDirect_SweepClosesAbandonedConnections checks that idle connections
// the upstream closed, or that outlived the idle timeout, are closed by
// the sweep rather than held until the next request.
func TestDirect_SweepClosesAbandonedConnections(t *testing.T) {
	// The upstream answers only once both requests are in, so they come
	// on two connections.
	var mu sync.Mutex
	seen, both := 0, make(chan struct{})
	up := newScriptedUpstream(t, func(_, _ int, h string) reply {
		mu.Lock()
		if seen++; seen == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(5 * time.Second):
		}
		if strings.Contains(h, "/closes") {
			return reply{Now: okReply(h), CloseLater: true}
		}
		return reply{Now: okReply(h)}
	})
	direct, _, g := directGateways(t, up.URL(), "")
	idle := g.pools.Get(up.Addr()).Idle
	// Two connections at once, one of which the upstream closes later.
	var wg sync.WaitGroup
	for _, p := range []string{"/closes", "/stays"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := direct.Client().Get(direct.URL + p)
			if err != nil {
				t.Error(err)
				return
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != 200 || string(body) != p {
				t.Errorf("GET %s: %d %q %v", p, res.StatusCode, body, err)
			}
		}()
	}
	wg.Wait()
	if n := idle(); n != 2 {
		t.Fatalf("%d idle connections after two concurrent requests, want 2", n)
	}
	time.Sleep(2 * pause) // the upstream closes "/closes"'s connection
	g.pools.Sweep(time.Now())
	if n := idle(); n != 1 {
		t.Fatalf("after the sweep %d idle connections, want 1 (the upstream closed the other)", n)
	}
	g.pools.Sweep(time.Now().Add(idleConnTimeout))
	if n := idle(); n != 0 {
		t.Fatalf("after the idle timeout %d idle connections, want 0", n)
	}
}

// TestDirect_RefusedHeadCostsNoConnection checks that a request
// http.Transport would refuse (a control character in a header value) is
// answered 502 before a pooled connection is taken: the idle connection
// stays, and nothing reaches the upstream.
func TestDirect_RefusedHeadCostsNoConnection(t *testing.T) {
	up := newScriptedUpstream(t, func(_, _ int, h string) reply { return reply{Now: okReply(h)} })
	direct, _, g := directGateways(t, up.URL(), "")
	if status, _ := get(t, direct, "/warm"); status != 200 {
		t.Fatalf("warm-up: %d", status)
	}
	pool := g.pools.Get(up.Addr())
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/bad", nil)
	r.Header.Set("X-Bad", "a\x01b")
	w := httptest.NewRecorder()
	g.Handler.ServeHTTP(w, r)
	if w.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", w.Code)
	}
	idle := pool.Idle()
	if idle != 1 || up.Connections() != 1 || strings.Contains(up.LastHead(), "/bad") {
		t.Errorf("idle %d, upstream connections %d, last request %q: want the warm connection kept and unused", idle, up.Connections(), up.LastHead())
	}
}
