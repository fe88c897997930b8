package demoapp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(Options{
		HeaderNames: []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username"},
		LogoutPath:  "/_gatehouse/logout",
		WhoamiPath:  "/_gatehouse/whoami",
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestPage(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		want    []string
		notWant []string
	}{
		{
			name: "identity headers",
			path: "/",
			headers: map[string]string{
				"X-Forwarded-User":   "alice",
				"X-Forwarded-Email":  "alice@example.com",
				"X-Forwarded-Groups": "admins,staff",
			},
			want: []string{
				"<title>gatehouse demo app</title>",
				`<td id="h-x-forwarded-user">alice</td>`,
				`<td id="h-x-forwarded-email">alice@example.com</td>`,
				`<td id="h-x-forwarded-groups">admins,staff</td>`,
				`<td id="h-x-forwarded-preferred-username" class="unset">(not set)</td>`,
				`<td id="path">/</td>`,
				`<a id="signout" href="/_gatehouse/logout">Sign out</a>`,
				`<a id="whoami" href="/_gatehouse/whoami">`,
			},
		},
		{
			name:    "no headers",
			path:    "/",
			want:    []string{`<td id="h-x-forwarded-user" class="unset">(not set)</td>`},
			notWant: []string{"alice"},
		},
		{
			name: "deep link and escaping",
			path: "/deep/link?x=1&y=%3Cb%3E",
			headers: map[string]string{
				"X-Forwarded-User":  `<script>alert("x")</script>`,
				"X-Forwarded-Email": `a"b@example.com`,
			},
			want: []string{
				`<td id="path">/deep/link?x=1&amp;y=%3Cb%3E</td>`,
				`<td id="h-x-forwarded-user">&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</td>`,
				`<td id="h-x-forwarded-email">a&#34;b@example.com</td>`,
			},
			notWant: []string{"<script>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, tt.path, tt.headers)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %s\n%s", w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page contains %s", w)
				}
			}
		})
	}
}

func TestPageDefaultsAndOptionalLinks(t *testing.T) {
	srv := httptest.NewServer(Handler(Options{}))
	defer srv.Close()
	_, body := get(t, srv, "/", map[string]string{"X-Forwarded-Preferred-Username": "bob"})
	if !strings.Contains(body, `<td id="h-x-forwarded-preferred-username">bob</td>`) {
		t.Errorf("default header names not shown:\n%s", body)
	}
	if strings.Contains(body, `id="signout"`) || strings.Contains(body, `id="whoami"`) {
		t.Error("links rendered without paths")
	}
}

func TestHello(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name    string
		headers map[string]string
		want    helloResponse
	}{
		{"signed in", map[string]string{"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "admins, staff"},
			helloResponse{User: "alice", Email: "alice@example.com", Groups: []string{"admins", "staff"}}},
		{"anonymous", nil, helloResponse{Groups: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, "/api/hello", tt.headers)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var got helloResponse
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if got.User != tt.want.User || got.Email != tt.want.Email || strings.Join(got.Groups, "|") != strings.Join(tt.want.Groups, "|") || got.Groups == nil {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	srv := newServer(t)
	resp, err := srv.Client().Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	var data []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(data, "|") != "tick 1|tick 2|tick 3" {
		t.Errorf("events = %q", data)
	}
}

func TestEventsStopWhenClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/events", nil)
	rec := httptest.NewRecorder()
	Handler(Options{}).ServeHTTP(rec, req)
	if rec.Body.Len() != 0 {
		t.Errorf("sent %q to a client that went away", rec.Body.String())
	}
}

// wsClient is a minimal RFC 6455 client for tests.
type wsClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialWS(t *testing.T, srv *httptest.Server) *wsClient {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	keyBytes := make([]byte, 16)
	_, _ = rand.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ws", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), websocketAccept(key); got != want {
		t.Fatalf("Sec-WebSocket-Accept = %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("Upgrade = %q", resp.Header.Get("Upgrade"))
	}
	return &wsClient{t: t, conn: conn, br: br}
}

// send writes one frame; masked as RFC 6455 requires of clients unless
// unmasked is set.
func (c *wsClient) send(header0 byte, payload []byte, unmasked bool) {
	c.t.Helper()
	var buf bytes.Buffer
	buf.WriteByte(header0)
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	switch {
	case len(payload) <= 125:
		buf.WriteByte(maskBit | byte(len(payload)))
	case len(payload) <= 0xffff:
		buf.WriteByte(maskBit | 126)
		_ = binary.Write(&buf, binary.BigEndian, uint16(len(payload)))
	default:
		buf.WriteByte(maskBit | 127)
		_ = binary.Write(&buf, binary.BigEndian, uint64(len(payload)))
	}
	if unmasked {
		buf.Write(payload)
	} else {
		mask := make([]byte, 4)
		_, _ = rand.Read(mask)
		buf.Write(mask)
		for i, b := range payload {
			buf.WriteByte(b ^ mask[i%4])
		}
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads one server frame, checking that it is final and unmasked.
func (c *wsClient) recv() (byte, []byte) {
	c.t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if hdr[0]&0x80 == 0 || hdr[1]&0x80 != 0 {
		c.t.Fatalf("frame header %08b %08b: want FIN set and no mask", hdr[0], hdr[1])
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			c.t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatal(err)
	}
	return hdr[0] & 0x0f, payload
}

// expectClose reads a close frame with code and then the end of the stream.
func (c *wsClient) expectClose(code uint16) {
	c.t.Helper()
	op, payload := c.recv()
	if op != opClose || len(payload) < 2 || binary.BigEndian.Uint16(payload) != code {
		c.t.Fatalf("got opcode %d payload %q, want close %d", op, payload, code)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		c.t.Errorf("connection not closed after close frame: %v", err)
	}
}

func TestWebSocketEcho(t *testing.T) {
	srv := newServer(t)
	c := dialWS(t, srv)
	tests := []struct {
		name    string
		op      byte
		payload []byte
		wantOp  byte
	}{
		{"small text", opText, []byte("hello, gatehouse ✓"), opText},
		{"empty text", opText, nil, opText},
		{"125 bytes", opText, bytes.Repeat([]byte("a"), 125), opText},
		{"16-bit length", opText, bytes.Repeat([]byte("b"), 300), opText},
		{"max 16-bit length", opBinary, bytes.Repeat([]byte{7}, 65535), opBinary},
		{"ping", opPing, []byte("are you there"), opPong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(0x80|tt.op, tt.payload, false)
			op, got := c.recv()
			if op != tt.wantOp || !bytes.Equal(got, tt.payload) {
				t.Fatalf("got opcode %d payload %q (len %d), want %d", op, got[:min(len(got), 40)], len(got), tt.wantOp)
			}
		})
	}
	c.t = t
	c.send(0x80|opClose, binary.BigEndian.AppendUint16(nil, closeNormal), false)
	c.expectClose(closeNormal)
}

func TestWebSocketRejects(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		name     string
		header0  byte
		payload  []byte
		unmasked bool
		want     uint16
	}{
		{"unmasked client frame", 0x80 | opText, []byte("hi"), true, closeProtocolError},
		{"64-bit length", 0x80 | opBinary, make([]byte, 70000), false, closeTooBig},
		{"fragmented message", opText, []byte("part"), false, closeUnsupportedData},
		{"invalid utf-8", 0x80 | opText, []byte{0xff, 0xfe}, false, closeInvalidPayload},
		{"reserved bits", 0x80 | 0x40 | opText, []byte("x"), false, closeProtocolError},
		{"unknown opcode", 0x80 | 0x3, []byte("x"), false, closeProtocolError},
		{"oversized ping", 0x80 | opPing, make([]byte, 126), false, closeProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWS(t, srv)
			c.send(tt.header0, tt.payload, tt.unmasked)
			c.expectClose(tt.want)
		})
	}
}

func TestWebSocketHandshakeErrors(t *testing.T) {
	srv := newServer(t)
	valid := map[string]string{
		"Upgrade":               "websocket",
		"Connection":            "keep-alive, Upgrade",
		"Sec-WebSocket-Key":     base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"Sec-WebSocket-Version": "13",
	}
	tests := []struct {
		name       string
		change     map[string]string
		wantStatus int
	}{
		{"plain GET", map[string]string{"Upgrade": "", "Connection": ""}, http.StatusUpgradeRequired},
		{"wrong version", map[string]string{"Sec-WebSocket-Version": "8"}, http.StatusUpgradeRequired},
		{"missing key", map[string]string{"Sec-WebSocket-Key": ""}, http.StatusBadRequest},
		{"short key", map[string]string{"Sec-WebSocket-Key": "c2hvcnQ="}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			for k, v := range valid {
				h[k] = v
			}
			for k, v := range tt.change {
				h[k] = v
			}
			resp, _ := get(t, srv, "/ws", h)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
}

func TestWebSocketAcceptRFCExample(t *testing.T) {
	// RFC 6455 §1.3.
	if got, want := websocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Errorf("accept = %q, want %q", got, want)
	}
}
