package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Faults injected into real components: the mockoidc provider (through
// testenv's IdPMiddleware), the recording upstream, and the network.
// A configuration file replaced by an invalid one is covered in
// internal/serve (TestServe_ReloadKeepsSessionsAndRequestsInFlight).

// idpFaults makes chosen provider endpoints fail, as a provider behind a
// load balancer does when it is down ("503") or as a crashed one does
// ("drop": the connection is closed without an answer). Safe for
// concurrent use.
type idpFaults struct {
	mu     sync.Mutex
	faults map[string]string // endpoint path ("" for all) → "503" or "drop"
}

func (f *idpFaults) set(path, fault string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = map[string]string{}
	}
	if fault == "" {
		delete(f.faults, path)
	} else {
		f.faults[path] = fault
	}
}

func (f *idpFaults) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		fault := f.faults[r.URL.Path]
		if fault == "" {
			fault = f.faults[""]
		}
		f.mu.Unlock()
		switch fault {
		case "503":
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		case "drop":
			dropConnection(w)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// dropConnection closes the connection of w without an answer, with a
// TCP reset. Where w cannot be hijacked (testenv records the token
// endpoint's answer to correct it), the handler aborts, and the server
// closes the connection.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// pendingCallback starts a login in b and lets the provider sign user in,
// and returns the callback URL the provider sends the browser back to,
// without following it.
func pendingCallback(t *testing.T, e *testenv.Env, b *testenv.Browser, user mockoidc.User) string {
	t.Helper()
	start := b.Get("/_gatehouse/start?rd=/x")
	if start.StatusCode != http.StatusFound {
		t.Fatalf("start: status %d", start.StatusCode)
	}
	e.IdP.QueueUser(user)
	r := e.NewBrowser().Get(start.Header.Get("Location"))
	if r.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d %s", r.StatusCode, r.Body)
	}
	return r.Header.Get("Location")
}

// wantIdPUnavailable checks the answer to a login the provider could not
// serve: 503 with the provider-unavailable page (assertPage checks the
// rest of the page), reported in the log as idp_unavailable.
func wantIdPUnavailable(t *testing.T, e *testenv.Env, r *testenv.Response) {
	t.Helper()
	const title = "The sign-in service is unavailable"
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Body, title) {
		t.Errorf("status %d, page %q; want 503, %q\nlog: %s", r.StatusCode, pageTitle(r.Body), title, lastLine(e.Logs.String(), `"err":`))
		return
	}
	assertPage(t, e, r, http.StatusServiceUnavailable, "idp_unavailable", title)
}

func pageTitle(body string) string {
	_, rest, _ := strings.Cut(body, `<h1 id="title">`)
	title, _, _ := strings.Cut(rest, "<")
	return title
}

// lastLine returns the last log line containing s.
func lastLine(logs, s string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

func readyz(t *testing.T, e *testenv.Env) int {
	t.Helper()
	return e.NewBrowser().Get("/_gatehouse/readyz").StatusCode
}

// TestFaults_IdPDownAtLogin extends TestCallback_ProviderDown (provider
// shut down before discovery and at the code exchange) with the ways a
// provider fails in production, each followed by its recovery without
// restarting gatehouse. Sessions made before an outage are served
// throughout it. Readiness means "discovery loaded": once loaded it stays
// ready while the provider is down, since gatehouse still serves the
// sessions it has; before that it is not ready.
func TestFaults_IdPDownAtLogin(t *testing.T) {
	for _, tc := range []struct{ name, path, fault string }{
		{"token endpoint answers 503", mockoidc.TokenEndpoint, "503"},
		{"token endpoint drops the connection", mockoidc.TokenEndpoint, "drop"},
		{"keys endpoint down at the first login", mockoidc.JWKSEndpoint, "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			faults := &idpFaults{}
			e := testenv.New(t, testenv.Options{IdPMiddleware: faults.middleware})
			var alice *testenv.Browser
			if tc.path != mockoidc.JWKSEndpoint { // a signed-in user, when there can be one
				alice = e.NewBrowser()
				alice.Login(testenv.User("alice", "alice@example.com"), "/")
			}
			bob := e.NewBrowser()
			cb := pendingCallback(t, e, bob, testenv.User("bob", "bob@example.com"))
			faults.set(tc.path, tc.fault)
			wantIdPUnavailable(t, e, bob.Get(cb, "Accept", "text/html"))
			if alice != nil {
				wantUpstream(t, alice, "/")
			}
			if got := readyz(t, e); got != http.StatusOK {
				t.Errorf("readyz during the outage: %d, want 200 (discovery stays loaded)", got)
			}
			faults.set(tc.path, "")
			if r := bob.Login(testenv.User("bob", "bob@example.com"), "/again"); r.StatusCode != http.StatusOK {
				t.Fatalf("login after the outage: status %d %s", r.StatusCode, r.Body)
			}
			if alice != nil {
				wantUpstream(t, alice, "/")
			}
		})
	}
	t.Run("down before discovery, then back", func(t *testing.T) {
		faults := &idpFaults{}
		faults.set("", "drop")
		e := testenv.New(t, testenv.Options{IdPMiddleware: faults.middleware})
		wantIdPUnavailable(t, e, e.NewBrowser().Navigate("/private"))
		if got := readyz(t, e); got != http.StatusServiceUnavailable {
			t.Errorf("readyz before discovery: %d, want 503", got)
		}
		faults.set("", "")
		e.Advance(3 * time.Second) // discovery is retried at most every 2s
		b := e.NewBrowser()
		if r := b.Login(testenv.User("alice", "alice@example.com"), "/private"); r.StatusCode != http.StatusOK {
			t.Fatalf("login once the provider is back: status %d %s", r.StatusCode, r.Body)
		}
		if got := readyz(t, e); got != http.StatusOK {
			t.Errorf("readyz once discovered: %d, want 200", got)
		}
	})
}

// keyRotation makes the provider rotate its signing key the way a real
// one does, without touching mockoidc's Keypair field: mockoidc's
// handlers read that field on every request with no lock, so assigning
// it while gatehouse (or go-oidc's background key fetch) may be talking
// to the provider is a data race. Instead, once rotated, the JWKS endpoint
// publishes the new keys, and the ID token of every token response is
// signed again with the new key. Access and refresh tokens stay
// mockoidc's (it verifies its own refresh tokens with its own key).
type keyRotation struct {
	mu        sync.Mutex
	signing   *mockoidc.Keypair   // nil: mockoidc's own key signs
	published []*mockoidc.Keypair // nil: mockoidc's own JWKS
	fetches   int                 // JWKS requests
	resigned  int                 // ID tokens signed with the new key
}

// rotate switches to signing; published is the new JWKS. Key IDs are
// computed here, before the keys are shared (KeyID caches it in the
// Keypair).
func (k *keyRotation) rotate(t *testing.T, signing *mockoidc.Keypair, published ...*mockoidc.Keypair) {
	t.Helper()
	for _, kp := range append(published, signing) {
		if _, err := kp.KeyID(); err != nil {
			t.Fatal(err)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.signing, k.published = signing, published
}

func (k *keyRotation) counts() (fetches, resigned int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetches, k.resigned
}

func (k *keyRotation) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		signing, published := k.signing, k.published
		if r.URL.Path == mockoidc.JWKSEndpoint {
			k.fetches++
		}
		k.mu.Unlock()
		switch {
		case r.URL.Path == mockoidc.JWKSEndpoint && published != nil:
			var set jose.JSONWebKeySet
			for _, kp := range published {
				kid, _ := kp.KeyID()
				set.Keys = append(set.Keys, jose.JSONWebKey{Key: kp.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"})
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(set)
		case r.URL.Path == mockoidc.TokenEndpoint && signing != nil:
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			var m map[string]any
			if rec.Code == http.StatusOK && json.Unmarshal(body, &m) == nil {
				if raw, ok := m["id_token"].(string); ok {
					claims := jwt.MapClaims{}
					if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err == nil {
						if s, err := signing.SignJWT(claims); err == nil {
							m["id_token"] = s
							body, _ = json.Marshal(m)
							k.mu.Lock()
							k.resigned++
							k.mu.Unlock()
						}
					}
				}
			}
			for name, v := range rec.Header() {
				w.Header()[name] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// TestFaults_IdPRotatesSigningKeys: after a login under key A the
// provider rotates to key B and withdraws A from its JWKS. A new login
// works without restarting gatehouse (go-oidc fetches the JWKS again for
// the unknown kid, once), the session made under A keeps working, and its
// refresh, whose new ID token is signed with B, works too.
func TestFaults_IdPRotatesSigningKeys(t *testing.T) {
	rot := &keyRotation{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: rot.middleware})
	alice := e.NewBrowser()
	alice.Login(testenv.User("alice", "alice@example.com"), "/")
	keyB, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	rot.rotate(t, keyB, keyB)
	before, _ := rot.counts()

	bob := e.NewBrowser()
	if r := bob.Login(testenv.User("bob", "bob@example.com"), "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("login after the rotation: status %d %s", r.StatusCode, r.Body)
	}
	if got := e.LastRequest().Header.Get("X-Forwarded-User"); got != "bob" {
		t.Errorf("upstream saw user %q, want bob", got)
	}
	fetches, resigned := rot.counts()
	if resigned != 1 || fetches != before+1 {
		t.Errorf("ID tokens signed with the new key: %d, JWKS fetches for the new kid: %d; want 1 and 1", resigned, fetches-before)
	}
	wantUpstream(t, alice, "/")
	e.Advance(accessTTL) // alice's refresh is due: its new ID token is signed with B
	wantUpstream(t, alice, "/")
	if n := e.Grants("refresh_token"); n != 1 {
		t.Errorf("refreshes: %d, want 1", n)
	}
	if _, resigned := rot.counts(); resigned != 2 {
		t.Errorf("ID tokens signed with the new key: %d, want 2 (bob's login, alice's refresh)", resigned)
	}
	wantUpstream(t, bob, "/")
}

// hangingTokenEndpoint makes the provider's token endpoint hang, once
// switched on: each call waits until the test releases them all, whatever
// its client does, as a provider stuck on a database would.
type hangingTokenEndpoint struct {
	on      atomic.Bool
	calls   atomic.Int32 // token calls that hung
	stuck   atomic.Int32 // token calls hanging now
	release chan struct{}
	once    sync.Once
}

func (h *hangingTokenEndpoint) releaseAll() { h.once.Do(func() { close(h.release) }) }

func (h *hangingTokenEndpoint) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.on.Load() && r.URL.Path == mockoidc.TokenEndpoint {
			h.calls.Add(1)
			h.stuck.Add(1)
			<-h.release
			h.stuck.Add(-1)
		}
		next.ServeHTTP(w, r)
	})
}

// slowEnv is an environment whose token endpoint can hang, with
// oidc.timeout set. Hung calls are released at the end of the test,
// before the provider's shutdown, which waits for them.
func slowEnv(t *testing.T, timeout string) (*testenv.Env, *hangingTokenEndpoint) {
	t.Helper()
	h := &hangingTokenEndpoint{release: make(chan struct{})}
	e := testenv.New(t, testenv.Options{OIDCYAML: "timeout: " + timeout + "\n", IdPMiddleware: h.middleware})
	t.Cleanup(h.releaseAll) // runs before testenv's cleanups: LIFO
	return e, h
}

// timedCallback follows a callback URL in b and reports how long the
// answer took.
func timedCallback(t *testing.T, b *testenv.Browser, cb string) (*testenv.Response, time.Duration) {
	t.Helper()
	start := time.Now()
	r := b.Get(cb, "Accept", "text/html")
	return r, time.Since(start)
}

// TestFaults_IdPSlowTokenEndpoint: the provider's token endpoint hangs
// after a first login (which teaches x/oauth2 how the provider takes the
// client secret; TestFaults_IdPSlowTimeoutBound covers the login before).
// With oidc.timeout 1s each callback fails within the timeout with the
// provider-unavailable page while the provider is still stuck, signed-in
// users are served meanwhile, and gatehouse keeps no goroutine for the
// abandoned calls: once the provider is released, the goroutine count is
// back near where it started.
func TestFaults_IdPSlowTokenEndpoint(t *testing.T) {
	const timeout, logins = time.Second, 6
	e, hang := slowEnv(t, "1s")
	if got := e.Config.OIDC.Timeout; got != timeout {
		t.Fatalf("oidc.timeout = %s, want %s", got, timeout)
	}
	alice := e.NewBrowser()
	alice.Login(testenv.User("alice", "alice@example.com"), "/")

	browsers := make([]*testenv.Browser, logins)
	callbacks := make([]string, logins)
	for i := range browsers {
		browsers[i] = e.NewBrowser()
		callbacks[i] = pendingCallback(t, e, browsers[i], testenv.User(fmt.Sprint("user", i), fmt.Sprintf("user%d@example.com", i)))
	}
	closeIdle := func() { http.DefaultTransport.(*http.Transport).CloseIdleConnections() }
	closeIdle()
	base := runtime.NumGoroutine()

	hang.on.Store(true)
	type result struct {
		status  int
		body    string
		elapsed time.Duration
		err     error
	}
	results := make([]result, logins)
	var wg sync.WaitGroup
	for i := range browsers {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, callbacks[i], nil)
			req.Header.Set("Accept", "text/html")
			start := time.Now()
			resp, err := browsers[i].Client.Do(req)
			if err != nil {
				results[i] = result{err: err}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results[i] = result{status: resp.StatusCode, body: string(body), elapsed: time.Since(start)}
		})
	}
	wg.Wait()
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("callback %d: %v", i, r.err)
		case r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "The sign-in service is unavailable"):
			t.Errorf("callback %d: status %d, want 503 with the provider-unavailable page; body %s", i, r.status, r.body)
		case r.elapsed < timeout*9/10 || r.elapsed > timeout+2*time.Second:
			t.Errorf("callback %d answered after %s, want about oidc.timeout (%s)", i, r.elapsed, timeout)
		}
	}
	if n := hang.stuck.Load(); n != logins {
		t.Errorf("%d token calls still stuck at the provider, want %d: the callbacks gave up while it hung", n, logins)
	}
	wantUpstream(t, alice, "/")

	hang.releaseAll()
	deadline := time.Now().Add(10 * time.Second)
	for {
		closeIdle()
		n := runtime.NumGoroutine()
		if hang.stuck.Load() == 0 && n <= base+5 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, %d before the slow logins; stuck at the provider: %d\n%s",
				n, base, hang.stuck.Load(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	hang.on.Store(false)
	b := e.NewBrowser()
	if r := b.Login(testenv.User("bob", "bob@example.com"), "/"); r.StatusCode != http.StatusOK {
		t.Errorf("login once the provider is fast again: status %d", r.StatusCode)
	}
}

// TestFaults_IdPSlowTimeoutBound: a login waits for a hung token
// endpoint no longer than oidc.timeout, however the configuration came
// about: at the first login after start (no earlier exchange), and after
// a reload that shortened the timeout.
func TestFaults_IdPSlowTimeoutBound(t *testing.T) {
	t.Run("first login after start", func(t *testing.T) {
		// x/oauth2 does not know yet whether the provider wants the client
		// secret in the Authorization header or in the body, tries the
		// header first and, on any error, a timeout included, tries again
		// with the body: two token calls, each with the full timeout.
		const timeout = time.Second
		e, hang := slowEnv(t, "1s")
		b := e.NewBrowser()
		cb := pendingCallback(t, e, b, testenv.User("alice", "alice@example.com"))
		hang.on.Store(true)
		r, elapsed := timedCallback(t, b, cb)
		wantIdPUnavailable(t, e, r)
		if calls := hang.calls.Load(); elapsed > timeout*3/2 || calls != 1 {
			t.Errorf("the callback answered after %s having made %d token calls; want at most oidc.timeout (%s), one call", elapsed, calls, timeout)
		}
	})
	t.Run("after a reload to a shorter timeout", func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		e, hang := slowEnv(t, "3s")
		e.NewBrowser().Login(testenv.User("alice", "alice@example.com"), "/")
		cfg := *e.Config
		cfg.OIDC.Timeout = timeout
		if fixed, err := e.Gateway.Reload(&cfg); err != nil || len(fixed) != 0 {
			t.Fatalf("reload: %v, settings kept: %v", err, fixed)
		}
		if got := e.Gateway.Config().OIDC.Timeout; got != timeout {
			t.Fatalf("oidc.timeout after the reload: %s, want %s", got, timeout)
		}
		e.NewBrowser().Login(testenv.User("bob", "bob@example.com"), "/") // a first exchange under the new configuration
		b := e.NewBrowser()
		cb := pendingCallback(t, e, b, testenv.User("carol", "carol@example.com"))
		hang.on.Store(true)
		r, elapsed := timedCallback(t, b, cb)
		wantIdPUnavailable(t, e, r)
		if elapsed > timeout+time.Second {
			t.Errorf("the callback answered after %s; want about the reloaded oidc.timeout (%s), not the one gatehouse started with (3s)", elapsed, timeout)
		}
	})
}

// upstreamFaults is an upstream that fails on request, by path.
type upstreamFaults struct {
	started  chan string // the path of each request that reached a waiting handler
	canceled chan string // the path of each request whose context ended
}

func newUpstreamFaults() *upstreamFaults {
	return &upstreamFaults{started: make(chan string, 16), canceled: make(chan string, 16)}
}

func (u *upstreamFaults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/public/reset": // before any answer
		dropConnection(w)
	case "/public/reset-mid-body": // after the headers and part of the body
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(strings.Repeat("x", 4096)))
		_ = http.NewResponseController(w).Flush()
		dropConnection(w)
	case "/public/wait": // until the request's context ends
		u.started <- r.URL.Path
		select {
		case <-r.Context().Done():
			u.canceled <- r.URL.Path
		case <-time.After(30 * time.Second):
		}
	default:
		_, _ = io.WriteString(w, "ok")
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func upstreamFaultsYAML(t *testing.T, extra string) string {
	return extra + `routes:
  - name: app
    upstream: ${UPSTREAM}
    public: [/public]
  - name: down
    match: {path_prefix: /down}
    upstream: http://` + closedPort(t) + `
    public: [/down]
`
}

// within waits for a value on ch, for at most d.
func within(t *testing.T, ch <-chan string, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s did not happen within %s", what, d)
	}
}

// TestFaults_Upstream extends TestProxy_UpstreamFailures (hanging
// upstream → 504, closed upstream → 502) with a route whose upstream
// refuses while the others work, connection resets before and during the
// answer, the timing of the 504 and the end of the abandoned upstream
// call, and a client that gives up.
func TestFaults_Upstream(t *testing.T) {
	up := newUpstreamFaults()
	e := testenv.New(t, testenv.Options{NoUpstream: true, Upstream: up, YAML: upstreamFaultsYAML(t, "")})
	b := e.NewBrowser()
	get := func(path string) *testenv.Response { return b.Get(path, "Accept", "text/html") }

	t.Run("refused", func(t *testing.T) {
		r := get("/down/page")
		if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.Body, "The application is unavailable") || !strings.Contains(r.Body, `id="request-id"`) {
			t.Errorf("status %d, want 502 with the upstream-unavailable page; body %s", r.StatusCode, r.Body)
		}
		if r := get("/public/ok"); r.StatusCode != http.StatusOK {
			t.Errorf("another route while one upstream refuses: status %d", r.StatusCode)
		}
	})
	t.Run("reset before the answer", func(t *testing.T) {
		r := get("/public/reset")
		if r.StatusCode != http.StatusBadGateway || !strings.Contains(r.Body, "The application is unavailable") {
			t.Errorf("status %d, want 502 with the upstream-unavailable page; body %s", r.StatusCode, r.Body)
		}
	})
	t.Run("reset during the body", func(t *testing.T) {
		// The status is sent by then; the client must see the answer
		// broken off, not a short body that looks complete.
		resp, err := b.Client.Get(e.URL + "/public/reset-mid-body")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("status %d, %d bytes read without error: the truncation is invisible to the client", resp.StatusCode, len(body))
		}
	})
	t.Run("client gives up", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/public/wait", nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		within(t, up.started, 5*time.Second, "the upstream call")
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("client: %v, want context.Canceled", err)
		}
		within(t, up.canceled, 5*time.Second, "the end of the upstream call after the client left")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(e.Logs.String(), "client went away during upstream call") {
			if time.Now().After(deadline) {
				t.Fatal(`no "client went away" log line`)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestFaults_UpstreamHangs: with upstream_timeout 300ms a hanging upstream
// gets the client a 504 page after about 300ms, and the abandoned call to
// the upstream ends then too.
func TestFaults_UpstreamHangs(t *testing.T) {
	const timeout = 300 * time.Millisecond
	up := newUpstreamFaults()
	e := testenv.New(t, testenv.Options{NoUpstream: true, Upstream: up, YAML: upstreamFaultsYAML(t, "upstream_timeout: 300ms\n")})
	start := time.Now()
	r := e.NewBrowser().Get("/public/wait", "Accept", "text/html")
	elapsed := time.Since(start)
	if r.StatusCode != http.StatusGatewayTimeout || !strings.Contains(r.Body, "The application is taking too long") || !strings.Contains(r.Body, `id="request-id"`) {
		t.Errorf("status %d, want 504 with the timeout page; body %s", r.StatusCode, r.Body)
	}
	if elapsed < timeout || elapsed > timeout+2*time.Second {
		t.Errorf("answered after %s, want about upstream_timeout (%s)", elapsed, timeout)
	}
	within(t, up.started, time.Second, "the upstream call")
	within(t, up.canceled, 5*time.Second, "the end of the upstream call after the timeout")
}
