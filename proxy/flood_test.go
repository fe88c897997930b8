package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestSession_RefusedUserGetsNoSession: a user whom no route allows gets
// the 403 page at the callback, and no session: ten such logins on an
// 8-session store leave the allowed user signed in (issue 12).
func TestSession_RefusedUserGetsNoSession(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  max_sessions: 8\n" +
		"allow:\n  groups: [staff]\n" +
		"routes:\n  - match: {path_prefix: /admin}\n    upstream: ${UPSTREAM}\n    allow: {groups: [admins]}\n" +
		"  - match: {path_prefix: /pub}\n    upstream: ${UPSTREAM}\n    public: [/pub]\n"})
	alice := e.NewBrowser()
	if r := alice.Login(testenv.User("alice", "alice@example.com", "staff"), "/"); r.StatusCode != http.StatusOK {
		t.Fatalf("alice: status %d, want 200", r.StatusCode)
	}
	// Allowed by one route only: still a session.
	admin := e.NewBrowser()
	if r := admin.Login(testenv.User("root", "root@example.com", "admins"), "/admin/x"); r.StatusCode != http.StatusOK {
		t.Fatalf("an admin: status %d, want 200", r.StatusCode)
	}
	for i := range 10 {
		b := e.NewBrowser()
		r := b.Login(testenv.User(fmt.Sprintf("mallory-%d", i), "mallory@evil.example"), "/")
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.Body, "You do not have access") {
			t.Fatalf("refused login %d: status %d, want the 403 page\n%s", i, r.StatusCode, r.Body)
		}
		if b.SessionCookie() != "" {
			t.Errorf("refused login %d got a session cookie", i)
		}
	}
	if n := e.Gateway.Store.Len(); n != 2 {
		t.Errorf("store holds %d sessions, want 2 (alice and the admin)", n)
	}
	if r := alice.Get("/"); r.StatusCode != http.StatusOK {
		t.Errorf("alice after the refused logins: status %d, want 200", r.StatusCode)
	}
	logs := e.Logs.String()
	if !strings.Contains(logs, `"event":"login_denied"`) || !strings.Contains(logs, `"sub":"mallory-9"`) {
		t.Error("no login_denied audit event naming the refused user")
	}
}

// TestSession_OneUserCannotFloodTheStore: one allowed account logging in
// again and again on a small store ends its own oldest sessions
// (max_per_user), never another user's.
func TestSession_OneUserCannotFloodTheStore(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  max_sessions: 8\n  max_per_user: 3\n"})
	alice := e.NewBrowser()
	alice.Login(testenv.User("alice", "alice@example.com"), "/")
	var bobs []*testenv.Browser
	for range 20 {
		b := e.NewBrowser()
		if r := b.Login(testenv.User("bob", "bob@example.com"), "/"); r.StatusCode != http.StatusOK {
			t.Fatalf("bob: status %d", r.StatusCode)
		}
		bobs = append(bobs, b)
		e.Advance(1e9)
	}
	wantUpstream(t, alice, "/")
	for i, b := range bobs {
		if i < len(bobs)-3 {
			wantLogin(t, b, "/") // ended for max_per_user
		} else {
			wantUpstream(t, b, "/")
		}
	}
	if n := e.Gateway.Store.Len(); n != 4 {
		t.Errorf("store holds %d sessions, want 4", n)
	}
	logs := e.Logs.String()
	if strings.Contains(logs, `"reason":"evicted"`) || !strings.Contains(logs, `"reason":"max_per_user"`) {
		t.Error("want max_per_user session ends and no eviction")
	}
}
