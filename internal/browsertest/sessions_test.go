package browsertest_test

// Browser proofs of "sessions people can see and control": the sessions
// page seen from two browsers, signing out the other one (memory and
// Redis), and the session cookie's lifetime in the browser's jar.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	bt "github.com/gatehouse/gatehouse/internal/browsertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/sessions"
)

// wantApp checks that the browser shows the app's page at rawURL, as user.
func wantApp(t *testing.T, ctx context.Context, rawURL, user string) {
	t.Helper()
	if loc := bt.Location(t, ctx); loc != rawURL {
		bt.Failf(t, ctx, "location = %s, want the app at %s", loc, rawURL)
	}
	if got := bt.TextOf(t, ctx, "user"); got != user {
		bt.Failf(t, ctx, "the app saw user %q, want %q", got, user)
	}
}

// sessionOf opens, on the server, the session of the browser's cookie.
func sessionOf(t *testing.T, ctx context.Context, s *bt.Stack) (*sessions.Session, error) {
	t.Helper()
	name := s.Gateway.Auth().SessionCookieName()
	c := bt.CookieNamed(t, ctx, name)
	if c == nil {
		bt.Failf(t, ctx, "no session cookie %s in the browser; cookies: %s", name, bt.CookieList(bt.Cookies(t, ctx)))
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	return s.Gateway.Auth().Session(req)
}

// listedSession is one entry of the "Your sessions" page.
type listedSession struct {
	Handle     string `json:"handle"`
	ThisDevice bool   `json:"this"`
	Marked     bool   `json:"marked"` // shows "(this device)"
	Buttons    int    `json:"buttons"`
}

const listedSessionsJS = `[...document.querySelectorAll("#sessions li.session")].map(li => ({
	handle: li.dataset.handle,
	this: li.classList.contains("this-device"),
	marked: li.innerText.includes("(this device)"),
	buttons: li.querySelectorAll("form button").length,
}))`

// redisYAML is the session section of a stack on the shared redis-server,
// under a key prefix of the test's own.
func redisYAML(t *testing.T) string {
	redistest.Require(t, redistest.Addr)
	return fmt.Sprintf("session:\n  store: redis\n  redis:\n    url: redis://%s/0\n    key_prefix: %q\n    timeout: 250ms\n",
		redistest.Addr, redistest.KeyPrefix(t, redistest.Addr))
}

// TestBrowser_SignOutOtherSession: alice signs in from two browsers (two
// Chromium processes with their own profiles); the first lists both
// sessions, its own marked, and signs the other out; the second browser's
// next request is refused within a second and sent to sign in, while the
// first stays signed in. With Redis the browsers use two replicas, and
// the second's replica had the session in its local cache.
func TestBrowser_SignOutOtherSession(t *testing.T) {
	for _, tc := range []struct {
		name  string
		redis bool
	}{{"memory", false}, {"redis", true}} {
		t.Run(tc.name, func(t *testing.T) {
			yml := ""
			if tc.redis {
				yml = redisYAML(t)
			}
			a := &app{}
			s := bt.StartStack(t, bt.StackOptions{YAML: yml, App: a})
			urlB, gwB := s.URL, s.Gateway
			if tc.redis {
				r := s.Replica()
				urlB, gwB = r.URL, r.Gateway
			}
			one, two := bt.New(t), bt.New(t)

			s.SignIn(t, one, "alice", s.URL+"/one")
			wantApp(t, one, s.URL+"/one", "alice")
			s.SignIn(t, two, "alice", urlB+"/two")
			bt.Load(t, two, "open the app on the second browser's replica", chromedp.Navigate(urlB+"/two"))
			wantApp(t, two, urlB+"/two", "alice")
			mine, err := sessionOf(t, one, s)
			if err != nil {
				t.Fatalf("the first browser's session: %v", err)
			}
			if st, ok := gwB.Store.(*sessions.Redis); ok && st.LocalLen() < 1 {
				t.Fatalf("the second browser's replica caches %d sessions: the test would not show that the sign-out reaches its cache", st.LocalLen())
			}

			bt.Load(t, one, "open Your sessions", chromedp.Navigate(s.URL+"/_gatehouse/sessions"))
			if got := bt.TextOf(t, one, "title"); got != "Your sessions" {
				bt.Failf(t, one, "title %q, want Your sessions", got)
			}
			list := bt.Run(t, one, "read the sessions list", chromedp.Evaluate[[]listedSession](listedSessionsJS))
			if len(list) != 2 {
				bt.Failf(t, one, "the page lists %d sessions, want alice's 2: %+v", len(list), list)
			}
			var other listedSession
			for _, l := range list {
				switch {
				case l.Handle == mine.ID.Handle():
					if !l.ThisDevice || !l.Marked || l.Buttons != 0 {
						bt.Failf(t, one, "this browser's session %+v: want marked as this device, without a sign-out button", l)
					}
				case l.ThisDevice || l.Marked || l.Buttons != 1:
					bt.Failf(t, one, "the other browser's session %+v: want unmarked, with one sign-out button", l)
				default:
					other = l
				}
			}
			if other.Handle == "" {
				bt.Failf(t, one, "no session of the other browser in %+v (this one is %s)", list, mine.ID.Handle())
			}

			sel := fmt.Sprintf(`#sessions li.session[data-handle=%q] form button`, other.Handle)
			resp := bt.Load(t, one, "press Sign out this session", chromedp.Click(chromedp.CSS(sel)))
			signedOut := time.Now()
			// The second browser's next request is refused: it lands on
			// the provider's sign-in page.
			tries := 0
			for {
				tries++
				bt.Load(t, two, "reload the app on the second browser", chromedp.Navigate(urlB+"/two"))
				if strings.HasPrefix(bt.Location(t, two), s.IdPURL+"/authorize") {
					break
				}
				if time.Since(signedOut) > time.Second {
					bt.Failf(t, two, "the second browser still reaches the app %s after its session was signed out (%d tries)", time.Since(signedOut), tries)
				}
			}
			took := time.Since(signedOut)
			t.Logf("%s: the second browser was refused %s after the sign-out (request %d)", tc.name, took.Round(time.Millisecond), tries)
			if took > time.Second {
				t.Errorf("refused after %s, want within 1s", took)
			}
			bt.WantLoginPage(t, two, s.IdPURL)

			if resp.Status != http.StatusOK || !strings.HasSuffix(bt.Location(t, one), "/_gatehouse/sessions?ended=1") {
				bt.Failf(t, one, "after the sign-out: status %d, want 200 on Your sessions?ended=1", resp.Status)
			}
			if got := bt.TextOf(t, one, "detail"); !strings.HasPrefix(got, "Signed out of 1 other session.") {
				bt.Failf(t, one, "detail %q, want it to say one other session was signed out", got)
			}
			if n := len(bt.Run(t, one, "read the sessions list", chromedp.Evaluate[[]listedSession](listedSessionsJS))); n != 1 {
				bt.Failf(t, one, "the page lists %d sessions after the sign-out, want 1", n)
			}

			// The first browser is still signed in.
			bt.Load(t, one, "open the app on the first browser", chromedp.Navigate(s.URL+"/one"))
			wantApp(t, one, s.URL+"/one", "alice")
		})
	}
}

// TestBrowser_PersistentCookie: with cookie.persistent: false the
// browser's jar holds the session cookie as a browser-session cookie (no
// expiry, dropped when the browser closes); by default it expires with
// session.absolute_timeout.
func TestBrowser_PersistentCookie(t *testing.T) {
	const absolute = 8 * time.Hour
	for _, tc := range []struct {
		name       string
		cookieYAML string
		persistent bool
	}{
		{"default", "", true},
		{"persistent false", "  persistent: false\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := bt.StartStack(t, bt.StackOptions{
				YAML:       fmt.Sprintf("session:\n  idle_timeout: 1h\n  absolute_timeout: %s\n", absolute),
				CookieYAML: tc.cookieYAML,
				App:        &app{},
			})
			ctx := bt.New(t)
			s.SignIn(t, ctx, "alice", s.URL+"/one")
			signedIn := time.Now()
			wantApp(t, ctx, s.URL+"/one", "alice")
			name := s.Gateway.Auth().SessionCookieName()
			c := bt.CookieNamed(t, ctx, name)
			if c == nil {
				t.Fatalf("no session cookie %s; cookies: %s", name, bt.CookieList(bt.Cookies(t, ctx)))
			}
			t.Logf("session cookie in the jar: session=%v expires=%v", c.Session, c.Expires)
			if !tc.persistent {
				if !c.Session || c.Expires != -1 {
					t.Errorf("cookie.persistent false: the jar holds session=%v expires=%v, want a browser-session cookie (session=true, expires=-1)", c.Session, c.Expires)
				}
				return
			}
			expires := time.Unix(int64(c.Expires), 0)
			if want := signedIn.Add(absolute); c.Session || expires.Before(want.Add(-time.Minute)) || expires.After(want.Add(time.Minute)) {
				t.Errorf("default cookie: session=%v expires %s, want a persistent cookie expiring with the absolute timeout, about %s",
					c.Session, expires.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
			}
		})
	}
}
