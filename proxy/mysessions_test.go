package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The "Your sessions" page: a user sees their own sessions across
// devices and signs out one of them, or all others.

const (
	uaFirefoxWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaSafariIPhone   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

// uaTransport sends every request with a User-Agent, as a real browser does.
type uaTransport struct{ ua string }

func (t uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", t.ua)
	return http.DefaultTransport.RoundTrip(r)
}

// withUA makes b send ua on every request.
func withUA(b *testenv.Browser, ua string) *testenv.Browser {
	b.Client.Transport = uaTransport{ua}
	return b
}

// mySessions reads GET /_gatehouse/sessions as JSON with b.
func mySessions(t *testing.T, b *testenv.Browser) []auth.UserSession {
	t.Helper()
	r := b.Get("/_gatehouse/sessions", "Accept", "application/json")
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET sessions (JSON): status %d type %q body %s", r.StatusCode, r.Header.Get("Content-Type"), r.Body)
	}
	var got struct {
		Sub      string             `json:"sub"`
		Sessions []auth.UserSession `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
		t.Fatalf("sessions JSON %s: %v", r.Body, err)
	}
	return got.Sessions
}

// The sessions page's forms carry the sign-out form's CSRF token
// (csrfOf reads it from the sign-out page).

// thisDevice returns the session marked as this device, failing unless
// exactly one is.
func thisDevice(t *testing.T, list []auth.UserSession) auth.UserSession {
	t.Helper()
	var me []auth.UserSession
	for _, s := range list {
		if s.ThisDevice {
			me = append(me, s)
		}
	}
	if len(me) != 1 {
		t.Fatalf("%d sessions marked this_device in %+v, want 1", len(me), list)
	}
	return me[0]
}

func TestMySessions_ListAndSignOutOther(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	alice := testenv.User("alice", "alice@example.com")
	laptop := withUA(e.NewBrowser(), uaFirefoxWindows)
	laptop.Login(alice, "/")
	phone := withUA(e.NewBrowser(), uaSafariIPhone)
	phone.Login(testenv.User("alice", "alice@example.com"), "/")
	mallory := e.NewBrowser()
	mallory.Login(testenv.User("mallory", "mallory@example.com"), "/")

	fromLaptop := mySessions(t, laptop)
	fromPhone := mySessions(t, phone)
	if len(fromLaptop) != 2 || len(fromPhone) != 2 {
		t.Fatalf("alice's sessions: %d from the laptop, %d from the phone, want 2 each", len(fromLaptop), len(fromPhone))
	}
	me, other := thisDevice(t, fromLaptop), thisDevice(t, fromPhone)
	if me.Handle == other.Handle {
		t.Fatalf("laptop and phone both marked as session %s", me.Handle)
	}
	t.Run("browser, OS, IP and times", func(t *testing.T) {
		if me.Browser != "Firefox 133" || me.OS != "Windows" {
			t.Errorf("laptop shown as %q on %q, want Firefox 133 on Windows", me.Browser, me.OS)
		}
		if other.Browser != "Safari 17" || other.OS != "iOS" {
			t.Errorf("phone shown as %q on %q, want Safari 17 on iOS", other.Browser, other.OS)
		}
		if me.IP != "127.0.0.1" || me.SignedIn.IsZero() || me.LastActive.Before(me.SignedIn) {
			t.Errorf("laptop session %+v: want IP 127.0.0.1, signed_in set, last_active not before it", me)
		}
	})
	t.Run("page marks this device", func(t *testing.T) {
		page := phone.Get("/_gatehouse/sessions", "Accept", "text/html")
		cur := between(page.Body, `class="session this-device" data-handle="`, `"`)
		if page.StatusCode != http.StatusOK || cur != other.Handle {
			t.Fatalf("page from the phone: status %d, this-device handle %q, want %q; body %s", page.StatusCode, cur, other.Handle, page.Body)
		}
		if !strings.Contains(page.Body, "Safari 17 on iOS <strong class=\"current\">(this device)</strong>") ||
			!strings.Contains(page.Body, "Firefox 133 on Windows") || !strings.Contains(page.Body, `name="handle" value="`+me.Handle+`"`) {
			t.Errorf("page from the phone lacks a device or the laptop's sign-out button: %s", page.Body)
		}
		if strings.Contains(page.Body, "eyJ") {
			t.Errorf("sessions page shows a JWT: %s", page.Body)
		}
		if strings.Contains(page.Body, `name="handle" value="`+other.Handle+`"`) {
			t.Errorf("page offers to sign out this device through the list: %s", page.Body)
		}
	})
	t.Run("whoami links the page", func(t *testing.T) {
		r := laptop.Get("/_gatehouse/whoami")
		if !strings.Contains(r.Body, `"sessions_url":"/_gatehouse/sessions"`) {
			t.Errorf("whoami %s lacks sessions_url", r.Body)
		}
	})

	t.Run("without the CSRF token nothing ends", func(t *testing.T) {
		r := postForm(t, phone, e.URL+"/_gatehouse/sessions", "handle="+me.Handle, e.URL)
		if r.StatusCode != http.StatusForbidden {
			t.Fatalf("post without csrf: status %d, want 403; body %s", r.StatusCode, r.Body)
		}
		r = postForm(t, phone, e.URL+"/_gatehouse/sessions", "csrf="+csrfOf(t, phone)+"&handle="+me.Handle, "https://evil.example")
		if r.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site post: status %d, want 403; body %s", r.StatusCode, r.Body)
		}
		wantUpstream(t, laptop, "/")
	})
	t.Run("another user cannot end alice's session", func(t *testing.T) {
		csrf := csrfOf(t, mallory)
		r := postForm(t, mallory, e.URL+"/_gatehouse/sessions", "csrf="+csrf+"&handle="+me.Handle, e.URL)
		if r.StatusCode != http.StatusNotFound {
			t.Fatalf("mallory posting alice's handle: status %d, want 404; body %s", r.StatusCode, r.Body)
		}
		r = postForm(t, mallory, e.URL+"/_gatehouse/sessions", "csrf="+csrf+"&others=1", e.URL)
		if r.StatusCode != http.StatusSeeOther {
			t.Fatalf("mallory signing out her other sessions: status %d; body %s", r.StatusCode, r.Body)
		}
		wantUpstream(t, laptop, "/")
		wantUpstream(t, phone, "/")
		wantUpstream(t, mallory, "/")
		if n := len(mySessions(t, laptop)); n != 2 {
			t.Fatalf("alice has %d sessions after mallory's posts, want 2", n)
		}
	})
	t.Run("sign out the other device", func(t *testing.T) {
		r := postForm(t, phone, e.URL+"/_gatehouse/sessions", "csrf="+csrfOf(t, phone)+"&handle="+url.QueryEscape(me.Handle), e.URL)
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/_gatehouse/sessions?ended=1" {
			t.Fatalf("sign out the laptop: status %d Location %q, want 303 to the page; body %s", r.StatusCode, r.Header.Get("Location"), r.Body)
		}
		wantLogin(t, laptop, "/")
		wantUpstream(t, phone, "/")
		page := phone.Navigate("/_gatehouse/sessions?ended=1")
		if !strings.Contains(page.Body, "Signed out of 1 other session.") || strings.Contains(page.Body, me.Handle) {
			t.Errorf("page after: %s", page.Body)
		}
	})
}

func TestMySessions_SignOutAllOthersJSON(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	var bs []*testenv.Browser
	for range 3 {
		b := e.NewBrowser()
		b.Login(testenv.User("alice", "alice@example.com"), "/")
		bs = append(bs, b)
	}
	keep := bs[2]
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/_gatehouse/sessions", strings.NewReader("others=1&csrf="+csrfOf(t, keep)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	r := keep.Do(req)
	if r.StatusCode != http.StatusOK || strings.TrimSpace(r.Body) != `{"ended":2}` {
		t.Fatalf("sign out all others (JSON): status %d body %s, want 200 {\"ended\":2}", r.StatusCode, r.Body)
	}
	wantLogin(t, bs[0], "/")
	wantLogin(t, bs[1], "/")
	wantUpstream(t, keep, "/")
	if list := mySessions(t, keep); len(list) != 1 || !list[0].ThisDevice {
		t.Fatalf("sessions left: %+v, want only this device", list)
	}
}

func TestMySessions_NotSignedIn(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	if r := b.Get("/_gatehouse/sessions", "Accept", "application/json"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("JSON without a session: status %d, want 401", r.StatusCode)
	}
	wantLogin(t, b, "/_gatehouse/sessions")
	if r := postForm(t, b, e.URL+"/_gatehouse/sessions", "others=1", e.URL); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("post without a session: status %d, want 401", r.StatusCode)
	}
}

func TestMySessions_Off(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "allow:\n  any_user: true\nsession:\n  self_service: false\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	for _, accept := range []string{"text/html", "application/json"} {
		if r := b.Get("/_gatehouse/sessions", "Accept", accept); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET sessions (%s) with self_service off: status %d, want 404", accept, r.StatusCode)
		}
	}
	if r := postForm(t, b, e.URL+"/_gatehouse/sessions", "others=1", e.URL); r.StatusCode == http.StatusSeeOther || r.StatusCode == http.StatusOK {
		t.Errorf("POST sessions with self_service off: status %d", r.StatusCode)
	}
	if r := b.Get("/_gatehouse/whoami"); strings.Contains(r.Body, "sessions_url") {
		t.Errorf("whoami names the page while it is off: %s", r.Body)
	}
}

func TestMySessions_ForbiddenPageLinks(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "allow:\n  email_domains: [example.com]\nroutes:\n  - match: {path_prefix: /admin}\n    upstream: ${UPSTREAM}\n    allow:\n      groups: [admins]\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	r := b.Navigate("/admin")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.Body, `href="/_gatehouse/sessions"`) {
		t.Fatalf("403 page: status %d, want a link to the sessions page; body %s", r.StatusCode, r.Body)
	}
}

// TestMySessions_Redis: signing out the other device at replica A is
// refused at replica B within a second.
func TestMySessions_RedisAcrossReplicas(t *testing.T) {
	e, rep := redisEnv(t, redistest.Addr, "")
	laptop := withUA(e.NewBrowser(), uaFirefoxWindows)
	laptop.Login(testenv.User("alice", "alice@example.com"), "/")
	onB := rep.Browser(laptop)
	wantUpstream(t, onB, "/") // B caches the session
	phone := withUA(e.NewBrowser(), uaSafariIPhone)
	phone.Login(testenv.User("alice", "alice@example.com"), "/")

	list := mySessions(t, phone)
	if len(list) != 2 {
		t.Fatalf("alice's sessions through redis: %+v, want 2", list)
	}
	var laptopHandle string
	for _, s := range list {
		if !s.ThisDevice {
			laptopHandle = s.Handle
			if s.Browser != "Firefox 133" || s.OS != "Windows" {
				t.Errorf("laptop through redis shown as %q on %q", s.Browser, s.OS)
			}
		}
	}
	if n := localLen(t, rep.Gateway); n < 1 {
		t.Fatalf("B caches %d sessions: the test would not show invalidation", n)
	}
	r := postForm(t, phone, e.URL+"/_gatehouse/sessions", "csrf="+csrfOf(t, phone)+"&handle="+laptopHandle, e.URL)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out the laptop at A: status %d body %s", r.StatusCode, r.Body)
	}
	lat := refusedWithin(t, onB, "/", time.Second)
	t.Logf("signed out at A, refused at B after %v", lat)
	wantUpstream(t, rep.Browser(phone), "/")
}

// TestMySessions_StoreDown: with Redis not answering, the page and the
// sign-out answer 503, never an empty list or "signed out".
func TestMySessions_StoreDown(t *testing.T) {
	srv, e, _ := faultEnv(t)
	laptop := e.NewBrowser()
	laptop.Login(testenv.User("alice", "alice@example.com"), "/")
	phone := e.NewBrowser()
	phone.Login(testenv.User("alice", "alice@example.com"), "/")
	var other string
	for _, s := range mySessions(t, phone) {
		if !s.ThisDevice {
			other = s.Handle
		}
	}
	csrf := csrfOf(t, phone)
	resume := pause(t, srv)
	for _, accept := range []string{"application/json", "text/html"} {
		if r := phone.Get("/_gatehouse/sessions", "Accept", accept); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET sessions (%s) with redis paused: status %d, want 503; body %s", accept, r.StatusCode, r.Body)
		}
	}
	r := postForm(t, phone, e.URL+"/_gatehouse/sessions", "csrf="+csrf+"&handle="+other, e.URL)
	if r.StatusCode != http.StatusServiceUnavailable || strings.Contains(r.Body, "Signed out of") {
		t.Errorf("sign out with redis paused: status %d, want 503; body %s", r.StatusCode, r.Body)
	}
	resume()
	redistest.WaitFor(t, "redis answering", 5*time.Second, func() bool {
		return laptop.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate").StatusCode == http.StatusOK
	})
	if n := len(mySessions(t, phone)); n != 2 {
		t.Errorf("alice has %d sessions after the failed sign-out, want 2", n)
	}
}

// TestMySessions_DeleteRefused: Redis answers reads but refuses writes
// (min-replicas-to-write with no replica), so the list works and the
// revocation fails: the answer is 503, never "signed out", and the other
// session is not claimed ended.
func TestMySessions_DeleteRefused(t *testing.T) {
	srv, e, _ := faultEnv(t)
	laptop := e.NewBrowser()
	laptop.Login(testenv.User("alice", "alice@example.com"), "/")
	phone := e.NewBrowser()
	phone.Login(testenv.User("alice", "alice@example.com"), "/")
	var other string
	for _, s := range mySessions(t, phone) {
		if !s.ThisDevice {
			other = s.Handle
		}
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.ConfigSet(t.Context(), "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatalf("refuse writes: %v", err)
	}
	if n := len(mySessions(t, phone)); n != 2 {
		t.Fatalf("list with writes refused: %d sessions, want 2 (reads still work)", n)
	}
	for _, accept := range []string{"text/html", "application/json"} {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/_gatehouse/sessions", strings.NewReader("csrf="+csrfOf(t, phone)+"&handle="+other))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", accept)
		r := phone.Do(req)
		if r.StatusCode != http.StatusServiceUnavailable || strings.Contains(r.Body, "ended\":") || r.Header.Get("Retry-After") == "" {
			t.Errorf("sign out (%s) with writes refused: status %d Retry-After %q body %s, want 503", accept, r.StatusCode, r.Header.Get("Retry-After"), r.Body)
		}
	}
}
