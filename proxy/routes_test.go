package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const routesYAML = `routes:
  - name: wiki
    match: {host: wiki.example.com}
    upstream: ${UPSTREAM}
    public: [/static, /healthz]
    allow: {groups: [wiki-users]}
    extra_headers: {X-Route: wiki}
  - name: wiki-admin
    match: {host: wiki.example.com, path_prefix: /admin}
    upstream: ${UPSTREAM}
    allow: {groups: [admins]}
    extra_headers: {X-Route: wiki-admin}
  - name: apps
    match: {host: "*.apps.example.com"}
    upstream: ${UPSTREAM}
    allow: {claims: {realm_access.roles: [app-user]}}
    pass_access_token: true
    extra_headers: {X-Route: apps}
  - name: eu-apps
    match: {host: "*.eu.apps.example.com"}
    upstream: ${UPSTREAM}
    allow: {any_user: true}
    extra_headers: {X-Route: eu-apps}
  - name: api
    match: {path_prefix: /api}
    upstream: ${UPSTREAM}
    extra_headers: {X-Route: api}
allow:
  email_domains: [example.com]
`

func TestRoutes_PolicyTable(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: routesYAML})
	roles := func(rs ...string) func(map[string]any) {
		return func(c map[string]any) { c["realm_access"] = map[string]any{"roles": rs} }
	}
	users := map[string]*testenv.TokenUser{
		"admin": {Sub: "admin", Email: "admin@example.com", Verified: ptr(true), Groups: []string{"wiki-users", "admins"}},
		"reader": {Sub: "reader", Email: "reader@example.com", Verified: ptr(true), Groups: []string{"wiki-users"},
			Mutate: roles("app-user")},
		"outsider": {Sub: "outsider", Email: "o@other.org", Verified: ptr(true), Groups: []string{"guests"}},
	}
	browsers := map[string]*testenv.Browser{"anonymous": e.NewBrowser()}
	for name, u := range users {
		b := e.NewBrowser()
		b.Login(u, "/_gatehouse/start?rd=/")
		browsers[name] = b
	}
	for _, tc := range []struct {
		who, host, path, accept string
		status                  int
		route                   string // X-Route the upstream saw
	}{
		// Host and path specificity.
		{"admin", "wiki.example.com", "/page", "", 200, "wiki"},
		{"admin", "wiki.example.com", "/admin/users", "", 200, "wiki-admin"},
		{"admin", "WIKI.example.com:443", "/ADMIN", "", 200, "wiki-admin"},
		{"admin", "wiki.example.com", "/administrator", "", 200, "wiki"},
		{"reader", "wiki.example.com", "/page", "", 200, "wiki"},
		{"reader", "wiki.example.com", "/admin", "", 403, ""},
		{"reader", "wiki.example.com", "/Admin/x", "", 403, ""},
		{"outsider", "wiki.example.com", "/page", "", 403, ""},
		// Wildcards: the longest suffix wins, any depth.
		{"reader", "crm.apps.example.com", "/", "", 200, "apps"},
		{"reader", "a.b.apps.example.com", "/", "", 200, "apps"},
		{"admin", "crm.apps.example.com", "/", "", 403, ""}, // no app-user role
		{"outsider", "x.eu.apps.example.com", "/", "", 200, "eu-apps"},
		// Any host, path prefix; route without allow inherits the top level.
		{"admin", "other.example.org", "/api/v1", "", 200, "api"},
		{"outsider", "other.example.org", "/api/v1", "", 403, ""},
		// Public paths: no session needed, case-sensitive, on segments.
		{"anonymous", "wiki.example.com", "/static/app.css", "", 200, "wiki"},
		{"anonymous", "wiki.example.com", "/healthz", "", 200, "wiki"},
		{"anonymous", "wiki.example.com", "/STATIC/app.css", "application/json", 401, ""},
		{"anonymous", "wiki.example.com", "/statics", "application/json", 401, ""},
		// 401 vs 302.
		{"anonymous", "wiki.example.com", "/page", "application/json", 401, ""},
		{"anonymous", "wiki.example.com", "/page", "text/html", 302, ""},
		// No route.
		{"admin", "unknown.example.org", "/page", "", 404, ""},
	} {
		t.Run(tc.who+" "+tc.host+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.URL+tc.path, nil)
			req.Host = tc.host
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			before := len(e.Requests())
			r := browsers[tc.who].Do(req)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %.200s", r.StatusCode, tc.status, r.Body)
			}
			if tc.route == "" {
				if len(e.Requests()) != before {
					t.Fatal("the upstream was reached")
				}
				return
			}
			up := e.LastRequest()
			if got := up.Header.Get("X-Route"); got != tc.route {
				t.Errorf("route %q, want %q", got, tc.route)
			}
			if tc.who == "anonymous" && up.Header.Get("X-Forwarded-User") != "" {
				t.Error("public path got identity headers")
			}
			if tc.route == "apps" && up.Header.Get("X-Forwarded-Access-Token") == "" {
				t.Error("pass_access_token route got no access token")
			}
			if tc.route != "apps" && up.Header.Get("X-Forwarded-Access-Token") != "" {
				t.Error("a route without pass_access_token got the access token")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestRoutes_PathBypasses: paths that try to reach a protected route
// through a public one never reach the upstream without a session, and
// whatever is served is served for the path gatehouse decided on.
func TestRoutes_PathBypasses(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: `routes:
  - name: site
    match: {path_prefix: /}
    upstream: ${UPSTREAM}
    public: [/public]
`, NoUpstream: true})
	for _, tc := range []struct {
		raw    string
		status int    // without a session
		served string // path the upstream sees when it is reached
	}{
		{"/public/x", 200, "/public/x"},
		{"//public", 200, "/public"},
		{"/public/./x", 200, "/public/x"},
		{"/public/../admin", 401, ""},
		{"/public/%2e%2e/admin", 401, ""},
		{"/public/%2E%2E/%2e%2e/admin", 401, ""},
		{"/PUBLIC/x", 401, ""},
		{"/Public/x", 401, ""},
		{"/publicx", 401, ""},
		{"/public%2fadmin", 400, ""},
		{"/public%2Fadmin", 400, ""},
		{"/public%5cadmin", 400, ""},
		{"/public/..;/admin", 400, ""},
		{"/public/..%3B/admin", 400, ""},
		{"/public%00/admin", 400, ""},
		{"///public/../admin", 401, ""},
		{"/public/x/../../admin", 401, ""},
		{"/admin/../public/x", 200, "/public/x"},
		{"/public/%23/../admin", 200, "/public/admin"}, // "#" is a segment; .. removes it
		{"/public#/../admin", 401, ""},                 // a raw # in a request line is path, not fragment
	} {
		t.Run(tc.raw, func(t *testing.T) {
			wantRaw(t, e, tc.raw, tc.status, tc.served, func(r *http.Request) string { return r.URL.Path })
		})
	}
}

// wantRaw sends the request line raw without a session and wants status,
// and the upstream reached exactly when served is set, with seen(request)
// equal to served.
func wantRaw(t *testing.T, e *testenv.Env, raw string, status int, served string, seen func(*http.Request) string) {
	t.Helper()
	before := len(e.Requests())
	if got := rawGet(t, e, raw); got != status {
		t.Fatalf("status %d, want %d", got, status)
	}
	reached := len(e.Requests()) > before
	if reached != (served != "") {
		t.Fatalf("upstream reached: %v", reached)
	}
	if reached {
		if got := seen(e.LastRequest()); got != served {
			t.Errorf("upstream was sent %q, want %q", got, served)
		}
	}
}

// rawGet sends a request line exactly as written (no client-side
// cleaning) and returns the status.
func rawGet(t *testing.T, e *testenv.Env, rawPath string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.URL.Opaque = "//" + strings.TrimPrefix(e.URL, "http://") + rawPath
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRoutes_CatchAllFromTopLevel(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: `routes:
  - name: docs
    match: {path_prefix: /docs}
    upstream: ${UPSTREAM}
    public: [/docs]
    extra_headers: {X-Route: docs}
`})
	b := e.NewBrowser()
	if r := b.Get("/docs/x"); r.StatusCode != 200 || e.LastRequest().Header.Get("X-Route") != "docs" {
		t.Fatalf("docs route: %d", r.StatusCode)
	}
	if r := b.Get("/other", "Accept", "application/json"); r.StatusCode != 401 {
		t.Errorf("catch-all (top-level upstream) without session: %d, want 401", r.StatusCode)
	}
	b.Login(testenv.User("alice", "alice@example.com"), "/other")
	if got := e.LastRequest().Header.Get("X-Route"); got != "" {
		t.Errorf("catch-all got the docs route's header %q", got)
	}
}

func TestRoutes_StartAcceptsOnlyAllowedHosts(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "redirect_allow_hosts: [wiki.example.com, .apps.example.com]\n"})
	for rd, want := range map[string]string{
		"https://wiki.example.com/page":       "https://wiki.example.com/page",
		"https://crm.apps.example.com/x?y=1":  "https://crm.apps.example.com/x?y=1",
		"https://apps.example.com/":           "/",
		"https://wiki.example.com.evil.com/":  "/",
		"https://evil.com/":                   "/",
		"https://wiki.example.com@evil.com/":  "/",
		"https://evilapps.example.com/":       "/",
		"http://wiki.example.com:8443/page":   "/",
		"https://crm.apps.example.com:8443/x": "https://crm.apps.example.com:8443/x",
	} {
		b := e.NewBrowser()
		e.IdP.QueueUser(testenv.User("alice", "alice@example.com"))
		start := b.Get("/_gatehouse/start?rd=" + url.QueryEscape(rd))
		cb := e.NewBrowser().Get(start.Header.Get("Location")).Header.Get("Location")
		r := b.Get(cb)
		got := r.Header.Get("Location")
		if r.StatusCode != http.StatusFound || got != want {
			t.Errorf("rd=%s: %d → %q, want %q", rd, r.StatusCode, got, want)
		}
	}
}

// forwardAuthEnv is gatehouse in forward-auth mode, with a signed-in staff
// member and an anonymous browser.
func forwardAuthEnv(t *testing.T, mode, extra string) (e *testenv.Env, staff, anon *testenv.Browser) {
	t.Helper()
	e = testenv.New(t, testenv.Options{NoUpstream: true, YAML: "forward_auth:\n  mode: " + mode + "\n" + extra + `routes:
  - name: wiki
    match: {host: wiki.example.com}
    public: [/static]
    allow: {groups: [staff]}
  - name: wiki-admin
    match: {host: wiki.example.com, path_prefix: /admin}
    allow: {groups: [admins]}
allow:
  groups: [staff]
`})
	staff = e.NewBrowser()
	staff.Login(testenv.User("bob", "bob@example.com", "staff"), "/_gatehouse/start?rd=/")
	return e, staff, e.NewBrowser()
}

func TestForwardAuth_Traefik(t *testing.T) {
	e, staff, anon := forwardAuthEnv(t, "traefik", "")
	orig := func(uri string, more ...string) []string {
		return append([]string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", uri}, more...)
	}
	for _, tc := range []struct {
		name   string
		b      *testenv.Browser
		hdr    []string
		status int
	}{
		{"allowed", staff, orig("/page?x=1"), 200},
		{"denied path", staff, orig("/admin/x"), 403},
		{"public path without session", anon, orig("/static/a.css"), 200},
		{"browser without session", anon, orig("/page", "Accept", "text/html", "Sec-Fetch-Mode", "navigate"), 302},
		{"API client without session", anon, orig("/page", "Accept", "application/json"), 401},
		{"POST without session", anon, []string{"X-Forwarded-Method", "POST", "X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/page", "Accept", "text/html"}, 401},
		{"no route: the top-level policy", staff, []string{"X-Forwarded-Host", "elsewhere.example.org", "X-Forwarded-Uri", "/"}, 200},
		// nginx's header is another proxy's family: ignored, so the call
		// names no request.
		{"nginx header ignored", anon, []string{"X-Original-URL", "https://wiki.example.com/static/x"}, 400},
		{"method alone names nothing", staff, []string{"X-Forwarded-Method", "GET"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.b.Get("/_gatehouse/auth", tc.hdr...)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; %s", r.StatusCode, tc.status, r.Body)
			}
			switch tc.status {
			case 200:
				if tc.b == staff && (r.Header.Get("X-Forwarded-User") != "bob" || r.Header.Get("X-Forwarded-Groups") != "staff" || r.Header.Get("X-Gatehouse-Assertion") == "") {
					t.Errorf("identity headers %v", r.Header)
				}
			case 302:
				if !strings.Contains(r.Header.Get("Location"), "/_gatehouse/start?rd=https%3A%2F%2Fwiki.example.com%2Fpage") {
					t.Errorf("Location %q", r.Header.Get("Location"))
				}
			case 403:
				if r.Header.Get("X-Forwarded-User") != "" || !strings.Contains(r.Body, "bob") {
					t.Errorf("403: headers %v body %s", r.Header, r.Body)
				}
			}
		})
	}
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("forward-auth calls left %d sessions, want the one login", n)
	}
}

func TestForwardAuth_Nginx(t *testing.T) {
	e, staff, anon := forwardAuthEnv(t, "nginx", "")
	for _, tc := range []struct {
		name   string
		b      *testenv.Browser
		path   string
		hdr    []string
		status int
	}{
		{"allowed", staff, "/_gatehouse/auth", []string{"X-Original-URL", "https://wiki.example.com/page"}, 200},
		{"denied", staff, "/_gatehouse/auth", []string{"X-Original-URL", "https://wiki.example.com/admin", "X-Original-Method", "GET"}, 403},
		// auth_request passes every client header on: Traefik's family
		// must not name the path.
		{"spoofed X-Forwarded-Uri ignored", staff, "/_gatehouse/auth", []string{"X-Original-URL", "https://wiki.example.com/admin", "X-Forwarded-Uri", "/page", "X-Forwarded-Host", "wiki.example.com"}, 403},
		{"spoofed public path ignored", anon, "/_gatehouse/auth", []string{"X-Original-URL", "https://wiki.example.com/page", "X-Forwarded-Uri", "/static/x"}, 401},
		{"no X-Original-URL", staff, "/_gatehouse/auth", []string{"X-Forwarded-Uri", "/page"}, 400},
		{"envoy-style path ignored", staff, "/_gatehouse/auth/page", []string{"X-Original-URL", "https://wiki.example.com/admin"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := tc.b.Get(tc.path, tc.hdr...); r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; %s", r.StatusCode, tc.status, r.Body)
			}
		})
	}
	t.Run("401 with the login URL", func(t *testing.T) {
		r := anon.Get("/_gatehouse/auth", "X-Original-URL", "https://wiki.example.com/page?a=1", "Accept", "text/html")
		want := e.URL + "/_gatehouse/start?rd=" + url.QueryEscape("https://wiki.example.com/page?a=1")
		if r.StatusCode != 401 || r.Header.Get("X-Gatehouse-Login") != want {
			t.Fatalf("%d %q, want 401 %q", r.StatusCode, r.Header.Get("X-Gatehouse-Login"), want)
		}
		var body map[string]string
		if json.Unmarshal([]byte(r.Body), &body) != nil || body["login_url"] != want {
			t.Errorf("body %s", r.Body)
		}
	})
	t.Run("?mode=traefik chooses the 302", func(t *testing.T) {
		r := anon.Get("/_gatehouse/auth?mode=traefik", "X-Original-URL", "https://wiki.example.com/page", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		if r.StatusCode != 302 {
			t.Fatalf("%d", r.StatusCode)
		}
	})
}

func TestForwardAuth_Envoy(t *testing.T) {
	e, staff, anon := forwardAuthEnv(t, "envoy", "")
	call := func(b *testenv.Browser, path string, hdr ...string) int {
		req, _ := http.NewRequest(http.MethodGet, e.URL+path, nil)
		req.Host = "wiki.example.com"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return b.Do(req).StatusCode
	}
	for _, tc := range []struct {
		name   string
		b      *testenv.Browser
		path   string
		hdr    []string
		status int
	}{
		{"allowed", staff, "/_gatehouse/auth/page?x=1", nil, 200},
		{"denied", staff, "/_gatehouse/auth/admin/x", nil, 403},
		{"public", anon, "/_gatehouse/auth/static/a.css", nil, 200},
		{"headers of other proxies ignored", staff, "/_gatehouse/auth/admin", []string{"X-Forwarded-Uri", "/page", "X-Original-URL", "https://wiki.example.com/page"}, 403},
		{"browser without session", anon, "/_gatehouse/auth/page", []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}, 302},
		// The query is the original request's: ?mode= there is not gatehouse's.
		{"?mode in the original query ignored", anon, "/_gatehouse/auth/page?mode=nginx", []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}, 302},
		{"no original path", staff, "/_gatehouse/auth", nil, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := call(tc.b, tc.path, tc.hdr...); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
		})
	}
}

func TestForwardAuth_UntrustedPeerHeadersIgnored(t *testing.T) {
	for _, mode := range []string{"nginx", "traefik"} {
		t.Run(mode, func(t *testing.T) {
			e, staff, anon := forwardAuthEnv(t, mode, "trusted_proxies: [192.0.2.0/24]\n")
			for _, tc := range []struct {
				name string
				b    *testenv.Browser
				hdr  []string
			}{
				{"anonymous claims public", anon, []string{"X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/static/x", "X-Original-URL", "https://wiki.example.com/static/x"}},
				{"staff claims an allowed path", staff, []string{"X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/page", "X-Original-URL", "https://wiki.example.com/page"}},
			} {
				r := tc.b.Get("/_gatehouse/auth", tc.hdr...)
				if r.StatusCode != 403 || !strings.Contains(r.Body, "untrusted_forwarder") && !strings.Contains(r.Body, "untrusted proxy") {
					t.Errorf("%s: status %d body %s, want 403 untrusted", tc.name, r.StatusCode, r.Body)
				}
			}
			if !strings.Contains(e.Logs.String(), "untrusted_forwarder") {
				t.Error("no log line names the untrusted forwarder")
			}
		})
	}
}
