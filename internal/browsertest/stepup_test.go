package browsertest_test

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	bt "github.com/gatehouse/gatehouse/internal/browsertest"
)

const stepUpYAML = `session:
  idle_timeout: 2h
  absolute_timeout: 8h
routes:
  - name: admin
    match: {path_prefix: /admin}
    upstream: ${UPSTREAM}
    max_auth_age: 15m
    pass_id_token: true
`

// authTimeOf reads auth_time from the payload of an ID token the app
// received (the signature is gatehouse's business, checked at login).
func authTimeOf(t *testing.T, idToken string) int64 {
	t.Helper()
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		t.Fatalf("the app received no ID token (%q)", idToken)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil || c.AuthTime == 0 {
		t.Fatalf("ID token payload %s: no auth_time (%v)", raw, err)
	}
	return c.AuthTime
}

// TestBrowser_StepUp: /admin has max_auth_age 15m. Twenty minutes after
// signing in, opening it sends the browser through the development
// provider with max_age=900 and prompt=login; signing in there brings it
// back to the same URL, and the app and gatehouse's session both carry
// the new auth_time. The rest of the site does not ask.
func TestBrowser_StepUp(t *testing.T) {
	a := &app{}
	s := bt.StartStack(t, bt.StackOptions{YAML: stepUpYAML, App: a})
	ctx := bt.New(t)
	const admin = "/admin/users?x=1"

	s.SignIn(t, ctx, "alice", s.URL+admin)
	wantApp(t, ctx, s.URL+admin, "alice")
	first := authTimeOf(t, a.last(admin).idToken)
	if now := s.Clock.Now().Unix(); first != now {
		t.Errorf("first sign-in: auth_time %d, want the provider's sign-in time %d", first, now)
	}

	s.Clock.Advance(20 * time.Minute)
	bt.Load(t, ctx, "open the site", chromedp.Navigate(s.URL+"/reports"))
	wantApp(t, ctx, s.URL+"/reports", "alice")

	bt.Load(t, ctx, "open "+admin+" 20 minutes later", chromedp.Navigate(s.URL+admin))
	bt.WantLoginPage(t, ctx, s.IdPURL)
	az, err := url.Parse(bt.Location(t, ctx))
	if err != nil {
		t.Fatal(err)
	}
	if q := az.Query(); q.Get("max_age") != "900" || q.Get("prompt") != "login" {
		bt.Failf(t, ctx, "authorize request max_age=%q prompt=%q, want 900 and login", q.Get("max_age"), q.Get("prompt"))
	}
	bt.Load(t, ctx, "sign in again as alice", chromedp.Click(chromedp.ID("login-alice")))
	wantApp(t, ctx, s.URL+admin, "alice")

	second := authTimeOf(t, a.last(admin).idToken)
	if now := s.Clock.Now().Unix(); second != now || second == first {
		t.Errorf("after the step-up the app's ID token has auth_time %d, want the new sign-in's %d (first %d)", second, now, first)
	}
	sess, err := sessionOf(t, ctx, s)
	if err != nil {
		t.Fatalf("the session after the step-up: %v", err)
	}
	if got := sess.AuthTime.Unix(); got != second {
		t.Errorf("gatehouse's session has auth_time %d, want %d", got, second)
	}
	// Fresh now: /admin opens without the provider.
	bt.Load(t, ctx, "open "+admin+" again", chromedp.Navigate(s.URL+admin))
	wantApp(t, ctx, s.URL+admin, "alice")
}
