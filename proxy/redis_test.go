package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/sessions"
)

// Two gatehouse replicas in one process share sessions through a real
// Redis (redistest.Addr, or a redis-server the test owns), each test
// under its own key prefix. Without a Redis the tests skip, unless CI is
// set.

// redisEnv starts gatehouse A with the redis store at addr (session
// settings in extra, indented under session:), running as main runs it,
// and replica B of it.
func redisEnv(t *testing.T, addr, extra string) (*testenv.Env, *testenv.Replica) {
	t.Helper()
	redistest.Require(t, addr)
	prefix := redistest.KeyPrefix(t, addr)
	e := testenv.New(t, testenv.Options{YAML: fmt.Sprintf(`session:
  store: redis
%s  redis:
    url: redis://%s/0
    key_prefix: %q
    timeout: 250ms
`, extra, addr, prefix)})
	e.RunGateway()
	return e, e.Replica()
}

// localLen returns how many sessions the gateway's redis store caches.
func localLen(t *testing.T, g *proxy.Gateway) int {
	t.Helper()
	st, ok := g.Store.(*sessions.Redis)
	if !ok {
		t.Fatalf("store is %T, want *sessions.Redis", g.Store)
	}
	return st.LocalLen()
}

// refusedWithin polls GET path with b every millisecond until gatehouse
// sends it to the login, and fails the test if that takes over bound. It
// returns how long it took.
func refusedWithin(t *testing.T, b *testenv.Browser, path string, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		r := b.Get(path, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		if r.StatusCode == http.StatusFound && strings.Contains(r.Header.Get("Location"), "/_gatehouse/start?rd=") {
			return time.Since(start)
		}
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200 until refused, then 302 to the login; body %s", path, r.StatusCode, r.Body)
		}
		if time.Since(start) > bound {
			t.Fatalf("GET %s still served %v after the logout", path, bound)
		}
		<-tick.C
	}
}

func TestRedis_SessionSharedByReplicas(t *testing.T) {
	e, rep := redisEnv(t, redistest.Addr, "")
	a := e.NewBrowser()
	a.Login(testenv.User("alice", "alice@example.com", "admins"), "/")
	b := rep.Browser(a) // the same browser, on replica B
	if a.SessionCookie() == "" || b.SessionCookie() != a.SessionCookie() {
		t.Fatalf("session cookie on A %q, on B %q: the jar must share it across ports", a.SessionCookie(), b.SessionCookie())
	}

	t.Run("request on B passes with identity headers", func(t *testing.T) {
		wantUpstream(t, b, "/from-b")
		up := e.LastRequest()
		if up.URL.Path != "/from-b" {
			t.Fatalf("upstream's last request is %s, want /from-b", up.URL.Path)
		}
		for name, want := range map[string]string{
			"X-Forwarded-User":   "alice",
			"X-Forwarded-Email":  "alice@example.com",
			"X-Forwarded-Groups": "admins",
		} {
			if got := up.Header.Get(name); got != want {
				t.Errorf("upstream header %s via B = %q, want %q", name, got, want)
			}
		}
	})

	t.Run("logout on B is refused on A within 1s", func(t *testing.T) {
		wantUpstream(t, a, "/")
		if n := localLen(t, e.Gateway); n != 1 {
			t.Fatalf("A caches %d sessions, want 1: the test would not show invalidation", n)
		}
		replay := e.NewBrowser()
		replay.SetCookie(e.Gateway.Auth().SessionCookieName(), a.SessionCookie())
		page := b.Get("/_gatehouse/logout", "Accept", "text/html")
		csrf := between(page.Body, `name="csrf" value="`, `"`)
		if page.StatusCode != http.StatusOK || csrf == "" {
			t.Fatalf("logout page on B: status %d body %s", page.StatusCode, page.Body)
		}
		if r := postForm(t, b, rep.URL+"/_gatehouse/logout", "csrf="+csrf, rep.URL); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout on B: status %d, want 303; body %s", r.StatusCode, r.Body)
		}
		lat := refusedWithin(t, replay, "/", time.Second)
		t.Logf("logout on B refused on A after %v", lat)
		if n := localLen(t, e.Gateway); n != 0 {
			t.Errorf("A still caches %d sessions", n)
		}
		wantLogin(t, rep.Browser(replay), "/")
	})

	t.Run("back-channel logout on A ends the session on B", func(t *testing.T) {
		u := e.NewBrowser()
		u.Login(withSID("bob", "sid-bob"), "/")
		onB := rep.Browser(u)
		wantUpstream(t, onB, "/")
		if n := localLen(t, rep.Gateway); n != 1 {
			t.Fatalf("B caches %d sessions, want 1: the test would not show invalidation", n)
		}
		if r := postLogout(t, e, logoutToken(t, e, logoutClaims(e, "bob", "sid-bob"))); r.StatusCode != http.StatusOK {
			t.Fatalf("back-channel logout on A: status %d %s", r.StatusCode, r.Body)
		}
		lat := refusedWithin(t, onB, "/", time.Second)
		t.Logf("back-channel logout on A refused on B after %v", lat)
	})
}

// TestRedis_IdleExpiryAcrossReplicas: a user active on B only stays
// signed in on A, whose cached copy looks idle; once idle everywhere, the
// session ends on both.
func TestRedis_IdleExpiryAcrossReplicas(t *testing.T) {
	e, rep := redisEnv(t, redistest.Addr, "  idle_timeout: 10m\n  absolute_timeout: 8h\n")
	a := e.NewBrowser()
	a.Login(testenv.User("alice", "alice@example.com"), "/")
	wantUpstream(t, a, "/") // cached on A
	b := rep.Browser(a)
	for range 3 { // 27 minutes on B alone, 9 apart
		e.Advance(9 * time.Minute)
		wantUpstream(t, b, "/")
	}
	wantUpstream(t, a, "/") // A asks Redis before declaring its copy idle
	e.Advance(10*time.Minute + time.Second)
	wantLogin(t, b, "/")
	wantLogin(t, a, "/")
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("store holds %d sessions after idle expiry, want 0", n)
	}
	if logs := e.Logs.String() + rep.Logs.String(); !strings.Contains(logs, `"reason":"idle"`) {
		t.Error("no session_end log line with reason idle on either replica")
	}
}

// TestRedis_AbsoluteExpiryAcrossReplicas: activity on both replicas never
// extends a session past its absolute limit.
func TestRedis_AbsoluteExpiryAcrossReplicas(t *testing.T) {
	e, rep := redisEnv(t, redistest.Addr, "  idle_timeout: 30m\n  absolute_timeout: 1h\n")
	a := e.NewBrowser()
	a.Login(testenv.User("alice", "alice@example.com"), "/")
	b := rep.Browser(a)
	for i := range 5 { // active every 11 minutes up to 55 minutes, alternating
		e.Advance(11 * time.Minute)
		wantUpstream(t, []*testenv.Browser{a, b}[i%2], "/")
	}
	e.Advance(5 * time.Minute)
	wantLogin(t, a, "/")
	wantLogin(t, b, "/")
	if logs := e.Logs.String() + rep.Logs.String(); !strings.Contains(logs, `"reason":"absolute"`) {
		t.Error("no session_end log line with reason absolute on either replica")
	}
}

// TestRedis_StoreUnavailable kills the Redis under two replicas: requests
// get a 503 page, never a login loop, and sign-in fails the same way;
// once Redis is back, both recover by themselves (the sessions are gone
// with the server's data, so users sign in again).
func TestRedis_StoreUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	e, rep := redisEnv(t, srv.Addr, "")
	a := e.NewBrowser()
	a.Login(testenv.User("alice", "alice@example.com"), "/")
	b := rep.Browser(a)
	wantUpstream(t, b, "/")

	srv.Kill()
	for name, br := range map[string]*testenv.Browser{"A": a, "B": b} {
		var r *testenv.Response
		lat := redistest.WaitFor(t, name+" to notice", 5*time.Second, func() bool {
			r = br.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
			return r.StatusCode != http.StatusOK
		})
		if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Session store unavailable") {
			t.Fatalf("%s with Redis down: status %d, want 503 \"Session store unavailable\"; body %s", name, r.StatusCode, r.Body)
		}
		t.Logf("%s answered 503 %v after the kill", name, lat)
	}
	if r := e.NewBrowser().Login(testenv.User("bob", "bob@example.com"), "/"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("sign-in with Redis down: status %d, want 503; body %s", r.StatusCode, r.Body)
	}

	srv.Start()
	for name, br := range map[string]*testenv.Browser{"A": a, "B": b} {
		lat := redistest.WaitFor(t, name+" to recover", 10*time.Second, func() bool {
			return br.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate").StatusCode != http.StatusServiceUnavailable
		})
		t.Logf("%s recovered %v after the restart", name, lat)
		wantLogin(t, br, "/") // the restarted Redis kept nothing
	}
	a.Login(testenv.User("alice", "alice@example.com"), "/")
	wantUpstream(t, a, "/")
	wantUpstream(t, b, "/")
}
