package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const acrYAML = `routes:
  - name: admin
    match: {path_prefix: /admin}
    upstream: ${UPSTREAM}
    acr_values: [mfa, hwk]
    allow: {any_user: true}
  - name: site
    match: {path_prefix: /}
    upstream: ${UPSTREAM}
    allow: {any_user: true}
`

// acrUser signs in as sub with the acr the test chooses when the
// provider issues the ID token ("" for no acr claim).
func acrUser(sub string, acr *string) *testenv.TokenUser {
	verified := true
	return &testenv.TokenUser{Sub: sub, Email: sub + "@example.com", Verified: &verified,
		Mutate: func(c map[string]any) {
			if *acr != "" {
				c["acr"] = *acr
			}
		}}
}

// TestACR_StepUp: a session signed in without one of the route's
// acr_values gets the RFC 9470 challenge naming them on an API request,
// and on a page load goes through the provider with acr_values, returning
// to the same URL with a new session that reaches the app; the rest of
// the site never asks.
func TestACR_StepUp(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: acrYAML, NoUpstream: true})
	b := e.NewBrowser()
	acr := "pwd"
	alice := acrUser("alice", &acr)
	if resp := b.Login(alice, "/reports"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
	}
	first := b.SessionCookie()

	api := b.Get("/admin/users", "Accept", "application/json")
	if api.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API request with acr pwd to a route asking mfa: status %d, want 401", api.StatusCode)
	}
	wa := api.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="insufficient_user_authentication"`) || !strings.Contains(wa, `acr_values="mfa hwk"`) {
		t.Errorf("WWW-Authenticate = %q, want Bearer error=\"insufficient_user_authentication\" with acr_values=\"mfa hwk\"", wa)
	}
	if strings.Contains(wa, "max_age") {
		t.Errorf("WWW-Authenticate = %q names max_age, which the route does not ask", wa)
	}

	upstreamBefore := len(e.Requests())
	acr = "mfa"
	e.IdP.QueueUser(alice)
	resp := b.Navigate("/admin/users?x=1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after step-up: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
	}
	az := authorizeHop(e, resp.Hops)
	if az == nil {
		t.Fatalf("a session without mfa reached /admin without the provider: hops %v", resp.Hops)
	}
	if q := az.Query(); q.Get("acr_values") != "mfa hwk" || q.Has("max_age") {
		t.Errorf("authorize URL acr_values=%q max_age=%q, want \"mfa hwk\" and none", q.Get("acr_values"), q.Get("max_age"))
	}
	if final := resp.Hops[len(resp.Hops)-1]; final != e.URL+"/admin/users?x=1" {
		t.Errorf("returned to %s, want the same URL", final)
	}
	if got := len(e.Requests()) - upstreamBefore; got != 1 {
		t.Errorf("upstream got %d requests during the step-up, want 1", got)
	}
	if b.SessionCookie() == first {
		t.Error("the step-up kept the old session cookie")
	}
	// Now the session has acr mfa: no more trips.
	if resp := b.Navigate("/admin/users"); resp.StatusCode != http.StatusOK || len(resp.Hops) != 1 {
		t.Errorf("session with acr mfa: status %d, hops %v", resp.StatusCode, resp.Hops)
	}
}

// TestACR_ProviderIgnoresACRValues: a provider that answers a step-up
// with another acr, or none, gets a refusal page: no session, one trip to
// the provider, nothing reaches the app.
func TestACR_ProviderIgnoresACRValues(t *testing.T) {
	for _, returned := range []string{"pwd", ""} {
		t.Run("acr "+returned, func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: acrYAML, NoUpstream: true})
			b := e.NewBrowser()
			acr := returned
			bob := acrUser("bob", &acr)
			if resp := b.Login(bob, "/reports"); resp.StatusCode != http.StatusOK {
				t.Fatalf("login: status %d", resp.StatusCode)
			}
			upstreamBefore := len(e.Requests())
			e.IdP.QueueUser(bob)
			resp := b.Navigate("/admin")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Body, "stronger sign-in") {
				t.Fatalf("provider ignoring acr_values: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
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
			if !strings.Contains(e.Logs.String(), "acr_not_met") {
				t.Errorf("the refusal was not logged with its code:\n%s", e.Logs.String())
			}
		})
	}
}
