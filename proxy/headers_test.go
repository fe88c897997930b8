package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestHeaders_SpoofedIdentityReplaced(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "headers:\n  user: X-Remote-User\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com", "staff"), "/")

	spoofed := []string{
		"X-Remote-User", "x-remote-user", "X_Remote_User", "X-Remote_User",
		"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
		"X-Forwarded_Email", "x_forwarded_groups", "X-FORWARDED-EMAIL",
		"X-Auth-Request-User", "X-Auth_Request_User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
		"X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token", "X-Forwarded-Access-Token",
		"X-Gatehouse-Assertion", "X-Gatehouse-Anything",
	}
	for _, as := range []string{"signed in", "public: not signed in"} {
		t.Run(as, func(t *testing.T) {
			client, before := b, len(e.Requests())
			if as != "signed in" {
				client = e.NewBrowser()
			}
			req, _ := http.NewRequest(http.MethodGet, e.URL+"/spoof", nil)
			for _, h := range spoofed {
				// Set the raw key: Header.Set would canonicalise the name
				// and hide the case and underscore variants.
				req.Header[h] = []string{"evil", "evil2"}
			}
			// Hop-by-hop trick: ask the proxy to drop the headers it sets.
			req.Header.Set("Connection", "X-Remote-User, X-Forwarded-Email, X-Forwarded-Groups")
			req.Header.Set("Accept", "application/json")
			r := client.Do(req)
			if as != "signed in" {
				if r.StatusCode != http.StatusUnauthorized || len(e.Requests()) != before {
					t.Fatalf("spoofed headers without a session: status %d, upstream reached %d times", r.StatusCode, len(e.Requests())-before)
				}
				return
			}
			if r.StatusCode != http.StatusOK {
				t.Fatalf("status %d", r.StatusCode)
			}
			up := e.LastRequest()
			for name, vals := range up.Header {
				for _, v := range vals {
					if strings.Contains(v, "evil") {
						t.Errorf("upstream received client header %s: %q", name, v)
					}
				}
			}
			for name, want := range map[string]string{
				"X-Remote-User":      "alice",
				"X-Forwarded-Email":  "alice@example.com",
				"X-Forwarded-Groups": "staff",
			} {
				if got := up.Header.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("upstream %s = %q, want exactly [%q]", name, got, want)
				}
			}
		})
	}
}

func TestHeaders_ForwardedFromGatehouseOnly(t *testing.T) {
	// The test client is on loopback, which is trusted by default: trust
	// nobody, so it is an ordinary client.
	e := testenv.New(t, testenv.Options{YAML: "trusted_proxies: []\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "for=203.0.113.7;proto=https")
	b.Do(req)
	up := e.LastRequest()
	if got := up.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the peer only", got)
	}
	if got := up.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	if got := up.Header.Get("X-Forwarded-Host"); got != strings.TrimPrefix(e.URL, "http://") {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
	if got := up.Header.Get("Forwarded"); got != "" {
		t.Errorf("Forwarded = %q, want it removed", got)
	}
}

func TestHeaders_OwnCookiesNotForwarded(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	b.SetCookie("app_session", "keep-me")
	b.SetCookie("gatehouse_login", "stale")
	b.Get("/")
	got := e.LastRequest().Header.Get("Cookie")
	if got != "app_session=keep-me" {
		t.Errorf("upstream Cookie = %q, want only the app's own cookie", got)
	}
}

func TestHeaders_TrustedProxyChainExtended(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "trusted_proxies: [127.0.0.1]\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7, 198.51.100.2")
	req.Header.Set("X-Forwarded-Port", "443")
	b.Do(req)
	up := e.LastRequest()
	if got := up.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "203.0.113.7, 198.51.100.2, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the trusted chain plus the peer", got)
	}
	if got := up.Header.Get("X-Forwarded-Port"); got != "" {
		t.Errorf("X-Forwarded-Port = %q: only For is kept from a trusted proxy", got)
	}
}
