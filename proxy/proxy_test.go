package proxy_test

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/demoapp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestProxy_APIClientGets401(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	for _, tc := range []struct {
		name    string
		method  string
		headers []string
		status  int
	}{
		{"browser navigation", "GET", []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}, 302},
		{"old browser without fetch metadata", "GET", []string{"Accept", "text/html,*/*"}, 302},
		{"fetch from a page", "GET", []string{"Accept", "text/html", "Sec-Fetch-Mode", "cors"}, 401},
		{"JSON client", "GET", []string{"Accept", "application/json"}, 401},
		{"curl", "GET", []string{"Accept", "*/*"}, 401},
		{"POST form", "POST", []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}, 401},
		{"HEAD navigation", "HEAD", []string{"Accept", "text/html"}, 302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.URL+"/api/items?page=2", nil)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				req.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			r := b.Do(req)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.status)
			}
			wantLogin := e.URL + "/_gatehouse/start?rd=%2Fapi%2Fitems%3Fpage%3D2"
			if tc.status == 302 {
				if got := r.Header.Get("Location"); got != wantLogin {
					t.Errorf("Location %q, want %q", got, wantLogin)
				}
				return
			}
			var body map[string]string
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
				t.Fatalf("401 body is not JSON: %q", r.Body)
			}
			if body["error"] != "unauthenticated" || body["login_url"] != wantLogin {
				t.Errorf("401 body %v", body)
			}
			if !strings.Contains(r.Header.Get("WWW-Authenticate"), "login_url=") {
				t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestProxy_ForbiddenPageNamesUserAndSignsOut(t *testing.T) {
	// bob may use /staff, so he has a session, but not the rest.
	e := testenv.New(t, testenv.Options{YAML: "allow:\n  groups: [admins]\n" +
		"routes:\n  - match: {path_prefix: /staff}\n    upstream: ${UPSTREAM}\n    allow: {groups: [staff]}\n"})
	b := e.NewBrowser()
	r := b.Login(testenv.User("bob", "bob@example.com", "staff"), "/")
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", r.StatusCode)
	}
	for _, want := range []string{"bob@example.com", `action="` + e.URL + `/_gatehouse/logout"`, `name="csrf"`, `id="request-id"`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("403 page lacks %q:\n%s", want, r.Body)
		}
	}
	if len(e.Requests()) != 0 {
		t.Error("a denied user reached the upstream")
	}
	csrf := between(r.Body, `name="csrf" value="`, `"`)
	out := postForm(t, b, e.URL+"/_gatehouse/logout", "csrf="+csrf, e.URL)
	if out.StatusCode != http.StatusSeeOther || e.Gateway.Store.Len() != 0 {
		t.Errorf("sign-out from the 403 page: %d, %d sessions left", out.StatusCode, e.Gateway.Store.Len())
	}
	// An allowed user passes.
	a := e.NewBrowser()
	if r := a.Login(testenv.User("alice", "alice@example.com", "admins"), "/"); r.StatusCode != http.StatusOK {
		t.Errorf("admin: status %d", r.StatusCode)
	}
}

func TestProxy_Whoami(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com", "staff"), "/")
	r := b.Get("/_gatehouse/whoami")
	var id map[string]any
	if err := json.Unmarshal([]byte(r.Body), &id); err != nil || r.StatusCode != 200 {
		t.Fatalf("whoami: %d %s", r.StatusCode, r.Body)
	}
	if id["sub"] != "alice" || id["email"] != "alice@example.com" {
		t.Errorf("whoami %v", id)
	}
	for _, tok := range []string{"eyJ", "token"} {
		if strings.Contains(r.Body, tok) {
			t.Errorf("whoami reveals %q: %s", tok, r.Body)
		}
	}
}

func TestProxy_UpstreamFailures(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	e := testenv.New(t, testenv.Options{
		YAML: "upstream_timeout: 200ms\n",
		Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				select {
				case <-hang:
				case <-r.Context().Done():
				}
			}
		}),
	})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	r := b.Get("/slow", "Accept", "text/html")
	if r.StatusCode != http.StatusGatewayTimeout || !strings.Contains(r.Body, "taking too long") {
		t.Errorf("slow upstream: %d %s", r.StatusCode, r.Body)
	}
	e.Upstream.Close()
	r = b.Get("/", "Accept", "text/html")
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.Body, `id="request-id"`) {
		t.Errorf("upstream down: %d %s", r.StatusCode, r.Body)
	}
}

func TestProxy_ServerSentEventsStream(t *testing.T) {
	next := make(chan struct{})
	e := testenv.New(t, testenv.Options{Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select { // the second event waits until the client has read the first
		case <-next:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	})})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := b.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	readEvent := func() string {
		t.Helper()
		done := make(chan string, 1)
		go func() {
			line, _ := rd.ReadString('\n')
			_, _ = rd.ReadString('\n')
			done <- strings.TrimSpace(line)
		}()
		select {
		case l := <-done:
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("event not delivered: the proxy buffers the stream")
			return ""
		}
	}
	if got := readEvent(); got != "data: one" {
		t.Fatalf("first event %q", got)
	}
	close(next)
	if got := readEvent(); got != "data: two" {
		t.Fatalf("second event %q", got)
	}
}

func TestProxy_WebSocketEcho(t *testing.T) {
	e := testenv.New(t, testenv.Options{Upstream: demoapp.Handler(demoapp.Options{})})
	websocketEcho(t, e, 0)
}

// websocketEcho signs in, opens a WebSocket through gatehouse, waits
// pause, and checks that a message comes back.
func websocketEcho(t *testing.T, e *testenv.Env, pause time.Duration) {
	t.Helper()
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	cookie := e.Gateway.Auth().SessionCookieName() + "=" + b.SessionCookie()

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n",
		strings.TrimPrefix(e.URL, "http://"), cookie)
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	time.Sleep(pause) // an idle upgraded connection, longer than any body limit
	msg := []byte("hello through gatehouse")
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	frame := []byte{0x81, 0x80 | byte(len(msg))}
	frame = append(frame, mask[:]...)
	for i, c := range msg {
		frame = append(frame, c^mask[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		_, _ = io.ReadFull(rd, ext[:])
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(rd, payload); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x81 || string(payload) != string(msg) {
		t.Fatalf("echo: opcode %#x payload %q", hdr[0], payload)
	}
	up := e.LastRequest()
	if up.Header.Get("X-Forwarded-User") != "alice" {
		t.Errorf("WebSocket upgrade reached the upstream without identity: %v", up.Header)
	}
}

func TestProxy_WebSocketNeedsSession(t *testing.T) {
	e := testenv.New(t, testenv.Options{Upstream: demoapp.Handler(demoapp.Options{})})
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/ws", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Version", "13")
	r := e.NewBrowser().Do(req)
	if r.StatusCode != http.StatusUnauthorized || len(e.Requests()) != 0 {
		t.Errorf("anonymous upgrade: %d, upstream reached %d times", r.StatusCode, len(e.Requests()))
	}
}

func TestProxy_OversizedHeadersRefused(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "server:\n  max_header_bytes: 8192\n"})
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

func TestProxy_OwnPagesNotCached(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	for _, p := range []string{"/_gatehouse/healthz", "/_gatehouse/whoami", "/_gatehouse/logout", "/_gatehouse/signed-out", "/_gatehouse/nope", "/"} {
		r := b.Get(p, "Accept", "text/html")
		if r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", p, r.Header.Get("Cache-Control"))
		}
	}
	if r := b.Get("/_gatehouse/nope"); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown gatehouse path: %d", r.StatusCode)
	}
	if r := b.Get("/_gatehouse/healthz"); r.StatusCode != 200 || r.Body != "ok\n" {
		t.Errorf("healthz: %d %q", r.StatusCode, r.Body)
	}
}
