package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// logLines parses a JSON log into its lines.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// findLog returns the first log line whose fields equal want's.
func findLog(t *testing.T, logs string, want map[string]string) map[string]any {
	t.Helper()
next:
	for _, m := range logLines(t, logs) {
		for k, v := range want {
			if s, _ := m[k].(string); s != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// assertMisconfigured checks the page of an operator's mistake: a 500
// that says the service is misconfigured and that the user cannot fix it,
// with a request ID and no way to loop through the login; and the ERROR
// line naming the configuration key. None of secrets is on the page or in
// the log.
func assertMisconfigured(t *testing.T, e *testenv.Env, r *testenv.Response, key string, secrets ...string) {
	t.Helper()
	if r.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500; body %.600s", r.StatusCode, r.Body)
	}
	for _, want := range []string{"Sign-in is misconfigured", "not something you can fix", "tell your administrator", `id="request-id"`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("page lacks %q: %.800s", want, r.Body)
		}
	}
	for _, bad := range []string{"/_gatehouse/start", "may have expired", "Start the sign-in again"} {
		if strings.Contains(r.Body, bad) {
			t.Errorf("page of a misconfiguration offers %q, which only loops: %.800s", bad, r.Body)
		}
	}
	logs := e.Logs.String()
	line := findLog(t, logs, map[string]string{"level": "ERROR", "event": "login_failure", "reason": "misconfigured", "key": key})
	if line == nil {
		t.Errorf("no ERROR login_failure line with reason misconfigured and key %s; log:\n%s", key, logs)
	} else if fix, _ := line["fix"].(string); !strings.Contains(fix, key) {
		t.Errorf("fix %q does not name %s", fix, key)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) || strings.Contains(r.Body, s) {
			t.Errorf("secret %q is in the log or on the page", s)
		}
	}
}

// noErrorLogged checks that a user's mistake is not logged as an
// operator's.
func noErrorLogged(t *testing.T, e *testenv.Env) {
	t.Helper()
	if l := findLog(t, e.Logs.String(), map[string]string{"level": "ERROR"}); l != nil {
		t.Errorf("a user's mistake logged at ERROR: %v", l)
	}
	if strings.Contains(e.Logs.String(), `"reason":"misconfigured"`) {
		t.Error("a user's mistake logged as misconfigured")
	}
}

func TestLogin_OperatorMistakesSayMisconfigured(t *testing.T) {
	alice := func() mockoidc.User { return testenv.User("alice", "alice@example.com") }
	t.Run("wrong client secret, refused by the provider", func(t *testing.T) {
		const wrong = "wrong-client-secret-4f9c2a"
		e := testenv.New(t, testenv.Options{ClientSecret: wrong})
		r := e.NewBrowser().Login(alice(), "/")
		// mockoidc answers invalid_client, 401, with the secret it got in
		// error_description: it must reach neither the log nor the page.
		assertMisconfigured(t, e, r, "oidc.client_secret", wrong, e.IdP.ClientSecret, "Invalid client secret")
		if e.Gateway.Store.Len() != 0 {
			t.Error("a session was created")
		}
	})
	t.Run("wrong client secret, API client gets JSON", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{ClientSecret: "wrong-secret-json"})
		b := e.NewBrowser()
		loc, _ := url.Parse(b.Get("/_gatehouse/start?rd=/").Header.Get("Location"))
		e.IdP.QueueUser(alice())
		cb := b.Get(e.IdP.AuthorizationEndpoint() + "?" + loc.Query().Encode()).Header.Get("Location")
		r := b.Get(cb, "Accept", "application/json")
		if r.StatusCode != 500 || !strings.Contains(r.Body, `"error":"misconfigured"`) || strings.Contains(r.Body, "wrong-secret-json") {
			t.Errorf("status %d body %s", r.StatusCode, r.Body)
		}
	})
	for _, tc := range []struct {
		name, key string
		status    int
		body      string
	}{
		{"401 without an error code", "oidc.client_secret", 401, `{}`},
		{"invalid_client with HTTP Basic", "oidc.client_secret", 401, `{"error":"invalid_client","error_description":"Client authentication failed"}`},
		{"unauthorized_client", "oidc.client_id", 400, `{"error":"unauthorized_client","error_description":"Client not allowed the authorization_code grant"}`},
		{"invalid_request about the redirect URI", "external_url", 400, `{"error":"invalid_request","error_description":"Invalid parameter: redirect_uri"}`},
		{"invalid_request about client authentication", "oidc.client_secret", 400, `{"error":"invalid_request","error_description":"Missing client authentication (client_secret_basic expected)"}`},
		{"invalid_scope", "oidc.scopes", 400, `{"error":"invalid_scope"}`},
	} {
		t.Run("token endpoint: "+tc.name, func(t *testing.T) {
			e := testenv.New(t, testenv.Options{IdPMiddleware: testenv.AnswerToken(tc.status, tc.body)})
			r := e.NewBrowser().Login(alice(), "/")
			assertMisconfigured(t, e, r, tc.key, e.IdP.ClientSecret)
		})
	}
	for _, tc := range []struct {
		name, key string
		mutate    func(c map[string]any)
	}{
		{"ID token for another client", "oidc.client_id", func(c map[string]any) { c["aud"] = []string{"someone-else"} }},
		{"ID token from another issuer", "oidc.issuer", func(c map[string]any) { c["iss"] = "https://elsewhere.example" }},
		{"ID token issuer with a trailing slash", "oidc.issuer", func(c map[string]any) { c["iss"] = c["iss"].(string) + "/" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			r := e.NewBrowser().Login(&testenv.TokenUser{Sub: "u", Email: "u@example.com", Mutate: tc.mutate}, "/")
			assertMisconfigured(t, e, r, tc.key, e.IdP.ClientSecret)
		})
	}
	t.Run("discovery names another issuer", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{Issuer: func(iss string) string { return iss + "/" }})
		r := e.NewBrowser().Navigate("/")
		assertMisconfigured(t, e, r, "oidc.issuer", e.IdP.ClientSecret)
		// Again, within the retry interval: the same page, not
		// "unavailable, wait".
		r = e.NewBrowser().Navigate("/")
		if r.StatusCode != 500 || !strings.Contains(r.Body, "misconfigured") {
			t.Errorf("second attempt: status %d body %.400s", r.StatusCode, r.Body)
		}
	})
	t.Run("provider refuses the client at the authorization endpoint", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{})
		b := e.NewBrowser()
		loc, _ := url.Parse(b.Get("/_gatehouse/start?rd=/").Header.Get("Location"))
		r := b.Get("/_gatehouse/callback?error=unauthorized_client&state="+loc.Query().Get("state"), "Accept", "text/html")
		assertMisconfigured(t, e, r, "oidc.client_id")
	})
	t.Run("an error sent to the callback by anyone is not trusted", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{})
		r := e.NewBrowser().Get("/_gatehouse/callback?error=unauthorized_client&state=forged", "Accept", "text/html")
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", r.StatusCode)
		}
		noErrorLogged(t, e)
	})
}

func TestLogin_UserMistakesSayWhatToDo(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	startState := func(b *testenv.Browser) string {
		loc, _ := url.Parse(b.Get("/_gatehouse/start?rd=/").Header.Get("Location"))
		return loc.Query().Get("state")
	}
	t.Run("code already used (invalid_grant, 401 at mockoidc)", func(t *testing.T) {
		b := e.NewBrowser()
		loc, _ := url.Parse(b.Get("/_gatehouse/start?rd=/").Header.Get("Location"))
		e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
		cb := b.Get(e.IdP.AuthorizationEndpoint() + "?" + loc.Query().Encode()).Header.Get("Location")
		if r := b.Get(cb); r.StatusCode != http.StatusFound {
			t.Fatalf("first use: %d", r.StatusCode)
		}
		code, _ := url.Parse(cb)
		fresh := e.NewBrowser()
		r := fresh.Get("/_gatehouse/callback?code="+url.QueryEscape(code.Query().Get("code"))+"&state="+startState(fresh), "Accept", "text/html")
		assertPage(t, e, r, http.StatusBadRequest, "code_rejected", "Sign-in could not be completed")
		if !strings.Contains(r.Body, "Start the sign-in again") {
			t.Errorf("page does not say what to do: %s", r.Body)
		}
	})
	for _, tc := range []struct {
		name, errorCode string
		status          int
		title, says     string
	}{
		{"denied at the provider", "access_denied", http.StatusForbidden, "Sign-in cancelled", "ask your administrator to give your account access"},
		{"provider wants an interactive sign-in", "login_required", http.StatusBadRequest, "Sign in again", "Start the sign-in again"},
		{"provider down", "temporarily_unavailable", http.StatusServiceUnavailable, "unavailable", "Wait a moment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.NewBrowser()
			r := b.Get("/_gatehouse/callback?error="+tc.errorCode+"&state="+startState(b), "Accept", "text/html")
			assertPage(t, e, r, tc.status, "idp_error", tc.title)
			if !strings.Contains(r.Body, tc.says) {
				t.Errorf("page does not say %q: %s", tc.says, r.Body)
			}
		})
	}
	noErrorLogged(t, e)
}

// hostileGroups are a user's groups as a provider might send them: one
// with markup, one very long, and more than a page shows.
func hostileGroups() []string {
	groups := []string{"staff", "<script>alert(1)</script>", strings.Repeat("long-", 60)}
	for i := range 30 {
		groups = append(groups, "team-"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
	}
	return groups
}

// assertIdentityShown checks that a 403 page shows the user's identity as
// gatehouse saw it, bounded and escaped.
func assertIdentityShown(t *testing.T, r *testenv.Response, email string, groups []string) {
	t.Helper()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403; body %.600s", r.StatusCode, r.Body)
	}
	for _, want := range []string{`id="identity-groups"`, email, "<code>staff</code>", "&lt;script&gt;alert(1)&lt;/script&gt;",
		"and " + strconv.Itoa(len(groups)-20) + " more", "long-long-"} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("403 page lacks %q: %s", want, r.Body)
		}
	}
	if strings.Contains(r.Body, "<script>") {
		t.Error("a group name reached the page unescaped")
	}
	if strings.Contains(r.Body, groups[2]) {
		t.Error("a 300-byte group name was shown whole")
	}
	if strings.Contains(r.Body, groups[len(groups)-1]) {
		t.Error("more than 20 groups were listed")
	}
}

func TestForbidden_ShowsIdentityAndLogsRule(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: `routes:
  - name: admin
    match: {path_prefix: /admin}
    upstream: ${UPSTREAM}
    allow: {groups: [admins], email_domains: [corp.example]}
`})
	groups := hostileGroups()
	b := e.NewBrowser()
	if r := b.Login(testenv.User("bob", "bob@example.com", groups...), "/"); r.StatusCode != 200 {
		t.Fatalf("login: %d", r.StatusCode)
	}
	r := b.Navigate("/admin/users")
	assertIdentityShown(t, r, "bob@example.com", groups)
	if !strings.Contains(r.Body, "Sign out") {
		t.Error("403 page lost its sign-out button")
	}

	line := findLog(t, e.Logs.String(), map[string]string{"event": "denied", "route": "admin"})
	if line == nil {
		t.Fatalf("no denied line for route admin; log:\n%s", e.Logs.String())
	}
	rule, _ := line["rule"].(string)
	for _, want := range []string{"groups [admins]", "email_domains [corp.example]", `"example.com"`} {
		if !strings.Contains(rule, want) {
			t.Errorf("rule %q lacks %q", rule, want)
		}
	}
	if d, _ := line["email_domain"].(string); d != "example.com" {
		t.Errorf("email_domain = %q", d)
	}
	logged, _ := line["groups"].([]any)
	if len(logged) != 20 || logged[0] != "staff" || line["groups_not_shown"] != float64(len(groups)-20) {
		t.Errorf("groups logged: %d %v, not shown %v", len(logged), logged, line["groups_not_shown"])
	}

	t.Run("API client gets the same facts as JSON, no tokens", func(t *testing.T) {
		r := b.Get("/admin/users", "Accept", "application/json")
		var body struct {
			Error    string `json:"error"`
			Identity struct {
				User       string   `json:"user"`
				Email      string   `json:"email"`
				Groups     []string `json:"groups"`
				MoreGroups int      `json:"more_groups"`
			} `json:"identity"`
		}
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil || r.StatusCode != 403 {
			t.Fatalf("status %d body %s (%v)", r.StatusCode, r.Body, err)
		}
		id := body.Identity
		if body.Error != "forbidden" || id.Email != "bob@example.com" || len(id.Groups) != 20 || id.Groups[1] != "<script>alert(1)</script>" || id.MoreGroups != len(groups)-20 {
			t.Errorf("JSON 403: %+v", body)
		}
		if strings.Contains(r.Body, "eyJ") || strings.Contains(r.Body, b.SessionCookie()) {
			t.Error("JSON 403 carries a token or the session cookie")
		}
	})
}

func TestLoginDenied_ShowsIdentity(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	groups := hostileGroups()
	r := e.NewBrowser().Login(testenv.User("carol", "carol@other.org", groups...), "/")
	assertIdentityShown(t, r, "carol@other.org", groups)
	if !strings.Contains(r.Body, "no session was started") {
		t.Errorf("not the login-denied page: %s", r.Body)
	}
}

func TestForbidden_ForwardAuthShowsIdentityAndLogsRule(t *testing.T) {
	e, staff, _ := forwardAuthEnv(t, "traefik", "")
	r := staff.Get("/_gatehouse/auth", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/admin/x", "Accept", "application/json")
	var body struct {
		Identity struct {
			Email  string   `json:"email"`
			Groups []string `json:"groups"`
		} `json:"identity"`
	}
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || r.StatusCode != 403 ||
		body.Identity.Email != "bob@example.com" || len(body.Identity.Groups) != 1 || body.Identity.Groups[0] != "staff" {
		t.Errorf("status %d body %s (%v)", r.StatusCode, r.Body, err)
	}
	line := findLog(t, e.Logs.String(), map[string]string{"event": "denied", "route": "wiki-admin", "via": "forward-auth"})
	if rule, _ := line["rule"].(string); line == nil || !strings.Contains(rule, "groups [admins]: the user's groups (1) include none of them") {
		t.Errorf("denied line %v", line)
	}
}
