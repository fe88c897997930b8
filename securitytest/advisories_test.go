// Package securitytest collects, in one place, the attacks gatehouse
// defends against, each with its expected outcome, run against the real
// product end to end (real OpenID provider, real cookies, real proxy).
//
// advisories_test.go replays the published advisories of comparable
// proxies (see ../shared research, "security lessons"): every one must be
// impossible in gatehouse.
package securitytest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// advisory is one published weakness and the test that shows gatehouse
// does not have it.
type advisory struct {
	id, system, class string
	test              func(t *testing.T)
}

func TestAdvisories(t *testing.T) {
	for _, a := range advisories() {
		t.Run(a.id, func(t *testing.T) {
			t.Logf("%s: %s", a.system, a.class)
			a.test(t)
		})
	}
}

// landing logs in with rd and returns the URL the browser ends on.
func landing(t *testing.T, e *testenv.Env, rd string) string {
	t.Helper()
	b := e.NewBrowser()
	r := b.Login(testenv.User("alice", "alice@example.com"), "/_gatehouse/start?rd="+url.QueryEscape(rd))
	return r.Hops[len(r.Hops)-1]
}

func refusesRedirects(payloads ...string) func(t *testing.T) {
	return func(t *testing.T) {
		e := testenv.New(t, testenv.Options{})
		for _, p := range payloads {
			if got := landing(t, e, p); got != e.URL+"/" {
				t.Errorf("rd=%q: landed on %s, want %s/", p, got, e.URL)
			}
		}
	}
}

// anonymous sends one request without a session and returns the status;
// the upstream must not be reached.
func anonymous(t *testing.T, e *testenv.Env, req *http.Request) int {
	t.Helper()
	before := len(e.Requests())
	r := e.NewBrowser().Do(req)
	if n := len(e.Requests()) - before; n != 0 {
		t.Errorf("%s %s reached the upstream without a session", req.Method, req.URL)
	}
	return r.StatusCode
}

func get(t *testing.T, rawURL string, headers ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

func advisories() []advisory {
	return []advisory{
		{"GHSA-qqxw-m5fj-f7gv", "oauth2-proxy", "open redirect with /\\", refusesRedirects("/\\evil.com", "/\\\\evil.com")},
		{"GHSA-j7px-6hwj-hpjg", "oauth2-proxy", "open redirect with encoded whitespace", refusesRedirects("/%09/evil.com", "/%0a/evil.com", "/%0b/evil.com", "/%0d/evil.com", "/\t/evil.com", "/ /evil.com")},
		{"GHSA-5m6c-jp6f-2vcv", "oauth2-proxy", "open redirect with repeated whitespace and dot segments", refusesRedirects("/\t\t/\t\\evil.com", "/./\\evil.com", "/./../../\\evil.com", "/.//evil.com")},
		{"GHSA-4mf2-f3wh-gvf2", "oauth2-proxy", "allow-list suffix confusion", func(t *testing.T) {
			r := auth.NewRedirects(".bar.foo")
			if got := r.Safe("http://evilbar.foo/"); got != "/" {
				t.Errorf("evilbar.foo passed a .bar.foo allow list: %q", got)
			}
			if got := r.Safe("http://a.bar.foo/"); got != "http://a.bar.foo/" {
				t.Errorf("a.bar.foo refused: %q", got)
			}
		}},
		{"GHSA-652x-m2gr-hppm", "oauth2-proxy", "restriction silently not enforced", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: "allow:\n  emails: [boss@other.org]\n  email_domains: [example.com]\n  groups: [admins]\n"})
			for _, tc := range []struct {
				email  string
				groups []string
				status int
			}{
				{"boss@other.org", nil, 200},                 // email rule
				{"dev@example.com", nil, 200},                // domain rule
				{"x@elsewhere.org", []string{"admins"}, 200}, // group rule
				{"x@elsewhere.org", []string{"staff"}, 403},  // no rule
				{"dev@sub.example.com", nil, 403},            // exact domain only
			} {
				r := e.NewBrowser().Login(testenv.User(tc.email, tc.email, tc.groups...), "/")
				if r.StatusCode != tc.status {
					t.Errorf("%s %v: status %d, want %d", tc.email, tc.groups, r.StatusCode, tc.status)
				}
			}
		}},
		{"GHSA-7rh7-c77v-6434", "oauth2-proxy", "skip-auth rule matched against path plus query", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			if s := anonymous(t, e, get(t, e.URL+"/api/private/sensitive?path=/status")); s != 401 {
				t.Errorf("status %d, want 401", s)
			}
		}},
		{"GHSA-vjrc-mh2v-45x6", "oauth2-proxy", "identity header smuggled with underscores", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			b := e.NewBrowser()
			b.Login(testenv.User("alice", "alice@example.com"), "/")
			req := get(t, e.URL+"/")
			req.Header["X-Auth_Request_User"] = []string{"evil"}
			req.Header["X-Forwarded_User"] = []string{"evil"}
			req.Header["x-forwarded-email"] = []string{"evil"}
			b.Do(req)
			for k, v := range e.LastRequest().Header {
				if strings.Contains(strings.Join(v, ","), "evil") {
					t.Errorf("upstream got %s: %v", k, v)
				}
			}
		}},
		{"GHSA-5hvv-m4w4-gf6v", "oauth2-proxy", "health-check User-Agent bypasses auth", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			for _, ua := range []string{"GoogleHC/1.0", "kube-probe/1.30", "ELB-HealthChecker/2.0"} {
				if s := anonymous(t, e, get(t, e.URL+"/admin", "User-Agent", ua)); s != 401 {
					t.Errorf("UA %s: status %d, want 401", ua, s)
				}
			}
		}},
		{"GHSA-7x63-xv5r-3p2x", "oauth2-proxy", "spoofed X-Forwarded-Uri", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			req := get(t, e.URL+"/admin", "X-Forwarded-Uri", "/public", "X-Original-URL", "/public", "X-Rewrite-URL", "/public")
			if s := anonymous(t, e, req); s != 401 {
				t.Errorf("status %d, want 401", s)
			}
		}},
		{"GHSA-pxq7-h93f-9jrg", "oauth2-proxy", "encoded fragment widens a rule", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			for _, p := range []string{"/foo/secret%23/bar", "/foo/secret#/bar"} {
				if s := anonymous(t, e, get(t, e.URL+p)); s != 401 {
					t.Errorf("%s: status %d, want 401", p, s)
				}
			}
		}},
		{"GHSA-c5c4-8r6x-56w3", "oauth2-proxy", "email-domain bypass with two @", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: "allow:\n  email_domains: [example.com]\n"})
			r := e.NewBrowser().Login(testenv.User("mallory", "attacker@evil.com@example.com"), "/")
			if r.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403", r.StatusCode)
			}
		}},
		{"GHSA-f24x-5g9q-753f", "oauth2-proxy", "session fixation: cookie survives sign-in", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			planted := e.NewBrowser()
			planted.Login(testenv.User("mallory", "mallory@example.com"), "/")
			fixed := planted.SessionCookie()
			victim := e.NewBrowser()
			victim.SetCookie(e.Gateway.Auth().SessionCookieName(), fixed)
			start := victim.Get("/_gatehouse/start?rd=/")
			if !strings.Contains(strings.Join(start.Header.Values("Set-Cookie"), "\n"), e.Gateway.Auth().SessionCookieName()+"=;") {
				t.Error("sign-in did not clear the existing session cookie first")
			}
			victim.Login(testenv.User("victim", "victim@example.com"), "/_gatehouse/start?rd=/")
			if victim.SessionCookie() == fixed {
				t.Fatal("the planted session cookie survived the sign-in")
			}
			if r := planted.Get("/", "Accept", "application/json"); r.StatusCode != 401 {
				t.Errorf("the planted session still works for the attacker: %d", r.StatusCode)
			}
		}},
		{"08ce94d1", "oauth2-proxy", "spoofed X-Forwarded-For", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: "trusted_proxies: [192.0.2.0/24]\n"})
			b := e.NewBrowser()
			b.Login(testenv.User("alice", "alice@example.com"), "/")
			b.Do(get(t, e.URL+"/", "X-Forwarded-For", "10.0.0.1, 192.0.2.1", "X-Real-Ip", "10.0.0.1"))
			if got := e.LastRequest().Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("upstream X-Forwarded-For %q, want only the real peer", got)
			}
		}},
		{"GHSA-35vc-w93w-75c2", "Pomerium", "redirect parameter leaks a session", refusesRedirects("https://evil.example/steal", "http://localhost:9999/")},
		{"GHSA-fv82-r8qv-ch4v", "Pomerium", "unsigned redirect parameters on sign-out", signOutIgnoresRedirects},
		{"6a75d9efc", "Pomerium", "sign-out open redirect", signOutIgnoresRedirects},
		{"GHSA-36f2-fcrx-fp4j", "Authelia", "logout open redirect", signOutIgnoresRedirects},
		{"GHSA-cfc2-wjcm-c8fm", "Pomerium", "router and authorizer disagree on #fragment and multi-value headers", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			req := get(t, e.URL+"/private%23/public")
			req.Header["Cookie"] = []string{"a=1", e.Gateway.Auth().SessionCookieName() + "=forged"}
			if s := anonymous(t, e, req); s != 401 {
				t.Errorf("status %d, want 401", s)
			}
		}},
		{"GHSA-pvrc-wvj2-f59p", "Pomerium", "path normalisation mismatch", pathBypasses},
		{"CVE-2020-1957", "Apache Shiro", "the filter and Spring read ';' path parameters differently", shiroPathParameters("/admin;/secret", "/admin;x/secret", "/public/..;/admin/secret")},
		{"CVE-2020-13933", "Apache Shiro", "an encoded ';' that Spring cuts as a path parameter", shiroPathParameters("/admin%3bx/secret", "/admin%3B/secret")},
		{"PR #200", "Louketo", "double-slash and dot-segment path bypass", pathBypasses},
		{"CVE-2021-41230", "Pomerium", "stale claims outlive the login", staleClaimsBounded},
		{"GHSA-x883-2vmg-xwf7", "Authelia", "stale groups", staleClaimsBounded},
		{"GHSA-rrqr-7w59-637v", "Pomerium", "tokens rendered on the proxy's own pages", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: "allow:\n  groups: [admins]\n"})
			b := e.NewBrowser()
			forbidden := b.Login(testenv.User("bob", "bob@example.com"), "/")
			pages := []string{forbidden.Body}
			for _, p := range []string{"/_gatehouse/whoami", "/_gatehouse/logout", "/_gatehouse/signed-out", "/_gatehouse/readyz"} {
				pages = append(pages, b.Get(p, "Accept", "text/html").Body)
			}
			for i, body := range pages {
				if strings.Contains(body, "eyJ") {
					t.Errorf("page %d shows a JWT: %s", i, body)
				}
			}
		}},
		{"GHSA-r7rh-jww5-5fjr", "Pomerium", "internal API reachable", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			for _, p := range []string{"/_gatehouse/admin", "/_gatehouse/metrics", "/_gatehouse/debug/pprof/"} {
				if r := e.NewBrowser().Get(p); r.StatusCode != http.StatusNotFound {
					t.Errorf("%s: status %d, want 404", p, r.StatusCode)
				}
			}
			// /_gatehouse/sessions is the user's own page, not the admin
			// API: without a session it lists nothing.
			if r := e.NewBrowser().Get("/_gatehouse/sessions"); r.StatusCode != http.StatusUnauthorized || strings.Contains(r.Body, "handle") {
				t.Errorf("/_gatehouse/sessions without a session: status %d body %s, want 401 and no sessions", r.StatusCode, r.Body)
			}
		}},
		{"910943a", "Vouch Proxy", "allow-list by substring", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			host := strings.TrimPrefix(e.URL, "http://")
			for _, p := range []string{"http://" + host + ".somewhere-else.com/", "http://evil.com/" + host, "http://evil.com?" + host} {
				if got := landing(t, e, p); got != e.URL+"/" {
					t.Errorf("rd=%q landed on %s", p, got)
				}
			}
		}},
		{"Vouch redirect chaining", "Vouch Proxy", "redirect chains, data: and javascript:", refusesRedirects("https://", "HTTPS://x", "//x", "https%3a%2f%2fx", "data:text/html,x", "javascript:alert(1)", "/?url=https://evil.com")},
		{"KEYCLOAK-8667", "Louketo", "callback CSRF without state check", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			e.IdP.QueueUser(testenv.User("mallory", "mallory@example.com"))
			// The attacker's code, delivered to a victim with no login
			// cookie, or with a cookie but no state at all.
			for _, q := range []string{"code=attackers-code&state=", "code=attackers-code", "code=attackers-code&state=guess"} {
				r := e.NewBrowser().Get("/_gatehouse/callback?"+q, "Accept", "text/html")
				if r.StatusCode != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400", q, r.StatusCode)
				}
			}
			if e.Gateway.Store.Len() != 0 {
				t.Error("a session was created")
			}
		}},
		{"KEYCLOAK-8669", "Louketo", "low-entropy state", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			seen := map[string]bool{}
			for range 50 {
				loc, _ := url.Parse(e.NewBrowser().Get("/_gatehouse/start").Header.Get("Location"))
				st := loc.Query().Get("state")
				if len(st) < 43 || seen[st] {
					t.Fatalf("state %q: short or repeated", st)
				}
				seen[st] = true
			}
		}},
		{"Louketo handlers.go", "Louketo", "callback URL built from X-Forwarded-Host", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			r := e.NewBrowser().Do(get(t, e.URL+"/_gatehouse/start?rd=/", "X-Forwarded-Host", "evil.com", "X-Forwarded-Proto", "https", "Forwarded", "host=evil.com"))
			loc, _ := url.Parse(r.Header.Get("Location"))
			if got := loc.Query().Get("redirect_uri"); got != e.URL+"/_gatehouse/callback" {
				t.Errorf("redirect_uri %q, want the configured callback", got)
			}
		}},
		{"TFA PR #77", "traefik-forward-auth", "open redirect through state", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			loc, _ := url.Parse(e.NewBrowser().Get("/_gatehouse/start?rd=https://evil.com").Header.Get("Location"))
			if st := loc.Query().Get("state"); strings.Contains(st, "evil") || strings.Contains(st, ":") {
				t.Errorf("state carries the return URL: %q", st)
			}
			if got := landing(t, e, "https://evil.com"); got != e.URL+"/" {
				t.Errorf("landed on %s", got)
			}
		}},
		{"TFA #238", "traefik-forward-auth", "login cookies pile up", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			b := e.NewBrowser()
			for i := range 30 {
				b.Get(fmt.Sprintf("/_gatehouse/start?rd=/%d/%s", i, strings.Repeat("x", 1500)))
			}
			u, _ := url.Parse(e.URL + "/_gatehouse/")
			var names []string
			total := 0
			for _, c := range b.Jar.Cookies(u) {
				names = append(names, c.Name)
				total += len(c.Name) + len(c.Value)
			}
			if len(names) != 1 || total > 4096 {
				t.Errorf("after 30 logins: cookies %v, %d bytes", names, total)
			}
		}},
		{"GHSA-3q9r-p662-5j8m", "Traefik", "forwarded headers trusted from the client", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			b := e.NewBrowser()
			b.Login(testenv.User("alice", "alice@example.com"), "/")
			b.Do(get(t, e.URL+"/", "X-Forwarded-Proto", "https", "X-Forwarded-Port", "443", "X-Forwarded-Prefix", "/evil"))
			up := e.LastRequest().Header
			if up.Get("X-Forwarded-Proto") != "http" || up.Get("X-Forwarded-Port") != "" || up.Get("X-Forwarded-Prefix") != "" {
				t.Errorf("client forwarded headers reached the upstream: %v", up)
			}
		}},
		{"GHSA-68wm-pfjf-wqp6", "Authelia", "fail open on a malformed request", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			for _, line := range []string{"GET /%zz HTTP/1.1", "GET /a%00b HTTP/1.1", "GET http://[::1 HTTP/1.1", "GET /\x01 HTTP/1.1"} {
				if s := rawStatus(t, e, line); s == 200 || s == 0 {
					t.Errorf("%q: status %d", line, s)
				}
			}
			if len(e.Requests()) != 0 {
				t.Error("a malformed request reached the upstream")
			}
		}},
		{"GHSA-j748-h363-wqj8", "Authelia", "case-sensitive domain matching", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: "allow:\n  email_domains: [example.com]\n"})
			if r := e.NewBrowser().Login(testenv.User("a", "Alice@EXAMPLE.com"), "/"); r.StatusCode != 200 {
				t.Errorf("Alice@EXAMPLE.com: status %d, want 200", r.StatusCode)
			}
			host := strings.TrimPrefix(e.URL, "http://")
			if got := auth.NewRedirects(host).Safe("http://" + strings.ToUpper(host) + "/x"); got == "/" {
				t.Errorf("upper-case host refused: %q", got)
			}
		}},
		{"GHSA-hjj4-hfjm-fmrj", "Authelia", "credentials accepted outside the identity provider", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			if s := anonymous(t, e, get(t, e.URL+"/", "Authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")); s != 401 {
				t.Errorf("Basic credentials: status %d, want 401 (gatehouse takes no passwords)", s)
			}
		}},
		{"issue #417", "Authelia", "unauthenticated requests create sessions", func(t *testing.T) {
			e := testenv.New(t, testenv.Options{})
			for i := range 1000 {
				e.NewBrowser().Get(fmt.Sprintf("/verify/%d", i))
				e.NewBrowser().Get("/_gatehouse/start")
			}
			if n := e.Gateway.Store.Len(); n != 0 {
				t.Errorf("%d sessions stored", n)
			}
		}},
	}
}

func signOutIgnoresRedirects(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	page := b.Get("/_gatehouse/logout?redirect=https://evil.com&rd=https://evil.com", "Accept", "text/html")
	csrf := between(page.Body, `name="csrf" value="`, `"`)
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/_gatehouse/logout?rd=https://evil.com&post_logout_redirect_uri=https://evil.com&redirect=https://evil.com",
		strings.NewReader(url.Values{"csrf": {csrf}, "rd": {"https://evil.com"}, "pomerium_redirect_uri": {"https://evil.com"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := b.Do(req)
	if r.StatusCode != http.StatusSeeOther || strings.Contains(r.Header.Get("Location"), "evil") {
		t.Errorf("sign-out: %d Location %q", r.StatusCode, r.Header.Get("Location"))
	}
}

func pathBypasses(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	for _, p := range []string{"//admin%2Ftest", "///admin/../admin//%2Ftest", "//admin/../admin/test", "/.%2e/.%2e/etc/passwd",
		"/public/../admin", "/public/%2e%2e/admin", "/%2e%2e/admin", "/_gatehouse/../admin", "/_gatehouse/%2e%2e/admin"} {
		s := anonymous(t, e, get(t, e.URL+p))
		if s != 401 && s != 404 && s != 400 && s != 307 {
			t.Errorf("%s: status %d, want 401 (or 404, 400, or 307 to the clean path, without reaching the upstream)", p, s)
		}
	}
}

// shiroPathParameters: under a public catch-all, an /admin address that
// a servlet app reads as /admin, whatever the generic reading, is
// refused without a session rather than passed as public.
func shiroPathParameters(targets ...string) func(t *testing.T) {
	return func(t *testing.T) {
		e, _ := pathReadingEnv(t)
		for _, p := range targets {
			if s := anonymous(t, e, get(t, e.URL+p)); s != 400 {
				t.Errorf("%s: status %d, want 400", p, s)
			}
		}
	}
}

// staleClaimsBounded: claims from the ID token never outlive the session's
// absolute lifetime (token refresh, which re-reads them, comes with
// refresh support).
func staleClaimsBounded(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  idle_timeout: 30m\n  absolute_timeout: 1h\n"})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com", "admins"), "/")
	for range 3 {
		e.Advance(20 * time.Minute)
		b.Get("/")
	}
	if r := b.Get("/", "Accept", "application/json"); r.StatusCode != 401 {
		t.Errorf("claims older than absolute_timeout still served: %d", r.StatusCode)
	}
}

// rawStatus sends a raw request line and returns the response status, or
// 0 when the server closed without answering.
func rawStatus(t *testing.T, e *testenv.Env, line string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\r\nHost: x\r\nAccept: text/html\r\n\r\n", line)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return ""
}
