package proxy_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// formApp is an upstream that records each request's method, path, user
// header and body.
type formApp struct {
	mu   sync.Mutex
	seen []formSeen
}

type formSeen struct{ method, path, user, ctype, origin, body string }

func (a *formApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.seen = append(a.seen, formSeen{r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-User"), r.Header.Get("Content-Type"), r.Header.Get("Origin"), string(body)})
	a.mu.Unlock()
	_, _ = io.WriteString(w, "saved by the app")
}

// posts returns the POSTs the app received.
func (a *formApp) posts() []formSeen {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []formSeen
	for _, s := range a.seen {
		if s.method == http.MethodPost {
			out = append(out, s)
		}
	}
	return out
}

const heldYAML = `session:
  idle_timeout: 10m
  preserve_posts: true
  preserve_posts_max_bytes: 1000
allow:
  any_user: true
`

func newHeldEnv(t *testing.T, yml string) (*testenv.Env, *formApp) {
	app := &formApp{}
	return testenv.New(t, testenv.Options{YAML: yml, Upstream: app}), app
}

// postFormWith sends a form POST with the browser's cookies and the given
// headers (pairs), following no redirect.
func postFormWith(b *testenv.Browser, e *testenv.Env, path, body string, header ...string) *testenv.Response {
	e.T.Helper()
	req, err := http.NewRequest(http.MethodPost, e.URL+path, strings.NewReader(body))
	if err != nil {
		e.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.Do(req)
}

// expiredBrowser signs sub in, then lets the session pass its idle limit.
func expiredBrowser(t *testing.T, e *testenv.Env, sub string) *testenv.Browser {
	t.Helper()
	b := e.NewBrowser()
	if r := b.Login(testenv.User(sub, sub+"@example.com"), "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", r.StatusCode, r.Body)
	}
	e.Advance(11 * time.Minute)
	return b
}

// holdAndSignIn posts a same-origin form with an expired session, checks
// it was held (303 to the provider), signs user in and returns the final
// response and the callback URL.
func holdAndSignIn(t *testing.T, e *testenv.Env, b *testenv.Browser, user string) (*testenv.Response, string) {
	t.Helper()
	r := postFormWith(b, e, "/notes/save?draft=1", "title=Hello&text=my+long+text", "Origin", e.URL)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST without a session: %d %s, want 303 to the provider", r.StatusCode, r.Body)
	}
	e.IdP.QueueUser(testenv.User(user, user+"@example.com"))
	final := b.Navigate(r.Header.Get("Location"))
	cb := ""
	for _, h := range final.Hops {
		if strings.Contains(h, "/_gatehouse/callback") {
			cb = h
		}
	}
	return final, cb
}

func TestHeldForm_ReplayedOnceToSameUser(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	b := expiredBrowser(t, e, "alice")
	loginCookie := e.Gateway.Auth().LoginCookieName()
	r := postFormWith(b, e, "/notes/save?draft=1", "title=Hello&text=my+long+text", "Origin", e.URL)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST without a session: %d %s", r.StatusCode, r.Body)
	}
	if n := len(app.posts()); n != 0 {
		t.Fatalf("app received %d POSTs before any login", n)
	}
	if e.Gateway.Auth().HeldForms() != 1 {
		t.Fatalf("held forms = %d, want 1", e.Gateway.Auth().HeldForms())
	}
	saved := b.Cookie(loginCookie)
	e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
	final := b.Navigate(r.Header.Get("Location"))
	if final.StatusCode != http.StatusOK || final.Body != "saved by the app" {
		t.Fatalf("after login: %d %q, want the app's answer to the form", final.StatusCode, final.Body)
	}
	posts := app.posts()
	if len(posts) != 1 {
		t.Fatalf("app received %d POSTs, want 1", len(posts))
	}
	want := formSeen{http.MethodPost, "/notes/save?draft=1", "alice", "application/x-www-form-urlencoded", e.URL, "title=Hello&text=my+long+text"}
	if posts[0] != want {
		t.Errorf("app got %+v, want %+v", posts[0], want)
	}
	if b.SessionCookie() == "" {
		t.Error("no new session cookie after the replay")
	}
	if e.Gateway.Auth().HeldForms() != 0 {
		t.Errorf("held forms = %d after the replay, want 0", e.Gateway.Auth().HeldForms())
	}

	t.Run("callback replayed with a saved login cookie", func(t *testing.T) {
		cb := final.Hops[len(final.Hops)-1]
		if !strings.Contains(cb, "/_gatehouse/callback") {
			t.Fatalf("last hop %s is not the callback", cb)
		}
		b2 := e.NewBrowser()
		b2.SetCookie(loginCookie, saved)
		r := b2.Get(cb, "Accept", "text/html")
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed callback: %d %s", r.StatusCode, r.Body)
		}
		if n := len(app.posts()); n != 1 {
			t.Errorf("app received %d POSTs after the replayed callback, want 1", n)
		}
	})
}

func TestHeldForm_OtherUserDropped(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	b := expiredBrowser(t, e, "alice")
	final, _ := holdAndSignIn(t, e, b, "mallory")
	if final.StatusCode != http.StatusOK || !strings.Contains(final.Body, "Your form was not resubmitted") {
		t.Errorf("other user: %d %s, want the notice", final.StatusCode, final.Body)
	}
	if n := len(app.posts()); n != 0 {
		t.Errorf("app received %d POSTs, want none", n)
	}
	if e.Gateway.Auth().HeldForms() != 0 {
		t.Error("the dropped form is still held")
	}
	if !strings.Contains(e.Logs.String(), `"reason":"other_user"`) {
		t.Error("no log line for the dropped form")
	}
}

func TestHeldForm_UnknownUserNotReplayed(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	b := e.NewBrowser() // never signed in: nobody to compare with
	final, _ := holdAndSignIn(t, e, b, "alice")
	if !strings.Contains(final.Body, "Your form was not resubmitted") {
		t.Errorf("unknown user: %d %s, want the notice", final.StatusCode, final.Body)
	}
	if n := len(app.posts()); n != 0 {
		t.Fatalf("app received %d POSTs before the user confirmed, want none", n)
	}
	// The page offers the fields back; the user's own press sends them.
	for _, want := range []string{`<form method="post" action="/notes/save?draft=1">`, `name="title" value="Hello"`, `name="text" value="my long text"`} {
		if !strings.Contains(final.Body, want) {
			t.Errorf("page lacks %s: %s", want, final.Body)
		}
	}
	r := postFormWith(b, e, "/notes/save?draft=1", "text=my+long+text&title=Hello", "Origin", e.URL)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("resubmit: %d %s", r.StatusCode, r.Body)
	}
	if p := app.posts(); len(p) != 1 || p[0].user != "alice" {
		t.Errorf("app got %+v, want one POST as alice", p)
	}

	t.Run("repeated field: no form offered", func(t *testing.T) {
		b := e.NewBrowser()
		r := postFormWith(b, e, "/notes/save", "tag=a&tag=b", "Origin", e.URL)
		e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
		final := b.Navigate(r.Header.Get("Location"))
		if !strings.Contains(final.Body, "Your form was not resubmitted") || strings.Contains(final.Body, "<form") {
			t.Errorf("got %s", final.Body)
		}
	})
}

func TestHeldForm_NotHeld(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	for _, tc := range []struct {
		name   string
		body   string
		header []string
	}{
		{"cross-site Origin", "a=1", []string{"Origin", "https://evil.example"}},
		{"same Origin but marked cross-site", "a=1", []string{"Origin", e.URL, "Sec-Fetch-Site", "cross-site"}},
		{"cross-site fetch metadata", "a=1", []string{"Sec-Fetch-Site", "cross-site"}},
		{"same-site subdomain", "a=1", []string{"Sec-Fetch-Site", "same-site"}},
		{"null Origin", "a=1", []string{"Origin", "null"}},
		{"no origin signal", "a=1", nil},
		{"oversize", strings.Repeat("a", 1001), []string{"Origin", e.URL}},
		{"fetch, not a form submission", "a=1", []string{"Origin", e.URL, "Sec-Fetch-Mode", "cors"}},
		{"not a form", `{"a":1}`, []string{"Origin", e.URL, "Content-Type", "application/json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := expiredBrowser(t, e, "alice")
			r := postFormWith(b, e, "/notes/save", tc.body, tc.header...)
			if r.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want the ordinary 401; %s", r.StatusCode, r.Body)
			}
			if e.Gateway.Auth().HeldForms() != 0 {
				t.Errorf("form held")
			}
			if loc := r.Header.Get("Location"); loc != "" {
				t.Errorf("redirected to %s", loc)
			}
			// Signing in afterwards does not bring the POST to the app.
			b.Login(testenv.User("alice", "alice@example.com"), "/")
			if n := len(app.posts()); n != 0 {
				t.Errorf("app received %d POSTs", n)
			}
		})
	}
}

func TestHeldForm_ExpiresWithLoginState(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	b := expiredBrowser(t, e, "alice")
	r := postFormWith(b, e, "/notes/save", "a=1", "Origin", e.URL)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST: %d", r.StatusCode)
	}
	// The provider's authorize step, then a callback after the login
	// lifetime: the sign-in fails, and the form is gone with it.
	loc, _ := url.Parse(r.Header.Get("Location"))
	e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
	ar := b.Get(loc.String())
	cb := ar.Header.Get("Location")
	e.Advance(11 * time.Minute)
	if r := b.Get(cb, "Accept", "text/html"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("late callback: %d %s", r.StatusCode, r.Body)
	}
	if n := len(app.posts()); n != 0 {
		t.Errorf("app received %d POSTs", n)
	}
	// An expired form is never replayed even if its entry is still in
	// the store: a fresh login finds nothing to replay.
	final := b.Login(testenv.User("alice", "alice@example.com"), "/")
	if final.StatusCode != http.StatusOK || len(app.posts()) != 0 {
		t.Errorf("after a fresh login: %d, POSTs %d", final.StatusCode, len(app.posts()))
	}
}

func TestHeldForm_OffByDefault(t *testing.T) {
	e, app := newHeldEnv(t, "session:\n  idle_timeout: 10m\nallow:\n  any_user: true\n")
	b := expiredBrowser(t, e, "alice")
	r := postFormWith(b, e, "/notes/save", "a=1", "Origin", e.URL)
	if r.StatusCode != http.StatusUnauthorized || e.Gateway.Auth().HeldForms() != 0 || len(app.posts()) != 0 {
		t.Errorf("preserve_posts off: %d, held %d", r.StatusCode, e.Gateway.Auth().HeldForms())
	}
}

func TestHeldForm_MultipartAndFetchMetadata(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	b := expiredBrowser(t, e, "alice")
	body := "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nfile text\r\n--XyZ--\r\n"
	r := postFormWith(b, e, "/upload", body, "Content-Type", "multipart/form-data; boundary=XyZ", "Sec-Fetch-Site", "same-origin")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("multipart POST: %d %s", r.StatusCode, r.Body)
	}
	e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
	if final := b.Navigate(r.Header.Get("Location")); final.Body != "saved by the app" {
		t.Fatalf("after login: %d %s", final.StatusCode, final.Body)
	}
	p := app.posts()
	if len(p) != 1 || p[0].body != body || p[0].ctype != "multipart/form-data; boundary=XyZ" || p[0].user != "alice" {
		t.Errorf("app got %+v", p)
	}
}

// TestHeldForm_OtherBrowserGetsNothing: a form held for one browser is
// replayed to that browser's login only. Another browser signing in as the
// same user, or opening the first browser's callback URL (code and state
// seen in a log or over a shoulder) without its login cookie, gets
// nothing to the app; the first browser's own login still replays it once.
func TestHeldForm_OtherBrowserGetsNothing(t *testing.T) {
	e, app := newHeldEnv(t, heldYAML)
	b := expiredBrowser(t, e, "alice")
	r := postFormWith(b, e, "/notes/save?draft=1", "title=Hello&text=my+long+text", "Origin", e.URL)
	if r.StatusCode != http.StatusSeeOther || e.Gateway.Auth().HeldForms() != 1 {
		t.Fatalf("POST without a session: %d, held %d; want 303 and 1 held", r.StatusCode, e.Gateway.Auth().HeldForms())
	}

	other := e.NewBrowser()
	if final := other.Login(testenv.User("alice", "alice@example.com"), "/"); final.StatusCode != http.StatusOK {
		t.Fatalf("another browser's login as alice: %d %s", final.StatusCode, final.Body)
	}
	if n := len(app.posts()); n != 0 {
		t.Fatalf("another browser's login brought %d POSTs to the app", n)
	}
	if e.Gateway.Auth().HeldForms() != 1 {
		t.Fatalf("another browser's login took the held form (held %d)", e.Gateway.Auth().HeldForms())
	}

	// The first browser's trip to the provider, its callback URL opened
	// by another browser.
	e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
	cb := b.Get(r.Header.Get("Location")).Header.Get("Location")
	if !strings.Contains(cb, "/_gatehouse/callback") {
		t.Fatalf("provider answered with %q, want the callback", cb)
	}
	stolen := e.NewBrowser().Get(cb, "Accept", "text/html")
	if stolen.StatusCode != http.StatusBadRequest || len(app.posts()) != 0 || e.Gateway.Auth().HeldForms() != 1 {
		t.Fatalf("callback URL in another browser: %d, POSTs %d, held %d; want 400, none, 1", stolen.StatusCode, len(app.posts()), e.Gateway.Auth().HeldForms())
	}

	if final := b.Navigate(cb); final.StatusCode != http.StatusOK || final.Body != "saved by the app" {
		t.Fatalf("the first browser's callback: %d %q, want the app's answer", final.StatusCode, final.Body)
	}
	if p := app.posts(); len(p) != 1 || p[0].user != "alice" || p[0].body != "title=Hello&text=my+long+text" {
		t.Errorf("app got %+v, want the form once, as alice", p)
	}
}
