package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const stepUpYAML = `session:
  idle_timeout: 2h
  absolute_timeout: 8h
routes:
  - name: admin
    match: {path_prefix: /admin}
    upstream: ${UPSTREAM}
    max_auth_age: 15m
    allow: {any_user: true}
  - name: site
    match: {path_prefix: /}
    upstream: ${UPSTREAM}
    allow: {any_user: true}
`

// stepUpUser signs in as sub with an auth_time the test chooses at the
// moment the provider issues the ID token (nil: no auth_time claim).
func stepUpUser(sub string, authTime func() *time.Time) *testenv.TokenUser {
	verified := true
	return &testenv.TokenUser{Sub: sub, Email: sub + "@example.com", Verified: &verified,
		Mutate: func(c map[string]any) {
			if at := authTime(); at != nil {
				c["auth_time"] = at.Unix()
			} else {
				delete(c, "auth_time")
			}
		}}
}

// authorizeHop returns the hop that went to the provider's authorization
// endpoint, or nil.
func authorizeHop(e *testenv.Env, hops []string) *url.URL {
	for _, h := range hops {
		if strings.HasPrefix(h, e.IdP.AuthorizationEndpoint()) {
			u, _ := url.Parse(h)
			return u
		}
	}
	return nil
}

// TestStepUp_AdminNeedsRecentSignIn: a session older than the route's
// max_auth_age is sent back through the provider with max_age=900 and
// prompt=login, returns to the same URL with a new session for the same
// user, and reaches the app; the rest of the site does not ask.
func TestStepUp_AdminNeedsRecentSignIn(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: stepUpYAML, NoUpstream: true})
	b := e.NewBrowser()
	fresh := func() *time.Time { now := e.Clock.Now(); return &now }
	alice := stepUpUser("alice", fresh)

	if resp := b.Login(alice, "/admin/users?x=1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first login: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
	}
	first := b.SessionCookie()
	// A fresh sign-in passes without another trip to the provider.
	if resp := b.Navigate("/admin/users?x=1"); resp.StatusCode != http.StatusOK || len(resp.Hops) != 1 {
		t.Fatalf("fresh session: status %d, hops %v", resp.StatusCode, resp.Hops)
	}

	e.Advance(20 * time.Minute)
	// Routes without max_auth_age are unaffected.
	if resp := b.Navigate("/reports"); resp.StatusCode != http.StatusOK || len(resp.Hops) != 1 {
		t.Fatalf("route without max_auth_age: status %d, hops %v", resp.StatusCode, resp.Hops)
	}
	// An API request gets the RFC 9470 challenge, not a redirect.
	api := b.Get("/admin/users", "Accept", "application/json")
	if api.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API request to a step-up route: status %d, want 401", api.StatusCode)
	}
	wa := api.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="insufficient_user_authentication"`) || !strings.Contains(wa, "max_age=900") {
		t.Errorf("WWW-Authenticate = %q, want Bearer error=\"insufficient_user_authentication\" with max_age=900", wa)
	}
	if api.Header.Get("Location") != "" || !strings.Contains(api.Body, "insufficient_user_authentication") {
		t.Errorf("API answer: Location %q, body %s", api.Header.Get("Location"), api.Body)
	}

	upstreamBefore := len(e.Requests())
	e.IdP.QueueUser(alice)
	resp := b.Navigate("/admin/users?x=1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after step-up: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
	}
	az := authorizeHop(e, resp.Hops)
	if az == nil {
		t.Fatalf("an old session reached /admin without the provider: hops %v", resp.Hops)
	}
	if q := az.Query(); q.Get("max_age") != "900" || q.Get("prompt") != "login" {
		t.Errorf("authorize URL max_age=%q prompt=%q, want 900 and login", q.Get("max_age"), q.Get("prompt"))
	}
	if final := resp.Hops[len(resp.Hops)-1]; final != e.URL+"/admin/users?x=1" {
		t.Errorf("returned to %s, want the same URL", final)
	}
	if got := len(e.Requests()) - upstreamBefore; got != 1 {
		t.Errorf("upstream got %d requests during the step-up, want 1 (only after the new sign-in)", got)
	}
	if up := e.LastRequest(); up.Header.Get("X-Forwarded-User") != "alice" {
		t.Errorf("upstream user %q, want alice", up.Header.Get("X-Forwarded-User"))
	}
	if b.SessionCookie() == first || b.SessionCookie() == "" {
		t.Error("the step-up kept the old session cookie; a fresh login must replace the session")
	}
	// The old session is gone.
	old := e.NewBrowser()
	old.SetCookie(e.Gateway.Auth().SessionCookieName(), first)
	if r := old.Get("/reports", "Accept", "application/json"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session from before the step-up still works: status %d", r.StatusCode)
	}
}

// TestStepUp_ProviderIgnoresMaxAge: a provider that answers a step-up
// login with an old auth_time, or none, gets a refusal page: no session,
// no redirect back into the provider, no request to the app.
func TestStepUp_ProviderIgnoresMaxAge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		authTime func(e *testenv.Env, login time.Time) *time.Time
	}{
		{"old auth_time", func(_ *testenv.Env, login time.Time) *time.Time { return &login }},
		{"no auth_time", func(*testenv.Env, time.Time) *time.Time { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: stepUpYAML, NoUpstream: true})
			b := e.NewBrowser()
			login := e.Clock.Now()
			stepping := false
			bob := stepUpUser("bob", func() *time.Time {
				if !stepping {
					return &login
				}
				return tc.authTime(e, login)
			})
			if resp := b.Login(bob, "/reports"); resp.StatusCode != http.StatusOK {
				t.Fatalf("first login: status %d", resp.StatusCode)
			}
			e.Advance(20 * time.Minute)
			stepping = true
			upstreamBefore := len(e.Requests())
			e.IdP.QueueUser(bob)
			resp := b.Navigate("/admin")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Body, "recent sign-in") {
				t.Fatalf("provider ignoring max_age: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
			}
			n := 0
			for _, h := range resp.Hops {
				if strings.HasPrefix(h, e.IdP.AuthorizationEndpoint()) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("went to the provider %d times, want once (no loop): %v", n, resp.Hops)
			}
			if got := len(e.Requests()) - upstreamBefore; got != 0 {
				t.Errorf("the app got %d requests", got)
			}
			if b.SessionCookie() != "" {
				t.Error("a refused step-up left a session cookie")
			}
		})
	}
}

// TestStepUp_UnknownAuthTimeIsTooOld: a session whose sign-in time is
// unknown (a provider without auth_time, or a session stored before
// gatehouse kept it) is asked to step up even when just created.
func TestStepUp_UnknownAuthTimeIsTooOld(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: stepUpYAML, NoUpstream: true})
	b := e.NewBrowser()
	carol := stepUpUser("carol", func() *time.Time { return nil })
	if resp := b.Login(carol, "/reports"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: status %d", resp.StatusCode)
	}
	api := b.Get("/admin", "Accept", "application/json")
	if api.StatusCode != http.StatusUnauthorized || !strings.Contains(api.Header.Get("WWW-Authenticate"), "insufficient_user_authentication") {
		t.Errorf("unknown auth_time on a step-up route: status %d, WWW-Authenticate %q", api.StatusCode, api.Header.Get("WWW-Authenticate"))
	}
}

// TestStepUp_ForwardAuth: forward-auth answers for a route with
// max_auth_age ask for the same step-up: a 401 with the RFC 9470
// challenge for an API call, a 302 to a login with max_age for a page
// (traefik), and 200 after a recent sign-in.
func TestStepUp_ForwardAuth(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: `forward_auth:
  mode: traefik
session:
  idle_timeout: 2h
routes:
  - name: wiki-admin
    match: {host: wiki.example.com, path_prefix: /admin}
    max_auth_age: 15m
    allow: {any_user: true}
allow: {any_user: true}
`})
	b := e.NewBrowser()
	fresh := func() *time.Time { now := e.Clock.Now(); return &now }
	b.Login(stepUpUser("dave", fresh), "/_gatehouse/start?rd=/")
	orig := func(more ...string) []string {
		return append([]string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/admin/x"}, more...)
	}
	if r := b.Get("/_gatehouse/auth", orig("Accept", "application/json")...); r.StatusCode != http.StatusOK {
		t.Fatalf("fresh sign-in: status %d %s", r.StatusCode, r.Body)
	}
	e.Advance(20 * time.Minute)
	r := b.Get("/_gatehouse/auth", orig("Accept", "application/json")...)
	if wa := r.Header.Get("WWW-Authenticate"); r.StatusCode != http.StatusUnauthorized || !strings.Contains(wa, `error="insufficient_user_authentication"`) || !strings.Contains(wa, "max_age=900") {
		t.Errorf("old sign-in, API: status %d, WWW-Authenticate %q", r.StatusCode, wa)
	}
	r = b.Get("/_gatehouse/auth", orig("Accept", "text/html", "Sec-Fetch-Mode", "navigate")...)
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || !strings.Contains(loc, "max_age=900") || !strings.Contains(loc, url.QueryEscape("https://wiki.example.com/admin/x")) {
		t.Errorf("old sign-in, page: status %d, Location %q", r.StatusCode, loc)
	}
}

// TestStepUp_BadMaxAgeInLoginLink: a login link with a max_age that is not
// a whole number of seconds in range is refused with a page saying so.
func TestStepUp_BadMaxAgeInLoginLink(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	for _, v := range []string{"abc", "0", "-5", "99999999999"} {
		r := e.NewBrowser().Get("/_gatehouse/start?rd=%2F&max_age="+v, "Accept", "text/html")
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "max_age") {
			t.Errorf("max_age=%s: status %d, body %s", v, r.StatusCode, r.Body)
		}
	}
}

// TestStepUp_DifferentUserEndsOldSession: when someone else signs in at
// the step-up, that is their login: the first user's session ends and the
// app sees the new user, never the old one with a new sign-in time.
func TestStepUp_DifferentUserEndsOldSession(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: stepUpYAML, NoUpstream: true})
	b := e.NewBrowser()
	fresh := func() *time.Time { now := e.Clock.Now(); return &now }
	b.Login(stepUpUser("alice", fresh), "/reports")
	first := b.SessionCookie()
	e.Advance(20 * time.Minute)
	resp := b.Login(stepUpUser("mallory", fresh), "/admin")
	if resp.StatusCode != http.StatusOK || e.LastRequest().Header.Get("X-Forwarded-User") != "mallory" {
		t.Fatalf("step-up as another user: status %d, upstream user %q", resp.StatusCode, e.LastRequest().Header.Get("X-Forwarded-User"))
	}
	old := e.NewBrowser()
	old.SetCookie(e.Gateway.Auth().SessionCookieName(), first)
	if r := old.Get("/reports", "Accept", "application/json"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("alice's session survived a step-up by mallory: status %d", r.StatusCode)
	}
}
