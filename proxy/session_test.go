package proxy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// wantPage asserts that a navigation got the upstream (200) or was sent
// to the login (302 to /_gatehouse/start).
func wantUpstream(t *testing.T, b *testenv.Browser, path string) {
	t.Helper()
	r := b.Get(path, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200 from the upstream; body %s", path, r.StatusCode, r.Body)
	}
}

func wantLogin(t *testing.T, b *testenv.Browser, path string) {
	t.Helper()
	r := b.Get(path, "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "/_gatehouse/start?rd=") {
		t.Fatalf("GET %s: status %d Location %q, want 302 to the login", path, r.StatusCode, r.Header.Get("Location"))
	}
}

func TestSession_NewIDAtEveryLogin(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	first := b.SessionCookie()
	if first == "" {
		t.Fatal("no session cookie after login")
	}
	// Signing in again on the same browser (a planted or old cookie
	// present) yields a new ID, and the old one is dead.
	old := e.NewBrowser()
	old.SetCookie(e.Gateway.Auth().SessionCookieName(), first)
	b.Login(testenv.User("alice", "alice@example.com"), "/_gatehouse/start?rd=/")
	second := b.SessionCookie()
	if second == "" || second == first {
		t.Fatalf("session cookie not renewed at login: %q → %q", first, second)
	}
	id1, _ := sessionID(t, e, first)
	id2, _ := sessionID(t, e, second)
	if id1 == id2 {
		t.Fatal("the same session ID survived a new login (fixation)")
	}
	wantLogin(t, old, "/")
	wantUpstream(t, b, "/")
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("store holds %d sessions, want 1", n)
	}
}

func sessionID(t *testing.T, e *testenv.Env, cookie string) (sessions.ID, bool) {
	t.Helper()
	codec, err := sessions.NewCodec(e.Gateway.Auth().SessionCookieName(), "session", e.Config.Cookie.Keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := codec.OpenID(cookie)
	return id, err == nil
}

func TestSession_LogoutThenReplayIsRefused(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	cookie := b.SessionCookie()
	wantUpstream(t, b, "/")

	// GET shows a confirmation; it does not sign out.
	page := b.Get("/_gatehouse/logout", "Accept", "text/html")
	if page.StatusCode != http.StatusOK || !strings.Contains(page.Body, `name="csrf"`) {
		t.Fatalf("logout page: status %d body %s", page.StatusCode, page.Body)
	}
	wantUpstream(t, b, "/")
	csrf := between(page.Body, `name="csrf" value="`, `"`)

	// A POST without the form's token is refused and signs nobody out.
	r := postForm(t, b, e.URL+"/_gatehouse/logout", "csrf=forged", "")
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("logout with a forged token: status %d, want 403", r.StatusCode)
	}
	wantUpstream(t, b, "/")
	// A cross-site POST is refused even with the right token.
	if r := postForm(t, b, e.URL+"/_gatehouse/logout", "csrf="+csrf, "https://evil.example"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: status %d, want 403", r.StatusCode)
	}

	r = postForm(t, b, e.URL+"/_gatehouse/logout", "csrf="+csrf, e.URL)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: status %d, want 303; body %s", r.StatusCode, r.Body)
	}
	if got := r.Header.Get("Clear-Site-Data"); !strings.Contains(got, `"cache"`) {
		t.Errorf("Clear-Site-Data = %q", got)
	}
	if b.SessionCookie() != "" {
		t.Error("session cookie still in the browser after logout")
	}
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("store holds %d sessions after logout, want 0", n)
	}
	// Replaying the old cookie gets nothing.
	replay := e.NewBrowser()
	replay.SetCookie(e.Gateway.Auth().SessionCookieName(), cookie)
	wantLogin(t, replay, "/")
	if r := replay.Get("/_gatehouse/whoami"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("whoami with the old cookie: %d, want 401", r.StatusCode)
	}
}

func postForm(t *testing.T, b *testenv.Browser, url, body, origin string) *testenv.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return b.Do(req)
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

func TestSession_IdleExpiryAndExtension(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  idle_timeout: 10m\n  absolute_timeout: 8h\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	for range 5 { // 45 minutes of activity, 9 minutes apart: never idle for 10
		e.Advance(9 * time.Minute)
		wantUpstream(t, b, "/")
	}
	e.Advance(10*time.Minute + time.Second)
	wantLogin(t, b, "/")
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("expired session still stored (%d)", n)
	}
	if !strings.Contains(e.Logs.String(), `"reason":"idle"`) {
		t.Error("no session_end log line with reason idle")
	}
}

func TestSession_AbsoluteExpiryDespiteActivity(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  idle_timeout: 30m\n  absolute_timeout: 1h\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	for range 5 { // active every 11 minutes up to 55 minutes
		e.Advance(11 * time.Minute)
		wantUpstream(t, b, "/")
	}
	e.Advance(5 * time.Minute)
	wantLogin(t, b, "/")
	if !strings.Contains(e.Logs.String(), `"reason":"absolute"`) {
		t.Error("no session_end log line with reason absolute")
	}
}

func TestSession_LRUEvictionAtMaxSessions(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  max_sessions: 2\n"})
	var bs []*testenv.Browser
	for _, u := range []string{"a", "b", "c"} {
		b := e.NewBrowser()
		b.Login(testenv.User(u, u+"@example.com"), "/")
		bs = append(bs, b)
	}
	if n := e.Gateway.Store.Len(); n != 2 {
		t.Fatalf("store holds %d sessions, want max_sessions 2", n)
	}
	wantLogin(t, bs[0], "/") // least recently used, evicted
	wantUpstream(t, bs[1], "/")
	wantUpstream(t, bs[2], "/")
	if !strings.Contains(e.Logs.String(), `"reason":"evicted"`) {
		t.Error("no session_end log line with reason evicted")
	}
}

func TestSession_TamperedAndForeignCookies(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	good := b.SessionCookie()
	name := e.Gateway.Auth().SessionCookieName()

	foreign, err := sessions.NewCodec(name, "session", [][]byte{[]byte(strings.Repeat("k", 32))}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := sessionID(t, e, good)
	foreignValue, _ := foreign.SealID(id) // the right ID under another key
	otherName, _ := sessions.NewCodec("other", "session", e.Config.Cookie.Keys, time.Hour)
	movedValue, _ := otherName.SealID(id) // the right key, another cookie's name

	flip := []byte(good)
	flip[len(flip)/2] ^= 1
	for _, tc := range []struct{ name, value string }{
		{"tampered byte", string(flip)},
		{"truncated", good[:len(good)-4]},
		{"foreign key", foreignValue},
		{"sealed for another cookie name", movedValue},
		{"empty", ""},
		{"oversize", strings.Repeat("A", 5000)},
		{"garbage", "not-a-cookie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := e.NewBrowser()
			x.SetCookie(name, tc.value)
			r := x.Get("/", "Accept", "application/json")
			if r.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", r.StatusCode)
			}
		})
	}
	wantUpstream(t, b, "/")
}

func TestSession_UnauthenticatedRequestsCreateNoState(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	const n = 10000
	// Each path and the statuses an unauthenticated request may get there.
	paths := []struct {
		path string
		want map[int]bool
	}{
		{"/", map[int]bool{302: true, 401: true}},
		{"/admin?x=1", map[int]bool{302: true, 401: true}},
		{"/_gatehouse/start?rd=/x", map[int]bool{302: true}},
		{"/_gatehouse/callback?code=x&state=y", map[int]bool{400: true}},
		{"/_gatehouse/whoami", map[int]bool{401: true}},
		{"/_gatehouse/logout", map[int]bool{200: true}},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := paths[i%len(paths)]
				req, _ := http.NewRequest(http.MethodGet, e.URL+p.path, nil)
				if i%2 == 0 {
					req.Header.Set("Accept", "text/html")
				}
				if i%3 == 0 {
					req.Header.Set("Cookie", e.Gateway.Auth().SessionCookieName()+"=forged")
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if !p.want[resp.StatusCode] {
					t.Errorf("GET %s: status %d, want one of %v", p.path, resp.StatusCode, p.want)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if got := e.Gateway.Store.Len(); got != 0 {
		t.Errorf("%d unauthenticated requests left %d sessions in the store", n, got)
	}
	if got := len(e.Requests()); got != 0 {
		t.Errorf("upstream received %d requests", got)
	}
}
