package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// readingsYAML is the setup of issue 12: a catch-all route public as a
// whole, and a protected /admin route with a group rule inside it.
const readingsYAML = `routes:
  - name: site
    match: {path_prefix: /}
    upstream: ${UPSTREAM}
    public: [/]
    allow: {groups: [staff, admins]}
  - name: admin
    match: {path_prefix: /admin}
    upstream: ${UPSTREAM}
    allow: {groups: [admins]}
`

// rawDo sends a request line's target exactly as written (no client-side
// cleaning) from browser b and returns the answer.
func rawDo(t *testing.T, e *testenv.Env, b *testenv.Browser, rawPath string) *testenv.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.URL.Opaque = "//" + strings.TrimPrefix(e.URL, "http://") + rawPath
	req.Header.Set("Accept", "application/json")
	return b.Do(req)
}

// errorCode is the "error" of one of gatehouse's JSON error answers.
func errorCode(body string) string {
	var v struct{ Error string }
	_ = json.Unmarshal([]byte(body), &v)
	return v.Error
}

// TestRoutes_PathReadings: a path that some family of servers reads under
// another route than the generic reading (a ";param" for Tomcat, Jetty
// and Spring, a trailing dot or space for IIS, an encoded "#" or "?" for
// a server that parses again) is refused, whoever asks; forms every
// server reads under one route keep working, and the upstream is sent
// exactly the path judged.
func TestRoutes_PathReadings(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: readingsYAML})
	anon := e.NewBrowser()
	staff := e.NewBrowser()
	staff.Login(testenv.User("sam", "sam@example.com", "staff"), "/_gatehouse/start?rd=/")
	admin := e.NewBrowser()
	admin.Login(testenv.User("ada", "ada@example.com", "admins"), "/_gatehouse/start?rd=/")
	const ambiguous, bad = "ambiguous_path", "bad_path"
	for _, tc := range []struct {
		raw    string
		code   string // refusal code (400) for everyone; "" = not refused
		anon   int    // status without a session, when not refused
		staff  int    // status for a signed-in user outside /admin's group
		served string // RequestURI the upstream sees when reached
	}{
		// Controls.
		{raw: "/", anon: 200, staff: 200, served: "/"},
		{raw: "/admin/secret", anon: 401, staff: 403, served: "/admin/secret"},
		{raw: "/public/x", anon: 200, staff: 200, served: "/public/x"},
		{raw: "/administrator", anon: 200, staff: 200, served: "/administrator"},
		// Servlet path parameters after the route's prefix.
		{raw: "/admin;jsessionid=1/secret", code: ambiguous},
		{raw: "/admin;x", code: ambiguous},
		{raw: "/admin;x/secret", code: ambiguous},
		{raw: "/admin;/secret", code: ambiguous},
		{raw: "/admin;x=1;y=2/secret", code: ambiguous},
		{raw: "/ADMIN;x/secret", code: ambiguous},
		{raw: "/Admin;x", code: ambiguous},
		// Encoded ";" (a stack that decodes, then cuts parameters).
		{raw: "/admin%3bx/secret", code: ambiguous},
		{raw: "/admin%3Bx/secret", code: ambiguous},
		{raw: "/admin%3B/secret", code: ambiguous},
		// IIS: trailing dots and spaces of a segment.
		{raw: "/admin./secret", code: ambiguous},
		{raw: "/admin../secret", code: ambiguous},
		{raw: "/admin%2e/secret", code: ambiguous},
		{raw: "/admin%2E/secret", code: ambiguous},
		{raw: "/admin%20/secret", code: ambiguous},
		{raw: "/admin.%20/secret", code: ambiguous},
		{raw: "/admin%20./secret", code: ambiguous},
		{raw: "/admin.", code: ambiguous},
		{raw: "/AdMiN%20", code: ambiguous},
		{raw: "/admin::$DATA/secret", code: ambiguous}, // NTFS streams
		{raw: "/admin:$i30:$INDEX_ALLOCATION/secret", code: ambiguous},
		{raw: "/admin%3a/secret", code: ambiguous},
		{raw: "/admin%09/secret", code: bad}, // a control character
		// Encoded fragment and query markers.
		{raw: "/admin%23/secret", code: ambiguous},
		{raw: "/admin%3f/secret", code: ambiguous},
		{raw: "/admin%3F", code: ambiguous},
		// Combinations.
		{raw: "/admin.;x/secret", code: ambiguous},
		{raw: "/admin;x./secret", code: ambiguous},
		{raw: "/admin%2e%3bx/secret", code: ambiguous},
		{raw: "/admin%23;x/secret", code: ambiguous},
		{raw: "//admin;x//secret", code: ambiguous},    // cleaned to /admin;x/secret, which is what would be sent
		{raw: "//admin%3bx//secret", code: ambiguous},  // cleaned and re-escaped: "%3b" would go out as ";"
		{raw: "/x/../admin;x/secret", code: ambiguous}, // dot segments resolved first
		{raw: "/public/../admin./x", code: ambiguous},  // the same
		{raw: "/public/..%20/admin", code: ambiguous},  // IIS: ".. " is ".."
		// "..." is a name, which ".." removes: the app is sent the
		// cleaned path, and that is what every reading is of.
		{raw: "/public/x/..%2e/../admin", anon: 200, staff: 200, served: "/public/x/admin"},
		// Refusals that were there before.
		{raw: "/admin%2fsecret", code: bad},
		{raw: "/admin%5csecret", code: bad},
		{raw: "/admin\\secret", code: bad},
		{raw: "/public/..;/admin", code: bad},
		{raw: "/public/..%3b/admin", code: bad},
		{raw: "/admin%252e/secret", code: bad},
		// Encoded twice: an app that decodes again reads /admin.
		{raw: "/%2561dmin/secret", code: ambiguous},
		{raw: "/%2541DMIN/secret", code: ambiguous},
		{raw: "/admin%253bx/secret", code: ambiguous},
		{raw: "/admin%2523/secret", code: ambiguous},
		{raw: "/admin%253F/secret", code: ambiguous},
		{raw: "/admin%2520/secret", code: ambiguous},
		{raw: "/100%25", anon: 200, staff: 200, served: "/100%25"}, // "%" alone: read alike
		{raw: "/admin/%2561", anon: 401, staff: 403, served: "/admin/%2561"},
		// Dot segments and doubled slashes: one reading, /admin's policy.
		{raw: "/public/../admin/secret", anon: 401, staff: 403, served: "/admin/secret"},
		{raw: "//admin//secret", anon: 401, staff: 403, served: "/admin/secret"},
		{raw: "/ADMIN/secret", anon: 401, staff: 403, served: "/ADMIN/secret"},
		// Every reading under one route: served, and sent as judged.
		{raw: "/public/index.html;jsessionid=ABC", anon: 200, staff: 200, served: "/public/index.html;jsessionid=ABC"},
		{raw: "/adminx;y", anon: 200, staff: 200, served: "/adminx;y"},
		{raw: "/admin/things:run", anon: 401, staff: 403, served: "/admin/things:run"},
		{raw: "/api/v1/x:cancel", anon: 200, staff: 200, served: "/api/v1/x:cancel"},
		{raw: "/admin/page;jsessionid=X", anon: 401, staff: 403, served: "/admin/page;jsessionid=X"},
		{raw: "/admin/a.;x/b", anon: 401, staff: 403, served: "/admin/a.;x/b"},
		{raw: "/admin/x%23y", anon: 401, staff: 403, served: "/admin/x%23y"},
		{raw: "/public/..%23/admin", anon: 200, staff: 200, served: "/public/..%23/admin"}, // "/" for a cutting server: the public catch-all
		{raw: "/file.", anon: 200, staff: 200, served: "/file."},
		// Escapes the client chose (RawPath) go through the reverse
		// proxy rather than the direct path: sent as judged there too.
		{raw: "/public/%70age;x", anon: 200, staff: 200, served: "/public/%70age;x"},
		{raw: "/admin/%70age;x", anon: 401, staff: 403, served: "/admin/%70age;x"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			for _, who := range []struct {
				name   string
				b      *testenv.Browser
				status int
			}{{"anonymous", anon, tc.anon}, {"staff", staff, tc.staff}, {"admin", admin, 200}} {
				before := len(e.Requests())
				r := rawDo(t, e, who.b, tc.raw)
				reached := len(e.Requests()) > before
				if tc.code != "" {
					if r.StatusCode != 400 || errorCode(r.Body) != tc.code || reached {
						t.Errorf("%s: status %d, %s, upstream reached %v; want 400 %s", who.name, r.StatusCode, r.Body, reached, tc.code)
					}
					continue
				}
				if r.StatusCode != who.status {
					t.Errorf("%s: status %d, want %d; %.200s", who.name, r.StatusCode, who.status, r.Body)
					continue
				}
				if reached != (who.status == 200) {
					t.Errorf("%s: upstream reached %v with status %d", who.name, reached, r.StatusCode)
					continue
				}
				if reached {
					if got := e.LastRequest().RequestURI; got != tc.served {
						t.Errorf("%s: upstream was sent %q, want %q", who.name, got, tc.served)
					}
				}
			}
		})
	}
}

// TestRoutes_PathReadingsLogged: the operator's log names the reading
// and the routes that disagree; the user's page says what to do.
func TestRoutes_PathReadingsLogged(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: readingsYAML})
	b := e.NewBrowser()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/admin;jsessionid=1/secret", nil)
	req.Header.Set("Accept", "text/html")
	r := b.Do(req)
	if r.StatusCode != 400 || !strings.Contains(r.Body, "Ambiguous address") || !strings.Contains(r.Body, "Use the plain address") {
		t.Errorf("status %d, page %.300s; want 400 with the ambiguous address page", r.StatusCode, r.Body)
	}
	want := `\"/admin;jsessionid=1/secret\" reads as \"/admin;jsessionid=1/secret\" (route site) but as \"/admin/secret\" under the servlet reading (route admin)`
	if logs := e.Logs.String(); !strings.Contains(logs, `"reason":"ambiguous_path"`) || !strings.Contains(logs, want) {
		t.Errorf("log lacks the reason or %s:\n%s", want, logs)
	}
}

// TestRoutes_PathReadingsPublicIsStrict: within one route, a path is
// public only if every reading of it is.
func TestRoutes_PathReadingsPublicIsStrict(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: `routes:
  - name: site
    match: {path_prefix: /}
    upstream: ${UPSTREAM}
    public: [/public]
    allow: {groups: [staff]}
`})
	for _, tc := range []struct {
		raw    string
		status int    // without a session
		served string // RequestURI the upstream sees when reached
	}{
		{"/public/x", 200, "/public/x"},
		{"/public/x;jsessionid=1", 200, "/public/x;jsessionid=1"},
		{"/public/index.html;jsessionid=ABC", 200, "/public/index.html;jsessionid=ABC"},
		{"/public/x%23", 200, "/public/x%23"},
		{"/public;x", 401, ""},           // Tomcat: /public; here: the segment "public;x"
		{"/public%3bx/y", 401, ""},       // the same, encoded
		{"/public./x", 401, ""},          // IIS: /public/x
		{"/public%20/x", 401, ""},        // IIS: /public/x
		{"/public/..%23/admin", 401, ""}, // cut at "#": "/public/.." is "/"
		{"/public/..%3f/admin", 401, ""},
		{"/public/x/..%20/..%20/admin", 401, ""}, // IIS: /admin
		{"/public/x;/../../admin", 401, ""},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			wantRaw(t, e, tc.raw, tc.status, tc.served, func(r *http.Request) string { return r.RequestURI })
		})
	}
}

// TestForwardAuth_PathReadings: forward-auth judges the original request
// the same way, since the proxy in front sends the app that path.
func TestForwardAuth_PathReadings(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: `forward_auth:
  mode: traefik
trusted_proxies: [127.0.0.1]
routes:
  - name: site
    public: [/]
    allow: {groups: [staff, admins]}
  - name: admin
    match: {path_prefix: /admin}
    allow: {groups: [admins]}
`})
	staff := e.NewBrowser()
	staff.Login(testenv.User("sam", "sam@example.com", "staff"), "/_gatehouse/start?rd=/")
	anon := e.NewBrowser()
	for _, tc := range []struct {
		uri          string
		anon, member int
	}{
		{"/x", 200, 200},
		{"/admin/secret", 401, 403},
		{"/admin/page;jsessionid=X", 401, 403},
		{"/public/x;jsessionid=X", 200, 200},
		{"/admin;jsessionid=1/secret", 400, 400},
		{"/admin%3bx/secret", 400, 400},
		{"/admin./secret", 400, 400},
		{"/admin%2e/secret", 400, 400},
		{"/admin%20/secret", 400, 400},
		{"/admin%23/secret", 400, 400},
		{"/x/../admin;x", 400, 400},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			for _, who := range []struct {
				name   string
				b      *testenv.Browser
				status int
			}{{"anonymous", anon, tc.anon}, {"staff", staff, tc.member}} {
				r := who.b.Get("/_gatehouse/auth", "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https",
					"X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", tc.uri, "Accept", "application/json")
				if r.StatusCode != who.status {
					t.Errorf("%s: status %d, want %d; %.200s", who.name, r.StatusCode, who.status, r.Body)
				}
				if who.status == 400 && errorCode(r.Body) != "ambiguous_path" {
					t.Errorf("%s: body %s, want the ambiguous_path error", who.name, r.Body)
				}
			}
		})
	}
}
