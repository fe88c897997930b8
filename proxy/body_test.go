package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/demoapp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// bodyUpstream reads each request's body to the end and reports how the
// read ended, so a test sees when the upstream's request is over; it
// answers after delay (a slow application).
type bodyUpstream struct {
	ended chan error
	delay time.Duration
}

func (u bodyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	select {
	case u.ended <- err:
	default:
	}
	time.Sleep(u.delay)
	fmt.Fprintf(w, "%d", n)
}

// slowPost sends a signed-in POST declaring size bytes over a raw
// connection, first sends the bytes of head at once, then trickles a byte
// every 20ms until gatehouse answers (at most 10s), and returns the
// answer and how long it took.
func slowPost(t *testing.T, e *testenv.Env, cookie string, size, head int, header ...string) (*http.Response, string, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nAccept: application/json\r\nContent-Length: %d\r\nCookie: %s\r\n%s\r\n",
		strings.TrimPrefix(e.URL, "http://"), size, cookie, strings.Join(header, ""))
	_, _ = conn.Write(bytes.Repeat([]byte("x"), head))
	answered := make(chan struct{})
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 500 {
			select {
			case <-answered:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	close(answered)
	if err != nil {
		t.Fatalf("no answer to the slow POST: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), time.Since(start)
}

// waitGoroutines polls until the goroutine count is back to at most
// want, for up to 5s.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > want {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d, want at most %d (baseline)\n%s", n, want, buf[:runtime.Stack(buf, true)])
	}
}

// TestBody_SlowUploadGets408: a signed-in client declaring 1 MB and
// sending a byte every 20ms gets 408 once read_body_timeout has passed,
// the upstream's request ends at once (its connection is released), and
// no goroutine is left behind. Before, the upload held the upstream
// connection for as long as the client kept trickling.
func TestBody_SlowUploadGets408(t *testing.T) {
	up := bodyUpstream{ended: make(chan error, 1)}
	e := testenv.New(t, testenv.Options{Upstream: up, YAML: "server:\n  read_body_timeout: 300ms\n  min_body_rate: 0\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	<-up.ended // the login's landing request
	cookie := e.Gateway.Auth().SessionCookieName() + "=" + b.SessionCookie()
	b.Client.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	resp, body, took := slowPost(t, e, cookie, 1<<20, 0)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, `"error":"body_timeout"`) {
		t.Fatalf("slow upload: %d %s, want 408 body_timeout", resp.StatusCode, body)
	}
	if took > 3*time.Second {
		t.Errorf("408 after %v; read_body_timeout is 300ms", took)
	}
	if !resp.Close {
		t.Error("the 408 keeps the connection open; the rest of the body would be read as a request")
	}
	select {
	case err := <-up.ended:
		if err == nil {
			t.Error("the upstream read the whole body of a cut upload")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the upstream's request still runs after the 408")
	}
	waitGoroutines(t, baseline)
	if !strings.Contains(e.Logs.String(), `"reason":"body_timeout"`) {
		t.Error("the 408 was not logged")
	}

	// Asking for an upgrade does not exempt a body from the limit.
	resp, body, _ = slowPost(t, e, cookie, 1<<20, 0, "Connection: Upgrade\r\nUpgrade: websocket\r\n")
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow upload asking for an upgrade: %d %s, want 408", resp.StatusCode, body)
	}
}

// TestBody_MinRateExtendsTheLimit: each min_body_rate bytes received
// extend read_body_timeout by a second: 2000 bytes at once at 1000 B/s
// buy 2s more, then the trickle (50 B/s) is too slow.
func TestBody_MinRateExtendsTheLimit(t *testing.T) {
	up := bodyUpstream{ended: make(chan error, 1)}
	e := testenv.New(t, testenv.Options{Upstream: up, YAML: "server:\n  read_body_timeout: 200ms\n  min_body_rate: 1000\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	cookie := e.Gateway.Auth().SessionCookieName() + "=" + b.SessionCookie()
	resp, body, took := slowPost(t, e, cookie, 1<<20, 2000)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow upload: %d %s, want 408", resp.StatusCode, body)
	}
	// 200ms + 2s for the head, + about 20ms per trickled byte: 2.2s to 2.5s.
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("408 after %v, want about 2.3s", took)
	}
}

// TestBody_FastUploadUnaffected: a 16 MB upload at loopback speed passes
// whole with a body limit far shorter than it would take at the minimum
// rate, and the answer, which the application sends after longer than the
// limit, is not cut by a deadline left behind.
func TestBody_FastUploadUnaffected(t *testing.T) {
	up := bodyUpstream{ended: make(chan error, 4), delay: 500 * time.Millisecond}
	e := testenv.New(t, testenv.Options{Upstream: up, YAML: "server:\n  read_body_timeout: 300ms\n  min_body_rate: 1024\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	data := make([]byte, 16<<20)
	_, _ = rand.Read(data)
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(data)
		if chunked {
			body = io.MultiReader(body) // no length: chunked
		}
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/upload", body)
		resp := b.Do(req)
		if resp.StatusCode != http.StatusOK || resp.Body != fmt.Sprint(len(data)) {
			t.Errorf("chunked %v: %d %q, want 200 and the upstream reading %d bytes", chunked, resp.StatusCode, resp.Body, len(data))
		}
	}
}

// TestBody_WebSocketNotCut: an upgraded connection idle for longer than
// read_body_timeout still carries messages.
func TestBody_WebSocketNotCut(t *testing.T) {
	e := testenv.New(t, testenv.Options{Upstream: demoapp.Handler(demoapp.Options{}),
		YAML: "server:\n  read_body_timeout: 100ms\n  min_body_rate: 0\n"})
	websocketEcho(t, e, 400*time.Millisecond)
}
