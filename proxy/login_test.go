package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestLogin_RoundTripToDeepLink(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	alice := testenv.User("alice-sub", "alice@example.com", "admins", "staff")

	resp := b.Login(alice, "/reports/2026?q=a%20b&sort=desc")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d after login, want 200; hops %v\nbody %s", resp.StatusCode, resp.Hops, resp.Body)
	}
	// start → IdP → callback → deep link → upstream
	final := resp.Hops[len(resp.Hops)-1]
	if want := e.URL + "/reports/2026?q=a%20b&sort=desc"; final != want {
		t.Errorf("landed on %s, want %s (hops %v)", final, want, resp.Hops)
	}
	up := e.LastRequest()
	if got := up.URL.RequestURI(); got != "/reports/2026?q=a%20b&sort=desc" {
		t.Errorf("upstream saw %q", got)
	}
	for name, want := range map[string]string{
		"X-Forwarded-User":               "alice-sub",
		"X-Forwarded-Email":              "alice@example.com",
		"X-Forwarded-Groups":             "admins,staff",
		"X-Forwarded-Preferred-Username": "alice",
		"X-Forwarded-Proto":              "http",
	} {
		if got := up.Header.Get(name); got != want {
			t.Errorf("upstream header %s = %q, want %q", name, got, want)
		}
	}
	if c := up.Header.Get("Cookie"); strings.Contains(c, "gatehouse") {
		t.Errorf("upstream saw gatehouse's cookie: %q", c)
	}
	// The hops went through the provider with PKCE S256, state and nonce.
	var authorize *url.URL
	for _, h := range resp.Hops {
		if strings.HasPrefix(h, e.IdP.AuthorizationEndpoint()) {
			authorize, _ = url.Parse(h)
		}
	}
	if authorize == nil {
		t.Fatalf("login never reached the provider: %v", resp.Hops)
	}
	q := authorize.Query()
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(p)) < 43 {
			t.Errorf("authorize %s = %q, want ≥ 256 bits", p, q.Get(p))
		}
	}
	if q.Get("code_challenge_method") != "S256" {
		t.Errorf("code_challenge_method = %q, want S256", q.Get("code_challenge_method"))
	}
	if q.Get("redirect_uri") != e.URL+"/_gatehouse/callback" {
		t.Errorf("redirect_uri = %q", q.Get("redirect_uri"))
	}
}
