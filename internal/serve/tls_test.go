package serve

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devca"
)

// tlsSetup is the TLS side of a test server: a throwaway CA, the files
// tls.cert_file and tls.key_file name, and a client trusting only the CA.
type tlsSetup struct {
	t                 *testing.T
	ca                *devca.CA
	certFile, keyFile string
	first             *devca.Pair
	redirect          string        // tls.redirect_http, or ""
	watchEvery        time.Duration // Options.WatchEvery
	server            string        // lines added to the server section
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	ca, err := devca.New("gatehouse serve test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ts := &tlsSetup{t: t, ca: ca, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), watchEvery: 50 * time.Millisecond}
	ts.first = ts.rotate()
	return ts
}

// rotate writes a new pair for 127.0.0.1 to the files and returns it.
func (ts *tlsSetup) rotate() *devca.Pair {
	ts.t.Helper()
	p, err := ts.ca.IssueFor("127.0.0.1", "localhost")
	if err != nil {
		ts.t.Fatal(err)
	}
	if err := p.Write(ts.certFile, ts.keyFile); err != nil {
		ts.t.Fatal(err)
	}
	return p
}

func (ts *tlsSetup) section() string {
	s := "tls:\n  cert_file: " + ts.certFile + "\n  key_file: " + ts.keyFile + "\n"
	if ts.redirect != "" {
		s += "  redirect_http: " + ts.redirect + "\n"
	}
	return s
}

func (ts *tlsSetup) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: ts.ca.Pool()}
}

// transport trusts the test CA only, and speaks HTTP/2 when offered.
func (ts *tlsSetup) transport() *http.Transport {
	return &http.Transport{TLSClientConfig: ts.clientConfig(), ForceAttemptHTTP2: true, DisableKeepAlives: false}
}

// handshake connects to addr and completes a TLS handshake with cfg
// (the CA trusted, ServerName 127.0.0.1 unless set).
func (ts *tlsSetup) handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	if cfg.RootCAs == nil {
		cfg.RootCAs = ts.ca.Pool()
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// presented is the certificate a new handshake gets.
func (s *server) presented() *x509.Certificate {
	s.t.Helper()
	st, err := s.tls.handshake(s.addr(), &tls.Config{})
	if err != nil {
		s.t.Fatalf("TLS handshake with %s: %v", s.addr(), err)
	}
	return st.PeerCertificates[0]
}

func (s *server) addr() string { return strings.TrimPrefix(s.url, "https://") }

func TestTLS_HTTP2AndVersions(t *testing.T) {
	s := startWith(t, "", newTLSSetup(t))
	b := s.browser()
	s.login(b, "alice")

	resp, body := b.get(s.url + "/page")
	if resp.StatusCode != http.StatusOK || body != "hello alice" {
		t.Fatalf("GET /page over https: %d %q", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" || resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, ALPN %q; want HTTP/2 negotiated as h2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	var session *http.Cookie
	for _, c := range b.cookies(s.url) {
		if strings.HasPrefix(c.Name, "__Host-gatehouse") && !strings.HasSuffix(c.Name, "_login") {
			session = c
		}
	}
	if session == nil {
		t.Errorf("no __Host-gatehouse session cookie over https; cookies: %v", b.cookies(s.url))
	}

	for _, c := range []struct {
		name     string
		min, max uint16
		protos   []string
		wantErr  string
		wantALPN string
	}{
		{name: "TLS 1.3", min: tls.VersionTLS13, max: tls.VersionTLS13, protos: []string{"h2", "http/1.1"}, wantALPN: "h2"},
		{name: "TLS 1.2", min: tls.VersionTLS12, max: tls.VersionTLS12, protos: []string{"h2", "http/1.1"}, wantALPN: "h2"},
		{name: "HTTP/1.1 only client", min: tls.VersionTLS12, max: tls.VersionTLS13, protos: []string{"http/1.1"}, wantALPN: "http/1.1"},
		{name: "TLS 1.1 refused", min: tls.VersionTLS10, max: tls.VersionTLS11, wantErr: "protocol version"},
		{name: "TLS 1.0 refused", min: tls.VersionTLS10, max: tls.VersionTLS10, wantErr: "protocol version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := s.tls.handshake(s.addr(), &tls.Config{MinVersion: c.min, MaxVersion: c.max, NextProtos: c.protos})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("handshake err = %v, want one containing %q (version %x negotiated)", err, c.wantErr, st.Version)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.NegotiatedProtocol != c.wantALPN {
				t.Errorf("ALPN %q, want %q", st.NegotiatedProtocol, c.wantALPN)
			}
			if !st.PeerCertificates[0].Equal(s.tls.first.Leaf) {
				t.Errorf("presented %s, want the configured certificate", st.PeerCertificates[0].Subject)
			}
		})
	}
}

// TestTLS_CertificateRotation: a new pair written to the files is served
// to the next handshakes without a restart, and the sessions of before
// carry on.
func TestTLS_CertificateRotation(t *testing.T) {
	ts := newTLSSetup(t)
	s := startWith(t, "", ts)
	b := s.browser()
	s.login(b, "alice")
	if got := s.presented(); !got.Equal(ts.first.Leaf) {
		t.Fatalf("presented serial %x, want the first pair's %x", got.SerialNumber, ts.first.Leaf.SerialNumber)
	}

	second := ts.rotate()
	waitFor(t, func() bool { return s.presented().Equal(second.Leaf) })
	if !strings.Contains(s.logs.String(), `"msg":"TLS certificate loaded","trigger":"files changed"`) {
		t.Errorf("no INFO line for the reload:\n%s", s.logs)
	}

	// The session cookie of before keeps working, on a new connection
	// that sees the new certificate.
	b.c.CloseIdleConnections()
	resp, body := b.get(s.url + "/after-rotation")
	if resp.StatusCode != http.StatusOK || body != "hello alice" {
		t.Fatalf("after the rotation: %d %q, want alice's page", resp.StatusCode, body)
	}
	if !resp.TLS.PeerCertificates[0].Equal(second.Leaf) {
		t.Errorf("the request after the rotation saw serial %x, want %x", resp.TLS.PeerCertificates[0].SerialNumber, second.Leaf.SerialNumber)
	}

	// SIGHUP (or a configuration reload) re-reads the files too.
	third := ts.rotate()
	s.reload <- struct{}{}
	waitFor(t, func() bool { return s.presented().Equal(third.Leaf) })
}

// TestTLS_InvalidNewPairKeepsOld: a new pair that fails a check is
// refused with an ERROR naming the file and the problem, and the pair of
// before keeps serving.
func TestTLS_InvalidNewPairKeepsOld(t *testing.T) {
	ts := newTLSSetup(t)
	s := startWith(t, "", ts)
	b := s.browser()
	s.login(b, "alice")

	other, err := ts.ca.IssueFor("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ts.ca.Issue([]string{"127.0.0.1"}, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		cert, key  []byte
		key_, want string // the configuration key and the problem the log names
	}{
		{"key of another certificate", ts.first.CertPEM, other.KeyPEM, "tls.key_file", "does not match the certificate in tls.cert_file"},
		{"expired certificate", expired.CertPEM, expired.KeyPEM, "tls.cert_file", "expired at"},
		{"not PEM", []byte("garbage\n"), ts.first.KeyPEM, "tls.cert_file", "holds no PEM certificate"},
		{"empty key file", ts.first.CertPEM, nil, "tls.key_file", "holds no PEM-encoded private key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mark := len(s.logs.String())
			p := &devca.Pair{CertPEM: c.cert, KeyPEM: c.key}
			if err := p.Write(ts.certFile, ts.keyFile); err != nil {
				t.Fatal(err)
			}
			file := ts.certFile
			if c.key_ == "tls.key_file" {
				file = ts.keyFile
			}
			want := `"msg":"TLS certificate reload refused; the previous certificate keeps serving","trigger":"files changed","key":"` + c.key_ + `","file":"` + file + `","problem":"`
			waitFor(t, func() bool { return strings.Contains(s.logs.String()[mark:], want) })
			logs := s.logs.String()[mark:]
			at := strings.Index(logs, want)
			line := logs[strings.LastIndexByte(logs[:at], '\n')+1:]
			line = line[:strings.IndexByte(line, '\n')]
			if !strings.Contains(line, `"level":"ERROR"`) || !strings.Contains(line, c.want) {
				t.Errorf("log line %s\nwant ERROR naming %q", line, c.want)
			}
			if got := s.presented(); !got.Equal(ts.first.Leaf) {
				t.Errorf("presented serial %x after a bad pair, want the first pair's %x", got.SerialNumber, ts.first.Leaf.SerialNumber)
			}
			b.c.CloseIdleConnections()
			if resp, body := b.get(s.url + "/still"); resp.StatusCode != http.StatusOK || body != "hello alice" {
				t.Errorf("after a bad pair: %d %q, want alice's page", resp.StatusCode, body)
			}
			// Reported once, not at every check.
			time.Sleep(5 * ts.watchEvery) // lets several checks pass; nothing to poll for
			if n := strings.Count(s.logs.String()[mark:], want); n != 1 {
				t.Errorf("the bad pair was reported %d times, want once", n)
			}
		})
	}
	// A good pair afterwards is picked up.
	good := ts.rotate()
	waitFor(t, func() bool { return s.presented().Equal(good.Leaf) })
}

func TestTLS_RedirectListener(t *testing.T) {
	ts := newTLSSetup(t)
	ts.redirect = freeAddr(t)
	s := startWith(t, "routes:\n  - match: {host: \"*.example.com\"}\n    upstream: http://127.0.0.1:1\n", ts)
	plain := "http://" + ts.redirect
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	port := s.addr()[strings.LastIndexByte(s.addr(), ':'):]
	for _, c := range []struct {
		name, method, path, host string
		want                     int
		location                 string
	}{
		{"GET", "GET", "/docs/page?x=1&y=%2F", "", http.StatusMovedPermanently, s.url + "/docs/page?x=1&y=%2F"},
		{"HEAD", "HEAD", "/", "", http.StatusMovedPermanently, s.url + "/"},
		{"POST keeps its method", "POST", "/form", "", http.StatusPermanentRedirect, s.url + "/form"},
		{"forged host", "GET", "/x", "evil.example.net", http.StatusMovedPermanently, s.url + "/x"},
		{"host with a userinfo trick", "GET", "/x", "evil.net@a.example.com", http.StatusMovedPermanently, s.url + "/x"},
		{"a route's host", "GET", "/x", "wiki.example.com:80", http.StatusMovedPermanently, "https://wiki.example.com" + port + "/x"},
		{"protocol-relative path", "GET", "//evil.net/x", "", http.StatusMovedPermanently, s.url + "//evil.net/x"},
		{"gatehouse endpoints are not served", "GET", "/_gatehouse/whoami", "", http.StatusMovedPermanently, s.url + "/_gatehouse/whoami"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, plain+c.path, strings.NewReader("a=1"))
			if c.host != "" {
				req.Host = c.host
			}
			resp, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want || resp.Header.Get("Location") != c.location {
				t.Errorf("%s %s (Host %q): %d Location %q, want %d %q", c.method, c.path, c.host, resp.StatusCode, resp.Header.Get("Location"), c.want, c.location)
			}
		})
	}
	resp, err := noFollow.Get(plain + "/_gatehouse/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("healthz on the redirect listener: %d %q, want 200 ok", resp.StatusCode, body)
	}
	// Following the redirect reaches gatehouse over https.
	b := s.browser()
	b.c.CheckRedirect = nil
	if resp, _ := b.get(plain+"/_gatehouse/healthz?probe=1", "Accept", "text/plain"); resp.Request.URL.Scheme != "https" || resp.StatusCode != http.StatusOK {
		t.Errorf("following the redirect: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// The main listener speaks TLS only.
	if resp, err := http.Get("http://" + s.addr() + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %d, want Go's 400 for HTTP on an HTTPS port", resp.StatusCode)
		}
	}
}

// TestTLS_ServerTimeoutsApply: server.read_header_timeout bounds a client
// that connects and never completes the handshake.
func TestTLS_ServerTimeoutsApply(t *testing.T) {
	ts := newTLSSetup(t)
	ts.server = "  read_header_timeout: 300ms\n"
	s := startWith(t, "", ts)
	conn, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s without a ClientHello; read_header_timeout is 300ms")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %s, want about read_header_timeout (300ms)", d)
	}
}

// TestTLS_StartRefusesBadPair: gatehouse does not start with a pair that
// fails a check, and says which key and why.
func TestTLS_StartRefusesBadPair(t *testing.T) {
	ts := newTLSSetup(t)
	if err := os.WriteFile(ts.keyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gatehouse.yaml")
	yml := "listen: 127.0.0.1:0\nexternal_url: https://127.0.0.1:4180\nupstream: http://127.0.0.1:1\noidc:\n  issuer: http://127.0.0.1:1\n  client_id: x\n  client_secret: y\ncookie:\n  secret: " +
		strings.Repeat("c", 32) + "\nallow:\n  any_user: true\n" + ts.section()
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Run(t.Context(), Options{ConfigPath: cfg, LogOutput: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "tls.key_file (line 14): "+ts.keyFile+": holds no PEM-encoded private key") {
		t.Fatalf("Run: %v, want a refusal naming tls.key_file", err)
	}
}

// TestTLS_WebSocketClosedAtShutdown: an upgraded connection over TLS is
// still known to the shutdown, which waits server.shutdown_timeout for
// it and then closes it (ServeTLS wraps the tracked connection).
func TestTLS_WebSocketClosedAtShutdown(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		_ = rw.Flush()
		_, _ = io.Copy(conn, rw) // echo
	}))
	t.Cleanup(ws.Close)
	ts := newTLSSetup(t)
	s := startWith(t, "routes:\n  - match: {path_prefix: /ws}\n    upstream: "+ws.URL+"\n", ts)
	b := s.browser()
	s.login(b, "alice")
	var cookie string
	for _, c := range b.cookies(s.url) {
		if c.Name == "__Host-gatehouse" {
			cookie = c.Name + "=" + c.Value
		}
	}
	b.c.CloseIdleConnections()

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr(), &tls.Config{RootCAs: ts.ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n", s.addr(), cookie)
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade over TLS: %v %v", resp, err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(rd, echo); err != nil || string(echo) != "ping" {
		t.Fatalf("echo %q, %v", echo, err)
	}

	s.cancel() // SIGTERM
	start := time.Now()
	if _, err := rd.ReadByte(); err == nil {
		t.Fatal("read a byte nobody sent")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the upgraded connection is still open %s after the shutdown began (shutdown_timeout 5s)", time.Since(start).Round(time.Millisecond))
	}
	waitFor(t, func() bool {
		return strings.Contains(s.logs.String(), `"msg":"closing upgraded connections (WebSockets) still open at the shutdown deadline","connections":1`)
	})
}
