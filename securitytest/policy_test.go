package securitytest

// policy_test.go: the catalogue rows of issue 12, who may pass and who
// may fill the session store.

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// openByDefaultPolicy: every way of writing "no policy" is refused with
// the YAML path, a policy with no rule lets nobody pass even if validation
// were bypassed, and "anyone" takes the explicit any_user: true.
func openByDefaultPolicy(t *testing.T) {
	const base = "external_url: https://app.example.com\nupstream: http://127.0.0.1:8080\n" +
		"oidc: {issuer: https://sso.example.com, client_id: c, client_secret: s}\n" +
		"cookie: {secret: " + "0123456789abcdef0123456789abcdef}\n"
	for _, tc := range []struct{ yaml, path string }{
		{"", "allow"},
		{"allow:\n", "allow"},
		{"allow: {}\n", "allow"},
		{"allow: {any_user: false}\n", "allow"},
		{"allow: {groups: []}\n", "allow.groups"},
		{"allow: {emails: []}\n", "allow.emails"},
		{"allow: {email_domains: []}\n", "allow.email_domains"},
		{"allow: {claims: {roles: []}}\n", "allow.claims.roles"},
		{"allow: {any_user: true, groups: [admins]}\n", "allow.any_user"},
		{"allow: {groups: [a]}\nroutes:\n  - match: {path_prefix: /x}\n    upstream: http://127.0.0.1:9000\n    allow: {}\n", "routes[0].allow"},
		{"allow: {groups: [a]}\nroutes:\n  - match: {path_prefix: /x}\n    upstream: http://127.0.0.1:9000\n    allow:\n", "routes[0].allow"},
	} {
		_, err := config.Parse([]byte(base+tc.yaml), func(string) (string, bool) { return "", false })
		var ce *config.Error
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Path != tc.path {
			t.Errorf("config with %q: err = %v, want one problem at %s", tc.yaml, err, tc.path)
		}
	}

	// Defence in depth: a policy that somehow has no rule allows nobody.
	someone := &sessions.Session{Subject: "x", Email: "x@example.com", EmailVerified: true, Groups: []string{"admins"}}
	if auth.NewPolicy(config.Allow{}).Allows(someone) {
		t.Error("a policy with no rule let a signed-in user pass")
	}
	if !auth.NewPolicy(config.Allow{AnyUser: true}).Allows(someone) {
		t.Error("any_user: true refused a signed-in user")
	}

	// End to end: an outsider passes only where any_user says so.
	for _, tc := range []struct {
		allow  string
		status int
	}{
		{"allow: {any_user: true}\n", http.StatusOK},
		{"allow: {groups: [staff]}\n", http.StatusForbidden},
	} {
		e := testenv.New(t, testenv.Options{YAML: tc.allow})
		r := e.NewBrowser().Login(testenv.User("outsider", "o@elsewhere.example"), "/")
		if r.StatusCode != tc.status {
			t.Errorf("%s: outsider got %d, want %d", strings.TrimSpace(tc.allow), r.StatusCode, tc.status)
		}
	}
}

// storeFloodingByOneUser: on an 8-session store, ten logins by a user
// whom no route allows create no session, and fifty logins by one allowed
// account end only that account's own oldest sessions; the other user
// stays signed in throughout.
func storeFloodingByOneUser(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  max_sessions: 8\n  max_per_user: 3\nallow:\n  groups: [staff]\n"})
	alice := browser(e)
	if r := alice.Login(testenv.User("alice", "alice@example.com", "staff"), "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("alice: %d", r.StatusCode)
	}
	for i := range 10 {
		r := browser(e).Login(testenv.User(fmt.Sprintf("mallory-%d", i), "m@evil.example"), "/")
		if r.StatusCode != http.StatusForbidden {
			t.Fatalf("refused login %d: %d, want 403", i, r.StatusCode)
		}
	}
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("after ten refused logins the store holds %d sessions, want 1 (alice's)", n)
	}
	for i := range 50 {
		if r := browser(e).Login(testenv.User("bob", "bob@example.com", "staff"), "/"); r.StatusCode != http.StatusOK {
			t.Fatalf("bob's login %d: %d", i, r.StatusCode)
		}
		e.Advance(1e9)
	}
	if n := e.Gateway.Store.Len(); n != 4 {
		t.Errorf("after bob's 50 logins the store holds %d sessions, want 4 (alice and bob's 3)", n)
	}
	if r := alice.Get("/"); r.StatusCode != http.StatusOK {
		t.Errorf("alice after the floods: %d, want 200", r.StatusCode)
	}
	if strings.Contains(e.Logs.String(), `"reason":"evicted"`) {
		t.Error("a session was evicted")
	}
}
