package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// server is gatehouse run by Run from a file, as the binary runs it, with
// a real provider (mockoidc) and an upstream.
type server struct {
	t        *testing.T
	idp      *mockoidc.MockOIDC
	upstream *httptest.Server
	url      string // gatehouse
	admin    string // admin listener
	token    string // admin token
	config   string // config file
	logs     *syncBuffer
	reload   chan struct{}
	cancel   context.CancelFunc
	done     chan error
	release  chan struct{} // closing it releases /slow upstream requests
	slow     chan struct{} // a /slow request reached the upstream

	mu     sync.Mutex
	tokens []string // every token the provider issued
	codes  []string

	tls *tlsSetup // set by startTLS
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

const baseYAML = `listen: %s
external_url: %s://%s
upstream: %s
oidc:
  issuer: %s
  client_id: %s
  client_secret: %s
  scopes: [openid, email, profile, groups]
cookie:
  secret: %s
admin:
  listen: %s
  token_file: %s
log:
  level: debug
  format: json
server:
  shutdown_timeout: 5s
`

func start(t *testing.T, extra string) *server {
	t.Helper()
	return startWith(t, extra, nil)
}

// startWith starts gatehouse, serving HTTPS with tls's files when tls is
// set.
func startWith(t *testing.T, extra string, tls *tlsSetup) *server {
	t.Helper()
	s := &server{t: t, tls: tls, logs: &syncBuffer{}, reload: make(chan struct{}), release: make(chan struct{}),
		slow: make(chan struct{}, 8), done: make(chan error, 1)}
	idp, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = idp.AddMiddleware(s.recordTokens)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := idp.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Shutdown() })
	s.idp = idp
	s.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			s.slow <- struct{}{}
			select {
			case <-s.release:
			case <-time.After(10 * time.Second):
			}
		}
		w.Header().Set("X-Seen-Route", r.Header.Get("X-Route"))
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Forwarded-User"))
	}))
	t.Cleanup(s.upstream.Close)
	dir := t.TempDir()
	s.token = "admin-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(s.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, adminAddr := freeAddr(t), freeAddr(t)
	scheme := "http"
	if tls != nil {
		scheme = "https"
		extra += tls.section()
	}
	s.url, s.admin = scheme+"://"+addr, "http://"+adminAddr
	s.config = filepath.Join(dir, "gatehouse.yaml")
	if !strings.HasPrefix(extra, "allow:") && !strings.Contains(extra, "\nallow:") {
		extra += "allow:\n  email_domains: [example.com]\n" // gatehouse has no "anyone" default
	}
	s.write(fmt.Sprintf(baseYAML, addr, scheme, addr, s.upstream.URL, idp.Issuer(), idp.ClientID, idp.ClientSecret,
		strings.Repeat("c", 32), adminAddr, tokenFile) + extra)
	watch := time.Duration(-1)
	if tls != nil {
		watch = tls.watchEvery
		if tls.server != "" {
			s.write(strings.Replace(s.baseConfig(), "  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n"+tls.server, 1))
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ready := make(chan struct{})
	go func() {
		s.done <- Run(ctx, Options{ConfigPath: s.config, LogOutput: s.logs, Reload: s.reload, WatchEvery: watch,
			Ready: func(string, string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-s.done:
		t.Fatalf("Run: %v\n%s", err, s.logs)
	case <-time.After(10 * time.Second):
		t.Fatal("gatehouse did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return s
}

func (s *server) write(content string) {
	s.t.Helper()
	if err := os.WriteFile(s.config, []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) baseConfig() string {
	b, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

// recordTokens keeps every token and code the provider hands out, so the
// log test can look for them.
func (s *server) recordTokens(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if r.URL.Path == mockoidc.TokenEndpoint {
			var m map[string]any
			if json.Unmarshal(rec.Body.Bytes(), &m) == nil {
				s.mu.Lock()
				for _, k := range []string{"id_token", "access_token", "refresh_token"} {
					if v, ok := m[k].(string); ok && v != "" {
						s.tokens = append(s.tokens, v)
					}
				}
				s.mu.Unlock()
			}
		}
		if loc := rec.Header().Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil && u.Query().Get("code") != "" {
				s.mu.Lock()
				s.codes = append(s.codes, u.Query().Get("code"))
				s.mu.Unlock()
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// browser is a cookie-keeping client that follows redirects like a
// browser navigating.
type browser struct {
	t   *testing.T
	c   *http.Client
	jar *cookiejar.Jar
}

func (s *server) browser() *browser {
	jar, _ := cookiejar.New(nil)
	var transport http.RoundTripper
	if s.tls != nil {
		transport = s.tls.transport()
	}
	return &browser{t: s.t, jar: jar, c: &http.Client{Jar: jar, Timeout: 15 * time.Second, Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			return nil
		}}}
}

func (b *browser) get(u string, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) navigate(u string) (*http.Response, string) {
	return b.get(u, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
}

func (s *server) login(b *browser, sub string, groups ...string) {
	s.t.Helper()
	s.idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true, PreferredUsername: sub, Groups: groups})
	resp, body := b.navigate(s.url + "/")
	if resp.StatusCode != 200 || body != "hello "+sub {
		s.t.Fatalf("login: %d %q", resp.StatusCode, body)
	}
}

func (b *browser) logout(s *server) {
	b.t.Helper()
	_, page := b.get(s.url+"/_gatehouse/logout", "Accept", "text/html")
	i := strings.Index(page, `name="csrf" value="`)
	if i < 0 {
		b.t.Fatalf("no sign-out form: %s", page)
	}
	csrf := page[i+len(`name="csrf" value="`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	resp, err := b.c.PostForm(s.url+"/_gatehouse/logout", url.Values{"csrf": {csrf}})
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
}

func (b *browser) cookies(u string) []*http.Cookie {
	pu, _ := url.Parse(u)
	return b.jar.Cookies(pu)
}

// scrape reads the admin listener's metrics with the Prometheus text
// parser.
func (s *server) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp, err := http.Get(s.admin + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatalf("parse metrics: %v", err)
	}
	return families
}

// value returns the counter, gauge or histogram sample count of the
// metric with exactly these labels.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func TestServe_MetricsCount(t *testing.T) {
	s := start(t, "")
	b := s.browser()
	s.login(b, "alice")
	b.get(s.url + "/page")
	b.get(s.url+"/page", "Accept", "application/json")
	s.browser().get(s.url+"/x", "Accept", "application/json") // 401
	s.browser().get(s.url+"/%2e%2e%2f", "Accept", "application/json")
	m := s.scrape()
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"gatehouse_logins_total", []string{"result", "success"}, 1},
		{"gatehouse_requests_total", []string{"route", "default", "outcome", "proxied"}, 3},
		{"gatehouse_requests_total", []string{"route", "default", "outcome", "401"}, 1},
		{"gatehouse_requests_total", []string{"route", "default", "outcome", "login_redirect"}, 1},
		{"gatehouse_requests_total", []string{"route", "gatehouse", "outcome", "400"}, 1},
		{"gatehouse_upstream_duration_seconds", []string{"route", "default"}, 3},
		{"gatehouse_overhead_seconds", nil, 3},
		{"gatehouse_idp_request_duration_seconds", []string{"op", "token"}, 1},
		{"gatehouse_idp_request_duration_seconds", []string{"op", "discovery"}, 1},
		{"gatehouse_active_sessions", nil, 1},
	} {
		if got := value(m, c.name, c.labels...); got < c.min {
			t.Errorf("%s%v = %v, want ≥ %v", c.name, c.labels, got, c.min)
		}
	}
	b.logout(s)
	m = s.scrape()
	if got := value(m, "gatehouse_logouts_total", "reason", "user"); got != 1 {
		t.Errorf("logouts{user} = %v", got)
	}
	if got := value(m, "gatehouse_active_sessions"); got != 0 {
		t.Errorf("active sessions after logout = %v", got)
	}
	// Bounded cardinality: no label value is a user or a path.
	for name, f := range m {
		if !strings.HasPrefix(name, "gatehouse_") {
			continue
		}
		for _, mm := range f.Metric {
			for _, l := range mm.Label {
				if v := l.GetValue(); strings.Contains(v, "alice") || strings.Contains(v, "/") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), v)
				}
			}
		}
	}
}

func TestServe_AuditLogFreeOfSecrets(t *testing.T) {
	s := start(t, "allow:\n  groups: [admins]\n")
	admin := s.browser()
	s.login(admin, "alice", "admins")
	denied := s.browser()
	s.idp.QueueUser(&mockoidc.MockUser{Subject: "bob", Email: "bob@example.com", EmailVerified: true})
	if resp, _ := denied.navigate(s.url + "/"); resp.StatusCode != 403 {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
	s.browser().get(s.url + "/_gatehouse/callback?code=forged&state=forged") // a failed login
	cookies := append(admin.cookies(s.url), denied.cookies(s.url)...)
	admin.logout(s)
	logs := s.logs.String()
	for _, want := range []string{`"event":"login"`, `"event":"login_failure"`, `"event":"login_denied"`, `"event":"logout"`, `"reason":"user"`, `"request_id":"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line with %s", want)
		}
	}
	s.mu.Lock()
	secrets := append(append([]string{}, s.tokens...), s.codes...)
	s.mu.Unlock()
	secrets = append(secrets, s.idp.ClientSecret, strings.Repeat("c", 32), s.token)
	for _, c := range cookies {
		secrets = append(secrets, c.Value)
	}
	if len(secrets) < 8 {
		t.Fatalf("only %d secrets collected", len(secrets))
	}
	for i, line := range strings.Split(logs, "\n") {
		for _, sec := range secrets {
			if len(sec) >= 8 && strings.Contains(line, sec) {
				t.Errorf("log line %d holds a secret (%.12s…): %s", i, sec, line)
			}
		}
		if strings.Contains(line, "code=") {
			t.Errorf("log line %d holds a query with code=: %s", i, line)
		}
	}
}

func TestServe_ReloadKeepsSessionsAndRequestsInFlight(t *testing.T) {
	s := start(t, "")
	b := s.browser()
	s.login(b, "alice")
	base := s.baseConfig()

	inflight := make(chan string, 1)
	go func() {
		_, body := b.get(s.url + "/slow")
		inflight <- body
	}()
	s.awaitSlow()

	// A valid configuration with a new route, and a listen address that
	// cannot change while running.
	addr := strings.TrimPrefix(s.url, "http://")
	s.write(strings.Replace(base, "listen: "+addr, "listen: 127.0.0.1:1", 1) +
		"routes:\n  - match: {path_prefix: /new}\n    upstream: " + s.upstream.URL + "\n    extra_headers: {X-Route: new}\n")
	s.reload <- struct{}{}
	waitFor(t, func() bool { return strings.Contains(s.logs.String(), `"msg":"configuration reloaded"`) })
	if !strings.Contains(s.logs.String(), `"settings":["listen"]`) {
		t.Error("the reload did not name listen as needing a restart")
	}
	resp, body := b.get(s.url + "/new/x")
	if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Route") != "new" || body != "hello alice" {
		t.Errorf("after reload: %d route %q body %q; want the new route and the old session", resp.StatusCode, resp.Header.Get("X-Seen-Route"), body)
	}

	// An invalid configuration is refused; the running one stays.
	s.write(base + "session:\n  idle_timeout: nope\n")
	s.reload <- struct{}{}
	waitFor(t, func() bool { return strings.Contains(s.logs.String(), "configuration reload refused") })
	if !strings.Contains(s.logs.String(), `is not a duration`) {
		t.Error("the refused reload did not log its problems")
	}
	if resp, _ := b.get(s.url + "/new/x"); resp.Header.Get("X-Seen-Route") != "new" {
		t.Error("an invalid configuration replaced the running one")
	}
	close(s.release)
	select {
	case body := <-inflight:
		if body != "hello alice" {
			t.Errorf("in-flight request across two reloads: %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request never finished")
	}
}

func TestServe_SIGTERMDrainsInFlight(t *testing.T) {
	s := start(t, "")
	b := s.browser()
	s.login(b, "alice")
	inflight := make(chan string, 1)
	go func() {
		_, body := b.get(s.url + "/slow")
		inflight <- body
	}()
	// Once the request is at the upstream, stop as on SIGTERM.
	s.awaitSlow()
	s.cancel()
	time.AfterFunc(200*time.Millisecond, func() { close(s.release) })
	select {
	case body := <-inflight:
		if body != "hello alice" {
			t.Errorf("in-flight request during shutdown: %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request never finished")
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := http.Get(s.url + "/"); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestServe_AdminSessions(t *testing.T) {
	s := start(t, "")
	b1, b2 := s.browser(), s.browser()
	s.login(b1, "alice")
	s.login(b2, "alice")
	call := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, s.admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := call("GET", "/sessions?sub=alice", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := call("GET", "/sessions?sub=alice", "wrong-token-0123456789"); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	code, body := call("GET", "/sessions?sub=alice", s.token)
	var list struct {
		Sessions []struct {
			Handle    string `json:"handle"`
			ClientIP  string `json:"client_ip"`
			UserAgent string `json:"user_agent"`
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Sessions) != 2 {
		t.Fatalf("list: %d %s", code, body)
	}
	if list.Sessions[0].ClientIP != "127.0.0.1" || list.Sessions[0].UserAgent == "" || strings.Contains(body, "eyJ") {
		t.Errorf("list: %s", body)
	}
	if code, _ := call("DELETE", "/sessions/"+list.Sessions[0].Handle, s.token); code != 200 {
		t.Errorf("revoke one: %d", code)
	}
	if code, _ := call("DELETE", "/sessions/"+list.Sessions[0].Handle, s.token); code != 404 {
		t.Errorf("revoke again: %d", code)
	}
	revoked, kept := 0, 0
	for _, b := range []*browser{b1, b2} {
		resp, _ := b.get(s.url+"/", "Accept", "application/json")
		if resp.StatusCode == 401 {
			revoked++
		} else {
			kept++
		}
	}
	if revoked != 1 || kept != 1 {
		t.Errorf("after revoking one: %d revoked, %d kept", revoked, kept)
	}
	if code, body := call("DELETE", "/sessions?sub=alice", s.token); code != 200 || !strings.Contains(body, `"revoked":1`) {
		t.Errorf("revoke all: %d %s", code, body)
	}
	if m := s.scrape(); value(m, "gatehouse_logouts_total", "reason", "admin") != 2 {
		t.Errorf("logouts{admin} = %v", value(m, "gatehouse_logouts_total", "reason", "admin"))
	}
}

func (s *server) awaitSlow() {
	s.t.Helper()
	select {
	case <-s.slow:
	case <-time.After(10 * time.Second):
		s.t.Fatal("the slow request never reached the upstream")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServe_OutageLogSummarised: during an upstream outage every failed
// request is counted in the metrics, but the log gets the first failure
// in full and the rest only as a count (every 10s), not one WARN per
// request.
func TestServe_OutageLogSummarised(t *testing.T) {
	s := start(t, "")
	b := s.browser()
	s.login(b, "alice")
	s.upstream.Close()
	const n = 300
	for i := range n {
		resp, _ := b.get(fmt.Sprintf("%s/page/%d", s.url, i), "Accept", "application/json")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("request %d during the outage: %d, want 502", i, resp.StatusCode)
		}
	}
	if got := value(s.scrape(), "gatehouse_requests_total", "route", "default", "outcome", "5xx"); got != n {
		t.Errorf("upstream errors counted: %v, want %d", got, n)
	}
	if got := strings.Count(s.logs.String(), `"msg":"The application is unavailable"`); got != 1 {
		t.Errorf("%d WARN lines for %d identical failures, want 1 (the rest summarised)", got, n)
	}
	if !strings.Contains(s.logs.String(), `"path":"/page/0"`) {
		t.Error("the first failure's line lost its detail")
	}
}
