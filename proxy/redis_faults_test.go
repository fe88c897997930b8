package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	gatehouseadmin "github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/proxy"
)

// Faults of the Redis under two replicas, on a redis-server each test
// owns: paused (SIGSTOP: it keeps its connections and answers nothing,
// then runs what waited when resumed), and killed then restarted with
// its data. Under every fault gatehouse never claims what did not happen:
// no "signed out", no 200 to a back-channel logout or an admin revoke,
// no login page for a session it could not check. The revocation bound
// is one second: after a session is gone from Redis, no replica serves
// it longer.

const faultAdminToken = "fault-test-admin-token-0123456789"

// faultEnv starts gatehouse E (the Env) and its replica R on a
// redis-server of the test's own, with session administration on.
func faultEnv(t *testing.T) (*redistest.Server, *testenv.Env, *testenv.Replica) {
	t.Helper()
	return faultEnvWith(t, nil)
}

// faultEnvWith is faultEnv with a middleware in front of the identity
// provider, made from the test's redis-server (to pause it at a chosen
// provider call).
func faultEnvWith(t *testing.T, idp func(*redistest.Server) func(http.Handler) http.Handler) (*redistest.Server, *testenv.Env, *testenv.Replica) {
	t.Helper()
	srv := redistest.Start(t)
	var mw func(http.Handler) http.Handler
	if idp != nil {
		mw = idp(srv)
	}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(faultAdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	e := testenv.New(t, testenv.Options{IdPMiddleware: mw, YAML: fmt.Sprintf(`allow:
  emails: [alice@example.com, bob@example.com, carol@example.com]
session:
  store: redis
  redis:
    url: %s
    timeout: 250ms
admin:
  listen: 127.0.0.1:0
  token_file: %s
`, srv.URL, tokenFile)})
	e.RunGateway()
	return srv, e, e.Replica()
}

// pause stops the server until the returned resume is called (or the
// test ends).
func pause(t *testing.T, srv *redistest.Server) (resume func()) {
	t.Helper()
	srv.Pause()
	done := false
	resume = func() {
		if !done {
			done = true
			srv.Resume()
		}
	}
	t.Cleanup(resume)
	return resume
}

// sessionKeys returns the session keys in the test's Redis.
func sessionKeys(t *testing.T, srv *redistest.Server, e *testenv.Env) []string {
	t.Helper()
	keys, err := redistest.Keys(srv.Addr, e.Config.Session.Redis.KeyPrefix+"s:")
	if err != nil {
		t.Fatalf("scan session keys: %v", err)
	}
	return keys
}

// csrfOf reads the sign-out form's CSRF token from E's sign-out page
// (E, so that R does not cache the session meanwhile).
func csrfOf(t *testing.T, b *testenv.Browser) string {
	t.Helper()
	page := b.Get("/_gatehouse/logout", "Accept", "text/html")
	csrf := between(page.Body, `name="csrf" value="`, `"`)
	if page.StatusCode != http.StatusOK || csrf == "" {
		t.Fatalf("sign-out page: status %d body %s", page.StatusCode, page.Body)
	}
	return csrf
}

// replayer is a fresh browser holding only the session cookie value,
// aimed at gatehouse g's URL: a refusal (which clears the cookie) in one
// does not disturb the others.
func replayer(e *testenv.Env, rep *testenv.Replica, cookie string, onReplica bool) *testenv.Browser {
	b := e.NewBrowser()
	b.SetCookie(e.Gateway.Auth().SessionCookieName(), cookie)
	if onReplica {
		return rep.Browser(b)
	}
	return b
}

// refusedBy polls GET / with b until gatehouse sends it to the login,
// and fails the test if it still serves the session (200) at deadline,
// or answers anything but 200, 302 to the login or 503 (the store
// recovering). It returns when it was refused.
func refusedBy(t *testing.T, name string, b *testenv.Browser, deadline time.Time) time.Time {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		r := b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		now := time.Now()
		switch {
		case r.StatusCode == http.StatusFound && strings.Contains(r.Header.Get("Location"), "/_gatehouse/start?rd="):
			return now
		case r.StatusCode != http.StatusOK && r.StatusCode != http.StatusServiceUnavailable:
			t.Fatalf("%s: GET /: status %d, want 200 or 503 until refused, then 302 to the login; body %s", name, r.StatusCode, r.Body)
		case now.After(deadline):
			t.Fatalf("%s: GET / still answers %d with the revoked session's cookie past the bound", name, r.StatusCode)
		}
		<-tick.C
	}
}

// goneAt waits until no session key is left in Redis, and returns when
// it saw that.
func goneAt(t *testing.T, srv *redistest.Server, e *testenv.Env, bound time.Duration) time.Time {
	t.Helper()
	redistest.WaitFor(t, "the session to be deleted from Redis", bound, func() bool { return len(sessionKeys(t, srv, e)) == 0 })
	return time.Now()
}

// wantSignOutFailed checks the honest answer to a sign-out the store
// could not do: 503, the retry form with the same CSRF token, and the
// cookie kept.
func wantSignOutFailed(t *testing.T, r *testenv.Response, cookieName, csrf string) {
	t.Helper()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("sign-out with Redis paused: status %d, want 503; body %s", r.StatusCode, r.Body)
	}
	if strings.Contains(r.Body, "You are signed out") || !strings.Contains(r.Body, "Sign-out failed") {
		t.Errorf("sign-out with Redis paused: page title %q, want \"Sign-out failed\" and no claim of being signed out", pageTitle(r.Body))
	}
	if !strings.Contains(r.Body, `name="csrf" value="`+csrf+`"`) || !strings.Contains(r.Body, `action="`) {
		t.Errorf("sign-out failure page has no form to try again with the session's CSRF token: %s", r.Body)
	}
	for _, c := range r.Cookies() {
		if c.Name == cookieName {
			t.Errorf("sign-out failure sets the session cookie (%q, Max-Age %d): the retry needs it", c.Value, c.MaxAge)
		}
	}
	if v := r.Header.Get("Clear-Site-Data"); v != "" {
		t.Errorf("sign-out failure sends Clear-Site-Data %q", v)
	}
}

// TestRedisFaults_SignOutDuringStall signs out at replica R while Redis
// is paused. R cannot end the session: it answers an honest 503 and
// keeps the cookie, and once Redis is back the session is deleted (by
// the command that waited in Redis or by R's background retry) and
// refused by both replicas within one second of the delete.
func TestRedisFaults_SignOutDuringStall(t *testing.T) {
	srv, e, rep := faultEnv(t)
	cookieName := e.Gateway.Auth().SessionCookieName()

	for _, tc := range []struct {
		name     string
		user     string
		rHasCopy bool
	}{
		// R never served the session: its lookup needs Redis, which does
		// not answer. This used to say "You are signed out".
		{"replica without a local copy", "alice", false},
		// R serves the session from its cache; its delete waits in the
		// paused Redis and runs when it resumes. E, which caches the
		// session too, used to serve it for as long as its touch interval.
		{"replica holding a local copy", "bob", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.NewBrowser()
			a.Login(testenv.User(tc.user, tc.user+"@example.com"), "/")
			cookie := a.SessionCookie()
			csrf := csrfOf(t, a)
			b := rep.Browser(a)
			if tc.rHasCopy {
				wantUpstream(t, b, "/")
			}
			if n := localLen(t, rep.Gateway); (n == 1) != tc.rHasCopy {
				t.Fatalf("setup: R caches %d sessions, want a copy: %t", n, tc.rHasCopy)
			}
			if n := localLen(t, e.Gateway); n != 1 {
				t.Fatalf("setup: E caches %d sessions, want 1: the test would not show invalidation", n)
			}
			if n := len(sessionKeys(t, srv, e)); n != 1 {
				t.Fatalf("setup: %d session keys in Redis, want 1", n)
			}

			resume := pause(t, srv)
			start := time.Now()
			r := postForm(t, b, rep.URL+"/_gatehouse/logout", "csrf="+csrf, rep.URL)
			t.Logf("sign-out at R with Redis paused answered %d after %v", r.StatusCode, time.Since(start))
			wantSignOutFailed(t, r, cookieName, csrf)
			if b.SessionCookie() != cookie {
				t.Fatal("the browser lost its session cookie after a failed sign-out")
			}
			if logs := rep.Logs.String(); !hasLogLine(logs, "revocation failed; retrying in the background", `"op":"delete session"`) ||
				!hasLogLine(logs, `"status":503`, `"reason":"store_unavailable"`) {
				t.Errorf("R logged no WARN for the failed sign-out and its queued retry:\n%s", logs)
			}

			resume()
			gone := goneAt(t, srv, e, 10*time.Second)
			t.Logf("session gone from Redis %v after the sign-out was posted", time.Since(start))
			for _, onR := range []bool{false, true} {
				name := map[bool]string{false: "E", true: "R"}[onR]
				at := refusedBy(t, name, replayer(e, rep, cookie, onR), gone.Add(time.Second))
				t.Logf("%s refuses the old cookie %v after the delete was seen", name, at.Sub(gone))
			}
			// R's retry reports its outcome: the delete is done.
			redistest.WaitFor(t, "R's retry to report success", 10*time.Second, func() bool {
				return hasLogLine(rep.Logs.String(), "revocation done after retrying", `"outcome":"success"`)
			})
			if n, _ := metricValue(t, rep.Gateway, "gatehouse_revocation_retries_total", "outcome", "success"); n < 1 {
				t.Errorf("gatehouse_revocation_retries_total{outcome=\"success\"} on R = %v, want >= 1", n)
			}
			// The retry button works afterwards: nothing to end, signed out.
			if r := postForm(t, b, rep.URL+"/_gatehouse/logout", "csrf="+csrf, rep.URL); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "You are signed out") {
				t.Errorf("sign-out again after the resume: status %d, want 200 \"You are signed out\"; body %s", r.StatusCode, r.Body)
			}
		})
	}
}

// TestRedisFaults_LookupDuringStall: while Redis is paused, a request
// with a valid cookie gets 503, never the login nor a 401; the sign-out
// page, whoami, back-channel logout and admin revocations do not claim
// anything either. Once Redis is back the provider's retried logout token
// is accepted and ends the session.
func TestRedisFaults_LookupDuringStall(t *testing.T) {
	srv, e, rep := faultEnv(t)
	a := e.NewBrowser()
	a.Login(withSID("carol", "sid-carol"), "/")
	cookie := a.SessionCookie()
	b := rep.Browser(a) // R has no copy: every lookup needs Redis
	admin := httptest.NewServer(gatehouseadmin.Handler(gatehouseadmin.Options{Store: e.Gateway.Store, Metrics: e.Gateway.Metrics, Token: e.Config.Admin.Token}))
	t.Cleanup(admin.Close)
	token := logoutToken(t, e, logoutClaims(e, "carol", "sid-carol"))

	wantUpstream(t, a, "/") // E caches it
	resume := pause(t, srv)
	paused := time.Now()
	t.Run("cached copy at E", func(t *testing.T) {
		// E's copy serves only while E hears its subscription: within
		// the revocation bound (1s from the stall) it must ask Redis, and
		// get no answer. A session revoked through a Redis E cannot hear
		// is thus never served past the bound.
		var r *testenv.Response
		var served time.Duration // until the end of the last 200: an upper bound
		redistest.WaitFor(t, "E to stop serving its cached copy", 3*time.Second, func() bool {
			r = a.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
			if r.StatusCode == http.StatusOK {
				served = time.Since(paused)
			}
			return r.StatusCode != http.StatusOK
		})
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("E with Redis paused: status %d, want 503; body %s", r.StatusCode, r.Body)
		}
		t.Logf("E served its cached copy for at most %v into the stall", served)
		if served > time.Second {
			t.Errorf("E served its cached copy %v into the stall, past the 1s revocation bound", served)
		}
	})
	t.Run("page at R", func(t *testing.T) {
		r := b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Session store unavailable") {
			t.Fatalf("navigation with a valid cookie, Redis paused: status %d Location %q, want 503; body %s", r.StatusCode, r.Header.Get("Location"), r.Body)
		}
		for _, c := range r.Cookies() {
			if c.Name == e.Gateway.Auth().SessionCookieName() {
				t.Errorf("503 clears the session cookie")
			}
		}
	})
	t.Run("API call at R", func(t *testing.T) {
		if r := b.Get("/api", "Accept", "application/json"); r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("API call with a valid cookie, Redis paused: status %d, want 503; body %s", r.StatusCode, r.Body)
		}
	})
	t.Run("whoami at R", func(t *testing.T) {
		if r := b.Get("/_gatehouse/whoami"); r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("whoami, Redis paused: status %d, want 503; body %s", r.StatusCode, r.Body)
		}
	})
	t.Run("sign-out page at R", func(t *testing.T) {
		r := b.Get("/_gatehouse/logout", "Accept", "text/html")
		if r.StatusCode != http.StatusServiceUnavailable || strings.Contains(r.Body, "You are signed out") || !strings.Contains(r.Body, `name="csrf"`) {
			t.Fatalf("sign-out page, Redis paused: status %d, want 503 with a sign-out form and no claim; body %s", r.StatusCode, r.Body)
		}
	})
	t.Run("back-channel logout at E", func(t *testing.T) {
		r := postLogout(t, e, token)
		if r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("back-channel logout, Redis paused: status %d, want 503; body %s", r.StatusCode, r.Body)
		}
	})
	t.Run("admin revoke at E", func(t *testing.T) {
		for _, path := range []string{"/sessions?sub=carol", "/sessions/" + strings.Repeat("ab", 32)} {
			req, _ := http.NewRequest(http.MethodDelete, admin.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+faultAdminToken)
			r := e.NewBrowser().Do(req)
			if r.StatusCode != http.StatusServiceUnavailable || strings.Contains(r.Body, `"revoked"`) {
				t.Errorf("DELETE %s, Redis paused: status %d, want 503 and no \"revoked\"; body %s", path, r.StatusCode, r.Body)
			}
		}
	})
	// The metrics show it.
	if n, _ := metricValue(t, rep.Gateway, "gatehouse_redis_errors_total"); n < 4 {
		t.Errorf("gatehouse_redis_errors_total on R = %v after four failed lookups, want >= 4", n)
	}
	if n, _ := metricValue(t, rep.Gateway, "gatehouse_requests_total", "outcome", "503"); n < 2 {
		t.Errorf("gatehouse_requests_total{outcome=\"503\"} on R = %v, want >= 2", n)
	}
	resume()

	// The provider sends the logout token again: accepted now.
	var r *testenv.Response
	redistest.WaitFor(t, "the retried logout token to be accepted", 10*time.Second, func() bool {
		r = postLogout(t, e, token)
		return r.StatusCode != http.StatusServiceUnavailable
	})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout sent again after the resume: status %d, want 200; body %s", r.StatusCode, r.Body)
	}
	gone := goneAt(t, srv, e, 10*time.Second)
	refusedBy(t, "E", replayer(e, rep, cookie, false), gone.Add(time.Second))
	refusedBy(t, "R", replayer(e, rep, cookie, true), gone.Add(time.Second))
}

// TestRedisFaults_RestartGap kills Redis under both replicas and starts
// it again with its data, as a Redis with persistence restarts; one
// session is deleted behind gatehouse's back before the replicas
// reconnect, so no invalidation was ever published for it. Each replica
// purged its cache when its subscription broke and serves from Redis
// until subscribed again: the deleted session is refused everywhere,
// the other still works.
func TestRedisFaults_RestartGap(t *testing.T) {
	srv, e, rep := faultEnv(t)
	deleted, kept := e.NewBrowser(), e.NewBrowser()
	deleted.Login(testenv.User("alice", "alice@example.com"), "/")
	keys := sessionKeys(t, srv, e)
	kept.Login(testenv.User("bob", "bob@example.com"), "/")
	for _, br := range []*testenv.Browser{deleted, kept} {
		wantUpstream(t, br, "/")
		wantUpstream(t, rep.Browser(br), "/")
	}
	if n, m := localLen(t, e.Gateway), localLen(t, rep.Gateway); n != 2 || m != 2 {
		t.Fatalf("setup: E caches %d sessions, R %d; want 2 each", n, m)
	}
	if len(keys) != 1 {
		t.Fatalf("setup: %d session keys after the first login, want 1", len(keys))
	}
	deletedCookie, keptCookie := deleted.SessionCookie(), kept.SessionCookie()

	srv.Save()
	srv.Kill()
	for name, gw := range map[string]*proxy.Gateway{"E": e.Gateway, "R": rep.Gateway} {
		redistest.WaitFor(t, name+" to notice the kill", 5*time.Second, func() bool {
			return !gw.Store.(interface{ Live() bool }).Live()
		})
	}
	srv.Start()
	// Behind gatehouse's back: no invalidation is published.
	if err := redistest.DeleteKeys(srv.Addr, keys[0]); err != nil {
		t.Fatal(err)
	}
	if n := len(sessionKeys(t, srv, e)); n != 1 {
		t.Fatalf("after the restart: %d session keys, want 1 (the kept session)", n)
	}
	for _, g := range []*testenv.Replica{nil, rep} {
		name, gw := "E", e.Gateway
		if g != nil {
			name, gw = "R", g.Gateway
		}
		redistest.WaitFor(t, name+" to subscribe again", 10*time.Second, func() bool {
			return gw.Store.(interface{ Live() bool }).Live()
		})
		deadline := time.Now().Add(time.Second)
		refusedBy(t, name, replayer(e, rep, deletedCookie, g != nil), deadline)
		wantUpstream(t, replayer(e, rep, keptCookie, g != nil), "/")
	}
}

// metricValue returns the value of the counter or gauge name with the
// label values (name=value pairs) in gw's registry, and whether it exists.
func metricValue(t *testing.T, gw *proxy.Gateway, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := gw.Metrics.Registry().Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// hasLogLine reports whether logs have a line containing every part.
func hasLogLine(logs string, parts ...string) bool {
	for line := range strings.SplitSeq(logs, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestRedis_ActiveSessionsGauge: gatehouse_active_sessions follows the
// sessions in Redis within its recount interval, when keys are deleted
// behind gatehouse's back and when Redis comes back empty; while Redis is
// down it keeps the last count rather than report 0.
func TestRedis_ActiveSessionsGauge(t *testing.T) {
	srv, e, _ := faultEnv(t)
	const every = 200 * time.Millisecond
	gw, err := serve.NewGateway(e.Config, serve.GatewayOptions{Now: e.Clock.Now, SessionCountInterval: every})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	gauge := func() float64 {
		v, ok := metricValue(t, gw, "gatehouse_active_sessions")
		if !ok {
			t.Fatal("no gatehouse_active_sessions metric")
		}
		return v
	}
	reaches := func(want float64, what string) {
		t.Helper()
		start := time.Now()
		// A scrape after the interval recounts; allow one interval of
		// scheduling on a loaded machine on top.
		redistest.WaitFor(t, fmt.Sprintf("the gauge to read %v %s", want, what), 2*every+time.Second, func() bool { return gauge() == want })
		t.Logf("gauge read %v %v %s", want, time.Since(start), what)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		e.NewBrowser().Login(testenv.User(u, u+"@example.com"), "/")
	}
	reaches(3, "after three logins")

	keys := sessionKeys(t, srv, e)
	if err := redistest.DeleteKeys(srv.Addr, keys[0]); err != nil {
		t.Fatal(err)
	}
	reaches(2, "after a key was deleted in Redis")

	srv.Kill()
	start := time.Now()
	for time.Since(start) < 3*every {
		if v := gauge(); v != 2 {
			t.Fatalf("gauge with Redis down = %v, want the last count, 2", v)
		}
		time.Sleep(every / 4) // scrapes spaced like a scraper's, across several intervals
	}
	srv.Start() // empty: nothing was saved
	reaches(0, "after Redis came back empty")
}

// TestRedisFaults_RefreshRejectedDuringStall: the provider rejects a
// session's refresh (invalid_grant) while Redis stalls, so gatehouse
// cannot delete the session. The request gets a 503, not the login that
// would pretend the session is gone; once Redis is back the session is
// deleted and refused.
func TestRedisFaults_RefreshRejectedDuringStall(t *testing.T) {
	var armed atomic.Bool
	var paused atomic.Pointer[redistest.Server]
	srv, e, rep := faultEnvWith(t, func(srv *redistest.Server) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == mockoidc.TokenEndpoint && armed.CompareAndSwap(true, false) {
					srv.Pause() // before the provider answers: gatehouse's delete meets a stalled Redis
					paused.Store(srv)
				}
				next.ServeHTTP(w, r)
			})
		}
	})
	t.Cleanup(func() {
		if s := paused.Load(); s != nil {
			s.Resume()
		}
	})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	cookie := b.SessionCookie()
	wantUpstream(t, b, "/") // cached at E: the lookup needs no Redis
	e.Advance(accessTTL)
	e.IdP.QueueError(&mockoidc.ServerError{Code: http.StatusBadRequest, Error: mockoidc.InvalidGrant, Description: "user disabled"})
	armed.Store(true)
	r := b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if paused.Load() == nil {
		t.Fatal("the provider was not asked to refresh: the test shows nothing")
	}
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("refresh rejected while the session cannot be deleted: status %d Location %q, want 503; body %s", r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	if !hasLogLine(e.Logs.String(), "the session's refresh ended it, but it could not be deleted") {
		t.Errorf("no log line for the session that could not be deleted:\n%s", e.Logs.String())
	}
	srv.Resume()
	gone := goneAt(t, srv, e, 10*time.Second)
	refusedBy(t, "E", replayer(e, rep, cookie, false), gone.Add(time.Second))
	refusedBy(t, "R", replayer(e, rep, cookie, true), gone.Add(time.Second))
}

// silentRelay relays TCP connections to a target; while silent it
// forwards nothing in either direction and closes nothing, as a network
// that drops packets without a reset does to one replica only.
type silentRelay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	silent bool
	closed bool
	conns  []net.Conn
}

func newSilentRelay(t *testing.T, target string) *silentRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentRelay{ln: ln, target: target}
	s.cond = sync.NewCond(&s.mu)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *silentRelay) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", s.target)
		if err != nil {
			c.Close()
			continue
		}
		s.mu.Lock()
		s.conns = append(s.conns, c, u)
		s.mu.Unlock()
		go s.pipe(c, u)
		go s.pipe(u, c)
	}
}

// pipe copies src to dst, holding each chunk while the relay is silent.
func (s *silentRelay) pipe(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		for s.silent && !s.closed {
			s.cond.Wait()
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (s *silentRelay) setSilent(v bool) {
	s.mu.Lock()
	s.silent = v
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *silentRelay) close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.mu.Unlock()
	s.cond.Broadcast()
	for _, c := range conns {
		c.Close()
	}
}

// getWithCookie is a navigation to url carrying only the session cookie.
func getWithCookie(t *testing.T, url, name, value string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.AddCookie(&http.Cookie{Name: name, Value: value})
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp
}

// TestRedisFaults_SilentSubscriptionGap: replica B reaches Redis through
// a network that goes silent (no reset: B's subscription cannot tell),
// and the user signs out at A meanwhile. B cannot hear the invalidation,
// so it must stop serving its cached copy within the one-second bound of
// the delete (it answers 503 while it cannot reach Redis), and refuse the
// session once the network is back.
func TestRedisFaults_SilentSubscriptionGap(t *testing.T) {
	srv, e, _ := faultEnv(t)
	relay := newSilentRelay(t, srv.Addr)
	cfg := *e.Config
	cfg.Session.Redis.URL = "redis://" + relay.ln.Addr().String() + "/0"
	gw, err := serve.NewGateway(&cfg, serve.GatewayOptions{Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		gw.Run(ctx)
	}()
	b := httptest.NewUnstartedServer(nil)
	b.Config = gw.Server()
	b.Config.Addr = ""
	b.Start()
	t.Cleanup(func() {
		b.Close()
		cancel()
		<-ran
		_ = gw.Close()
	})
	redistest.WaitFor(t, "B to subscribe", 5*time.Second, func() bool { return gw.Store.(interface{ Live() bool }).Live() })

	a := e.NewBrowser()
	a.Login(testenv.User("alice", "alice@example.com"), "/")
	name, cookie := e.Gateway.Auth().SessionCookieName(), a.SessionCookie()
	if r := getWithCookie(t, b.URL+"/", name, cookie); r.StatusCode != http.StatusOK {
		t.Fatalf("setup: B answers %d, want 200", r.StatusCode)
	}
	if n := localLen(t, gw); n != 1 {
		t.Fatalf("setup: B caches %d sessions, want 1", n)
	}
	csrf := csrfOf(t, a)

	relay.setSilent(true)
	if r := postForm(t, a, e.URL+"/_gatehouse/logout", "csrf="+csrf, e.URL); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out at A: status %d, want 303; body %s", r.StatusCode, r.Body)
	}
	deleted := time.Now()
	var last *http.Response
	var served time.Duration
	redistest.WaitFor(t, "B to stop serving the revoked session", 5*time.Second, func() bool {
		last = getWithCookie(t, b.URL+"/", name, cookie)
		if last.StatusCode == http.StatusOK {
			served = time.Since(deleted)
		}
		return last.StatusCode != http.StatusOK
	})
	t.Logf("B served the revoked session for at most %v after the delete; then %d", served, last.StatusCode)
	if served > time.Second {
		t.Errorf("B served the revoked session %v after the delete, past the 1s revocation bound", served)
	}
	if last.StatusCode != http.StatusServiceUnavailable && last.StatusCode != http.StatusFound {
		t.Errorf("B with its network silent: status %d, want 503 (or the login)", last.StatusCode)
	}

	relay.setSilent(false)
	redistest.WaitFor(t, "B to refuse the session once the network is back", 10*time.Second, func() bool {
		r := getWithCookie(t, b.URL+"/", name, cookie)
		if r.StatusCode == http.StatusOK {
			t.Fatal("B serves the revoked session after the network came back")
		}
		return r.StatusCode == http.StatusFound
	})
}
