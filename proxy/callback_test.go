package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestCallback_OpenRedirectPayloadsLandOnRoot runs the real login with a
// hostile rd and checks where the browser ends up.
func TestCallback_OpenRedirectPayloadsLandOnRoot(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	payloads := []string{
		"//evil.com", "///evil.com", "/\\evil.com", "/\t/evil.com", "/%09/evil.com",
		"%2F%2Fevil.com", "/%2F/evil.com", "/%5Cevil.com", "https://evil.com", "https:evil.com",
		"http:/\\evil.com", "HTTPS://evil.com", "//evil.com/%2f..", "/./\\evil.com",
		"/../evil.com", "javascript:alert(1)", "data:text/html,x", e.URL + "@evil.com",
		"http://127.0.0.1.evil.com/", strings.Replace(e.URL, "127.0.0.1", "localhost", 1) + "/x",
		"/\r\n/evil.com", "/〱evil.com", "https://evil.com#" + e.URL, "\\\\evil.com",
	}
	for _, rd := range payloads {
		t.Run(rd, func(t *testing.T) {
			b := e.NewBrowser()
			resp := b.Login(testenv.User("alice", "alice@example.com"), "/_gatehouse/start?rd="+url.QueryEscape(rd))
			final := resp.Hops[len(resp.Hops)-1]
			if final != e.URL+"/" || resp.StatusCode != http.StatusOK {
				t.Errorf("rd=%q landed on %s (status %d), want %s/", rd, final, resp.StatusCode, e.URL)
			}
		})
	}
}

func TestCallback_Refusals(t *testing.T) {
	e := testenv.New(t, testenv.Options{})

	// startLogin goes as far as the provider's authorize URL and returns
	// its query (state, nonce...), without completing the login.
	startLogin := func(b *testenv.Browser) url.Values {
		t.Helper()
		r := b.Get("/_gatehouse/start?rd=/x")
		loc, err := url.Parse(r.Header.Get("Location"))
		if r.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("start: %d %q", r.StatusCode, r.Header.Get("Location"))
		}
		return loc.Query()
	}
	// authorize lets the provider issue a code for the query and returns
	// the callback URL it redirects to.
	authorize := func(q url.Values) string {
		t.Helper()
		e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
		b := e.NewBrowser()
		r := b.Get(e.IdP.AuthorizationEndpoint() + "?" + q.Encode())
		if r.StatusCode != http.StatusFound {
			t.Fatalf("authorize: %d %s", r.StatusCode, r.Body)
		}
		return r.Header.Get("Location")
	}

	t.Run("foreign state", func(t *testing.T) {
		victim, attacker := e.NewBrowser(), e.NewBrowser()
		startLogin(victim)
		q := startLogin(attacker)
		// The attacker's own callback URL, replayed in the victim's
		// browser (login CSRF): the victim's cookie has other states.
		r := victim.Get(authorize(q), "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "state_mismatch", "Sign-in link already used or not yours")
	})
	t.Run("no login cookie", func(t *testing.T) {
		q := startLogin(e.NewBrowser())
		r := e.NewBrowser().Get(authorize(q), "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "no_login_cookie", "Sign-in expired")
	})
	t.Run("state replayed", func(t *testing.T) {
		b := e.NewBrowser()
		cb := authorize(startLogin(b))
		if r := b.Get(cb); r.StatusCode != http.StatusFound {
			t.Fatalf("first callback: %d %s", r.StatusCode, r.Body)
		}
		r := b.Get(cb, "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "state_mismatch", "")
	})
	t.Run("expired login", func(t *testing.T) {
		b := e.NewBrowser()
		cb := authorize(startLogin(b))
		e.Advance(11 * time.Minute)
		r := b.Get(cb, "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "login_expired", "Sign-in expired")
	})
	t.Run("provider says access_denied", func(t *testing.T) {
		b := e.NewBrowser()
		q := startLogin(b)
		r := b.Get("/_gatehouse/callback?error=access_denied&error_description=%3Cscript%3E&state="+q.Get("state"), "Accept", "text/html")
		assertPage(t, e, r, http.StatusForbidden, "idp_error", "Sign-in cancelled")
		if strings.Contains(r.Body, "<script>") {
			t.Error("error_description echoed into the page")
		}
	})
	t.Run("provider error code not shown raw", func(t *testing.T) {
		r := e.NewBrowser().Get("/_gatehouse/callback?error=%3Cb%3Ehi&state=x", "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "idp_error", "")
		if strings.Contains(r.Body, "<b>hi") {
			t.Error("error code echoed raw")
		}
	})
	t.Run("missing code", func(t *testing.T) {
		r := e.NewBrowser().Get("/_gatehouse/callback?state=x", "Accept", "application/json")
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, `"error":"bad_callback"`) {
			t.Errorf("status %d body %s", r.StatusCode, r.Body)
		}
	})
	t.Run("code rejected by the provider", func(t *testing.T) {
		b := e.NewBrowser()
		q := startLogin(b)
		r := b.Get("/_gatehouse/callback?code=made-up&state="+q.Get("state"), "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "code_rejected", "")
	})
	if n := e.Gateway.Store.Len(); n != 1 { // only "state replayed" logged in
		t.Errorf("store holds %d sessions, want 1", n)
	}
}

// assertPage checks an error page: status, a request ID, the title, and
// the reason in the log; never a stack trace or Go error text.
func assertPage(t *testing.T, e *testenv.Env, r *testenv.Response, status int, code, title string) {
	t.Helper()
	if r.StatusCode != status {
		t.Errorf("status %d, want %d; body %s", r.StatusCode, status, r.Body)
	}
	if !strings.Contains(r.Body, `id="request-id"`) {
		t.Errorf("page has no request ID: %s", r.Body)
	}
	if title != "" && !strings.Contains(r.Body, title) {
		t.Errorf("page lacks %q: %s", title, r.Body)
	}
	if !strings.Contains(r.Body, "/_gatehouse/start?rd=") {
		t.Errorf("page has no way to try again: %s", r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.Header.Get("Cache-Control"))
	}
	if !strings.Contains(e.Logs.String(), `"reason":"`+code+`"`) {
		t.Errorf("log has no line with reason %q", code)
	}
}

func TestCallback_IDTokenChecks(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	yes, no := true, false
	for _, tc := range []struct {
		name   string
		user   mockoidc.User
		status int
		code   string
		log    string
	}{
		{"valid", &testenv.TokenUser{Sub: "u1", Email: "u1@example.com", Verified: &yes}, 200, "", ""},
		{"wrong nonce", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["nonce"] = "other" }}, 400, "id_token_invalid", "nonce does not match"},
		{"no nonce", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { delete(c, "nonce") }}, 400, "id_token_invalid", "nonce does not match"},
		{"wrong audience", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["aud"] = []string{"someone-else"} }}, 500, "misconfigured", "expected audience"},
		{"wrong issuer", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["iss"] = "https://evil.example" }}, 500, "misconfigured", "issued by a different provider"},
		{"azp of another client", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["azp"] = "other-client" }}, 400, "id_token_invalid", "azp"},
		{"several audiences, no azp", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["aud"] = []any{c["aud"].([]any)[0], "other"} }}, 400, "id_token_invalid", "several audiences"},
		{"expired", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }}, 400, "id_token_invalid", "expired"},
		{"iat in the future", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }}, 400, "id_token_invalid", "in the future"},
		{"iat missing", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { delete(c, "iat") }}, 400, "id_token_invalid", "no iat"},
		{"sub missing", &testenv.TokenUser{Sub: "u", Mutate: func(c map[string]any) { delete(c, "sub") }}, 400, "id_token_invalid", "no sub"},
		{"email not verified", &testenv.TokenUser{Sub: "u", Email: "u@example.com", Verified: &no}, 403, "email_unverified", "email_verified is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.NewBrowser()
			r := b.Login(tc.user, "/")
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.StatusCode, tc.status, r.Body)
			}
			if tc.status == 200 {
				return
			}
			if !strings.Contains(e.Logs.String(), tc.log) {
				t.Errorf("log lacks %q", tc.log)
			}
			if b.SessionCookie() != "" {
				t.Error("a refused login left a session cookie")
			}
		})
	}
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("store holds %d sessions, want only the valid login's", n)
	}
}

func TestCallback_EmailWithoutVerifiedClaimIsNotTrusted(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "allow:\n  emails: [u@example.com]\n"})
	b := e.NewBrowser()
	r := b.Login(&testenv.TokenUser{Sub: "u", Email: "u@example.com"}, "/")
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403: an email the provider did not verify must not pass an email rule", r.StatusCode)
	}
}

func TestCallback_ProviderDown(t *testing.T) {
	t.Run("before discovery", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{})
		_ = e.IdP.Shutdown()
		r := e.NewBrowser().Navigate("/private")
		assertPage(t, e, r, http.StatusServiceUnavailable, "idp_unavailable", "The sign-in service is unavailable")
		if ready := e.NewBrowser().Get("/_gatehouse/readyz"); ready.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("readyz: %d, want 503", ready.StatusCode)
		}
	})
	t.Run("at code exchange", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{})
		signedIn := e.NewBrowser()
		signedIn.Login(testenv.User("alice", "alice@example.com"), "/")

		b := e.NewBrowser()
		start := b.Get("/_gatehouse/start?rd=/x")
		e.IdP.QueueUser(testenv.User("bob", "bob@example.com"))
		cb := e.NewBrowser().Get(start.Header.Get("Location")).Header.Get("Location")
		_ = e.IdP.Shutdown()
		r := b.Get(cb, "Accept", "text/html")
		assertPage(t, e, r, http.StatusServiceUnavailable, "idp_unavailable", "The sign-in service is unavailable")
		// Sessions made before the outage are unaffected.
		wantUpstream(t, signedIn, "/")
		if ready := b.Get("/_gatehouse/readyz"); ready.StatusCode != http.StatusOK {
			t.Errorf("readyz: %d, want 200 (discovery stays loaded)", ready.StatusCode)
		}
	})
}
