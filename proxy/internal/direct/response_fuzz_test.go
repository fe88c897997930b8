package direct

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
)

// FuzzDirectResponse has the scripted upstream answer the same raw bytes
// to a request through the direct path and through ReverseProxy with
// Rewrite and NewTransport, and requires the client to get the same answers
// from both: the same statuses, headers (in any order), bodies and
// trailers, and the same refusals (a 502, or an answer ended early). The
// upstream closes the connection after its answer, so an answer framed
// by the close ends too, and each request goes on a new connection.
//
// Left out of the comparison, where ReverseProxy is the odd one:
//   - X-Request-Id: ReverseProxy clears the response headers after
//     relaying a 1xx answer, so later answers lose it; the direct path
//     keeps it (package proxy's TestDirect_SameAsReverseProxy checks it).
//   - Content-Type when the upstream names none: on a streamed body
//     ReverseProxy sniffs one or not depending on whether a timer flushed
//     the head first; the direct path sends the head first and sniffs
//     nothing.
//   - Content-Length: 0 on an empty answer: a streamed answer with no
//     body gets it from ReverseProxy's server, which had not sent the
//     head yet; the direct path sent the head (chunked) before reading
//     the body, as above.
//   - answers with more than Max1xx informational answers, which the
//     direct path refuses and ReverseProxy relays.
func FuzzDirectResponse(f *testing.F) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
	for _, seed := range []struct {
		head bool
		raw  string
	}{
		{false, ok},
		{true, ok},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nok"},                      // short body
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nok"},                      // extra byte
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"}, // conflicting lengths
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: -1\r\n\r\nok"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nok\r\n"}, // cut chunk
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\nX-Late: 2\r\n\r\n"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum, X-Count\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\nX-Count: 2\r\n\r\n"},
		{true, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{false, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" + ok},
		{false, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"}, // no final answer
		{false, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nuntil the close"},
		{false, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close"},
		{false, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"},
		{false, "HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nbody"},
		{false, "HTTP/1.1 304 Not Modified\r\nContent-Type: text/plain\r\nEtag: \"x\"\r\nContent-Length: 10\r\n\r\nbody"},
		{true, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nbody after HEAD"},
		{true, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n"},
		{false, "HTTP/1.1 999 Odd\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"},
		{false, "HTTP/1.1 200\r\nContent-Type: text/plain\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok"},
		{false, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok"},
		{false, "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok"},
		{false, "HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{false, "garbage\r\n\r\n"},
		{false, ""},
	} {
		f.Add(seed.head, seed.raw)
	}
	var mu sync.Mutex
	var current string
	up := newScriptedUpstream(f, func(_, _ int, _ string) reply {
		mu.Lock()
		defer mu.Unlock()
		return reply{Now: current, CloseNow: true}
	})
	transport := NewTransport(2 * time.Second)
	direct, standard, pools := forwarders(f, up.URL(), transport, 2*time.Second)
	f.Fuzz(func(t *testing.T, head bool, raw string) {
		if strings.Count(raw, "HTTP/1.") > Max1xx {
			t.Skip("more informational answers than the direct path relays")
		}
		mu.Lock()
		current = raw
		mu.Unlock()
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		req := method + " /r HTTP/1.1\r\nHost: app.example.com\r\nX-Request-Id: fuzz-1\r\nTe: trailers\r\n\r\n"
		// Each answer comes on a new connection: left-over bytes on a
		// kept one are the concern of TestDirect_ConnectionsKeptHonest,
		// and an http.Transport reads them as the next answer when the
		// request goes out before it noticed them.
		transport.CloseIdleConnections()
		pools.CloseIdle()
		var got [2]string
		for i, srv := range []*httptest.Server{direct, standard} {
			got[i] = exchangeOutcome(t, srv, method, req, !namesType(raw, method))
		}
		if got[0] != got[1] {
			t.Fatalf("upstream answered %q to %s;\nthe client got from the direct path\n%s\n\nand from ReverseProxy\n%s", raw, method, got[0], got[1])
		}
	})
}

// exchangeOutcome sends req on a new connection to srv and describes what
// the client got: every answer (status, sorted headers without Date and
// X-Request-Id, body, trailers), and whether the answers ended early.
func exchangeOutcome(t *testing.T, srv *httptest.Server, method, req string, dropType bool) string {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out strings.Builder
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("no answer in time: %v", err)
			}
			out.WriteString("ended early\n")
			return out.String()
		}
		body, err := io.ReadAll(res.Body)
		res.Header.Del("Date")
		res.Header.Del("X-Request-Id")
		if dropType {
			res.Header.Del("Content-Type")
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("body not ended in time: %v", err)
			}
			// A head then a cut, or a close with nothing: the same
			// refusal. Which one the client sees depends on whether the
			// head was flushed before the body failed, which for
			// ReverseProxy is a matter of timing.
			out.WriteString("ended early\n")
			return out.String()
		}
		if len(body) == 0 && res.Header.Get("Content-Length") == "0" {
			res.Header.Del("Content-Length")
		}
		sortTrailerNames(res.Header)
		fmt.Fprintf(&out, "%d %s\n%s\nbody %q\n", res.StatusCode, sortedFields(res.Header), sortedFields(res.Trailer), body)
		if res.StatusCode >= 200 {
			return out.String()
		}
	}
}

// namesType reports whether the final answer in raw has a Content-Type.
func namesType(raw, method string) bool {
	br := bufio.NewReader(strings.NewReader(raw))
	for {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return false
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			return res.Header["Content-Type"] != nil
		}
	}
}

// sortTrailerNames puts the names a Trailer field announces in order:
// both the direct path and ReverseProxy announce the trailers of the
// upstream's answer in the order of Go's map of them, which is random.
func sortTrailerNames(h http.Header) {
	vv := h["Trailer"]
	if len(vv) == 0 {
		return
	}
	var names []string
	for _, v := range vv {
		for n := range strings.SplitSeq(v, ",") {
			names = append(names, strings.TrimSpace(n))
		}
	}
	slices.Sort(names)
	h["Trailer"] = []string{strings.Join(names, ", ")}
}

// sortedFields writes h one field a line, sorted.
func sortedFields(h http.Header) string {
	var b strings.Builder
	_ = h.WriteSubset(&b, nil) // Header.Write sorts by key
	return b.String()
}
