package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/web"
)

// fuzzGate builds gatehouse's request path from extra YAML appended to a
// base configuration, through the real loader and New. It contacts
// nobody: discovery is lazy and the upstreams are never called.
func fuzzGate(tb testing.TB, extra string) (*gate, *config.Config) {
	tb.Helper()
	yml := `external_url: https://gate.example.com
oidc:
  issuer: http://127.0.0.1:1
  client_id: gatehouse
  client_secret: fuzz-client-secret
cookie:
  secret: ` + strings.Repeat("f", 32) + "\n" + extra
	if !strings.Contains("\n"+extra, "\nallow:") {
		yml += "allow: {groups: [staff]}\n" // the forward-auth fallback's, and routes' without their own
	}
	cfg, err := config.Parse([]byte(yml), func(string) (string, bool) { return "", false })
	if err != nil {
		tb.Fatalf("config: %v\n%s", err, yml)
	}
	gw, err := New(cfg, Options{})
	if err != nil {
		tb.Fatalf("gateway: %v", err)
	}
	return gw.Handler.cur.Load(), cfg
}

// pathDecision is what gatehouse decides about a request path.
type pathDecision struct {
	outcome string // refused, ambiguous, forward-auth, gatehouse, no-route, public, protected
	route   string
	clean   string
}

// decidePath runs the steps gate.ServeHTTP takes on a request line's
// target (url.ParseRequestURI as net/http does, the forward-auth check,
// cleanRequestPath, gatehouse's own prefix, judgePath) and
// returns the decision and, when the request is proxied (or refused as
// ambiguous), the escaped path the upstream is (or would have been) sent.
func decidePath(h *gate, host, raw string) (pathDecision, string) {
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return pathDecision{outcome: "refused"}, ""
	}
	if isForwardAuth(u.Path) {
		return pathDecision{outcome: "forward-auth"}, ""
	}
	clean, rewrite, err := cleanRequestPath(u)
	if err != nil {
		return pathDecision{outcome: "refused"}, ""
	}
	if rewrite {
		u.Path, u.RawPath = clean, ""
	}
	if strings.HasPrefix(clean, auth.Prefix) || clean == strings.TrimSuffix(auth.Prefix, "/") {
		return pathDecision{outcome: "gatehouse", clean: clean}, ""
	}
	rt, public, err := h.judgePath(host, clean, u, nil)
	if err != nil {
		return pathDecision{outcome: "ambiguous", clean: clean}, u.EscapedPath() // what would have been sent
	}
	if rt == nil || rt.proxy == nil {
		return pathDecision{outcome: "no-route", clean: clean}, ""
	}
	d := pathDecision{outcome: "protected", route: rt.name, clean: clean}
	if public {
		d.outcome = "public"
	}
	// The reverse proxy's SetURL keeps the escaped form (the upstream
	// URLs here have no path of their own).
	return d, u.EscapedPath()
}

// FuzzPathDecision checks that the upstream is asked for the path
// gatehouse decided on: the path it forwards, decided again, gives the
// same route, the same public or protected verdict and the same path
// (a refused path is never forwarded), and a public path stays public
// for an upstream that decodes the path once more (a double-decoding
// app, or a proxy between that decodes), which would otherwise read
// "/public/%2e%2e/admin" as "/admin".
func FuzzPathDecision(f *testing.F) {
	h, _ := fuzzGate(f, `routes:
  - name: site
    upstream: http://127.0.0.1:9
    public: [/public, /static/assets]
  - name: api
    match: {path_prefix: /api}
    upstream: http://127.0.0.1:9
    public: [/api/health]
`)
	const host = "gate.example.com"
	for _, s := range []string{
		"/", "/public", "/public/", "/public/x", "/publicity", "/PUBLIC/x", "/Public",
		"/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/./x",
		"/public%2fadmin", "/public%5cadmin", "/public\\..\\admin", "/public/..;/admin", "/public/.%3b/admin",
		"/public;x/../admin", "//public/x", "///public//x/", "/static/assets/../../admin",
		"/static/assets/x", "/static/assetsx", "/static/x", "/api/health", "/api/health/../x",
		"/api/HEALTH", "/API/health", "/public/%23/x", "/public?x=/admin", "/public#/../admin",
		"/_gatehouse/../public", "/_gatehouse/auth/../../admin", "/%5fgatehouse/start",
		"/public/%00", "/public/%C0%AE%C0%AE/admin", "http://evil.example/public/x", "*",
		"/a%20b", "/public/%25", "/public/%", "/public/%zz", "/x/..", "/public/x/../../..",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		first, fwd := decidePath(h, host, raw)
		if first.outcome != "public" && first.outcome != "protected" {
			return // answered by gatehouse; nothing reaches the upstream
		}
		// The upstream, deciding on what it receives, agrees.
		second, fwd2 := decidePath(h, host, fwd)
		if second != first {
			t.Fatalf("raw %q: decided %+v, but the forwarded path %q decides %+v", raw, first, fwd, second)
		}
		if fwd2 != fwd {
			t.Fatalf("raw %q: forwarded %q, which gatehouse would forward as %q", raw, fwd, fwd2)
		}
		if first.outcome != "public" {
			return
		}
		// An upstream decoding what it receives (once, as it should).
		if once, err := url.PathUnescape(fwd); err == nil {
			if p := path.Clean(once); !publicFor(h, host, p) {
				t.Fatalf("raw %q: public; forwarded %q, which an upstream decodes to %q: not public", raw, fwd, p)
			}
		}
		// An upstream decoding once more than gatehouse did.
		if twice, err := url.PathUnescape(first.clean); err == nil {
			if p := path.Clean(twice); !publicFor(h, host, p) {
				t.Fatalf("bypass: raw %q is public (decided as %q), but an upstream that decodes once more reads %q: not public", raw, first.clean, p)
			}
		}
	})
}

func publicFor(h *gate, host, p string) bool {
	rt := h.router.match(host, p)
	return rt != nil && rt.isPublic(p)
}

// routeMatchYAML is FuzzRouteMatch's fixed route set. Every entry is a
// configuration the loader accepts, including a prefix with a non-ASCII
// upper-case letter and prefixes longer than the router's 512-byte
// lower-casing buffer (both once mismatched: the router lower-cased
// prefixes with strings.ToLower but paths in ASCII, and cut paths at 512
// bytes; the corpus in testdata/fuzz/FuzzRouteMatch keeps those cases).
var routeMatchYAML = `routes:
  - {name: catch-all, upstream: http://127.0.0.1:9}
  - {name: any-api, match: {path_prefix: /api}, upstream: http://127.0.0.1:9}
  - {name: any-api-admin, match: {path_prefix: /api/v2/Admin}, upstream: http://127.0.0.1:9}
  - {name: uber, match: {path_prefix: /Über}, upstream: http://127.0.0.1:9}
  - {name: long, match: {path_prefix: /` + strings.Repeat("l", 511) + `}, upstream: http://127.0.0.1:9}
  - {name: longer, match: {path_prefix: /` + strings.Repeat("m", 599) + `}, upstream: http://127.0.0.1:9}
  - {name: wiki, match: {host: wiki.example.com}, upstream: http://127.0.0.1:9}
  - {name: wiki-admin, match: {host: wiki.example.com, path_prefix: /admin}, upstream: http://127.0.0.1:9}
  - {name: wiki-admin-deep, match: {host: WIKI.example.com, path_prefix: /admin/users/edit}, upstream: http://127.0.0.1:9}
  - {name: star, match: {host: "*.example.com"}, upstream: http://127.0.0.1:9}
  - {name: star-eu-api, match: {host: "*.eu.example.com", path_prefix: /api}, upstream: http://127.0.0.1:9}
  - {name: docs-v2, match: {host: docs.example.com, path_prefix: /v2}, upstream: http://127.0.0.1:9}
  - {name: only-prefix, match: {host: only.example.org, path_prefix: /x}, upstream: http://127.0.0.1:9}
`

// FuzzRouteMatch compares the router with a slow reference that reads
// the routing rule literally: among the routes of the most specific host
// class that has a match (exact host, then the longest wildcard suffix,
// then any host), the longest path prefix that covers the path on a
// segment boundary, ASCII letters compared without case (other bytes as
// they are: "/Über" is "/üBER"'s route only if written "/Über"). Allocation
// is checked by TestRouter_MatchDoesNotAllocate, not here.
func FuzzRouteMatch(f *testing.F) {
	h, cfg := fuzzGate(f, routeMatchYAML)
	routes := cfg.Routes
	for _, s := range [][2]string{
		{"wiki.example.com", "/"}, {"wiki.example.com", "/admin/"}, {"WIKI.Example.COM:8443", "/ADMIN/x"},
		{"wiki.example.com.", "/admin"}, {"wiki.example.com", "/administrator"},
		{"wiki.example.com", "/admin/users/edit/7"}, {"wiki.example.com", "/admin/users/editor"},
		{"blog.example.com", "/x"}, {"a.b.example.com", "/x"}, {"x.eu.example.com", "/api/v1"},
		{"x.eu.example.com", "/other"}, {"example.com", "/x"}, {"evil.com", "/api/x"}, {"evil.com", "/apis"},
		{"docs.example.com", "/v2/page"}, {"docs.example.com", "/v1/page"}, {"wiki.example.com.evil.com", "/admin"},
		{"only.example.org", "/y"}, {"[::1]:8080", "/api"}, {"", "/API/V2/admin/x"}, {"x", "/api/v2/adminx"},
		{"x", "/über"}, {"x", "/über/x"}, {"x", "/Überall"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, p string) {
		if !validHostHeader(host) {
			return // net/http refuses it before gatehouse sees it
		}
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		got := "<nil>"
		if rt := h.router.match(host, p); rt != nil {
			got = rt.name
		}
		if want := refMatch(routes, host, p); got != want {
			t.Fatalf("match(%q, %s) = %s, want %s", host, quoteShort(p), got, want)
		}
	})
}

// quoteShort quotes s, eliding the middle of a long one.
func quoteShort(s string) string {
	if len(s) <= 80 {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q…%q (%d bytes)", s[:40], s[len(s)-20:], len(s))
}

// refMatch is the routing rule, the slow way.
func refMatch(routes []config.Route, host, p string) string {
	h := host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i] // the port: what follows the last colon outside brackets
	}
	h = strings.TrimSuffix(h, ".")
	longest := func(inClass func(routeHost string) bool) string {
		best, bestLen := "", -1
		for _, rc := range routes {
			if inClass(rc.Match.Host) && refUnder(p, rc.Match.PathPrefix) && len(rc.Match.PathPrefix) > bestLen {
				best, bestLen = rc.Name, len(rc.Match.PathPrefix)
			}
		}
		return best
	}
	if name := longest(func(rh string) bool { return rh != "" && !strings.HasPrefix(rh, "*.") && strings.EqualFold(rh, h) }); name != "" {
		return name
	}
	var suffixes []string
	for _, rc := range routes {
		if s, ok := strings.CutPrefix(rc.Match.Host, "*"); ok && len(h) >= len(s) && strings.EqualFold(h[len(h)-len(s):], s) {
			suffixes = append(suffixes, s)
		}
	}
	slices.SortFunc(suffixes, func(a, b string) int { return len(b) - len(a) })
	for _, s := range suffixes {
		if name := longest(func(rh string) bool { return rh == "*"+s }); name != "" {
			return name
		}
	}
	if name := longest(func(rh string) bool { return rh == "" }); name != "" {
		return name
	}
	return "<nil>"
}

// refUnder reports whether p is prefix or lies under it, on a segment
// boundary, without regard to the case of ASCII letters.
func refUnder(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	for i := 1; i <= len(p); i++ {
		if (i == len(p) || p[i] == '/') && equalFoldASCII(p[:i], prefix) {
			return true
		}
	}
	return false
}

// equalFoldASCII reports whether a and b are equal without regard to
// the case of ASCII letters.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validHostHeader is net/http's check of a Host header
// (golang.org/x/net/http/httpguts.ValidHostHeader): these bytes only.
func validHostHeader(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0) {
			return false
		}
	}
	return true
}

// forwardAuthHeaders are the values a forward-auth call may carry.
type forwardAuthHeaders struct {
	originalURL, originalMethod             string
	forwardedURI, forwardedHost             string
	forwardedMethod, forwardedProto, suffix string
}

func (v forwardAuthHeaders) request(trusted bool) *http.Request {
	u, err := url.ParseRequestURI(ForwardAuthPath + v.suffix)
	if err != nil {
		u = &url.URL{Path: ForwardAuthPath}
	}
	r := &http.Request{Method: http.MethodGet, URL: u, Host: "gate.example.com", Header: http.Header{},
		RemoteAddr: "198.51.100.7:40000", RequestURI: u.RequestURI()}
	if trusted {
		r.RemoteAddr = "192.0.2.10:40000"
	}
	for name, value := range map[string]string{
		"X-Original-Url": v.originalURL, "X-Original-Method": v.originalMethod,
		"X-Forwarded-Uri": v.forwardedURI, "X-Forwarded-Host": v.forwardedHost,
		"X-Forwarded-Method": v.forwardedMethod, "X-Forwarded-Proto": v.forwardedProto,
	} {
		if value != "" {
			r.Header.Set(name, value)
		}
	}
	return r
}

// outcome renders what originalRequest made of a call, for comparison.
func outcome(o original, err error) string {
	if err != nil {
		if we, ok := err.(*web.Error); ok {
			return "refused " + we.Code + ": " + we.Detail
		}
		return "refused: " + err.Error()
	}
	return o.method + " " + o.scheme + "://" + o.host + " " + o.url.String()
}

// FuzzForwardAuthHeaders feeds forward-auth calls with arbitrary
// forwarding headers to originalRequest in every mode, from a trusted and
// an untrusted peer: it never panics; an untrusted peer is refused in
// nginx and traefik mode; and the answer depends only on the mode's own
// source: nginx mode never on X-Forwarded-*, traefik mode never on
// X-Original-*, envoy mode on neither (it reads the call's own path,
// method and Host, docs/forward-auth.md). The whole forward-auth answer
// is computed too: never a 5xx.
func FuzzForwardAuthHeaders(f *testing.F) {
	gates := map[string]*gate{}
	for _, mode := range []string{"nginx", "traefik", "envoy"} {
		gates[mode], _ = fuzzGate(f, "forward_auth: {mode: "+mode+"}\ntrusted_proxies: [192.0.2.0/24]\n"+`routes:
  - name: app
    public: [/public]
    allow: {groups: [staff]}
  - name: admin
    match: {path_prefix: /admin}
    allow: {groups: [admins]}
`)
	}
	f.Add("https://app.example.com/admin?x=1", "GET", "/public/x", "app.example.com", "GET", "https", "")
	f.Add("", "", "/admin", "app.example.com", "POST", "http", "/public")
	f.Add("/public", "PUT", "", "", "", "", "/admin?x=1")
	f.Add("http://[::1]:80/x", "", "//evil.com/x", "evil.com:443", "", "ftp", "/%2e%2e/admin")
	f.Add("https://app.example.com/public/../admin", "", "/public/%2e%2e/admin", "", "", "HTTPS", "/public/..;/admin")
	f.Add(":", "\x00", "\r\n", "a b", "GET\n", "javascript", "?")
	f.Add("https://user:pass@app.example.com:8443/a;b?c#d", "OPTIONS", "*", "[", "", "https", "/a%00")
	alternatives := []forwardAuthHeaders{
		{}, // absent
		{originalURL: "https://other.example/admin", originalMethod: "DELETE", forwardedURI: "/admin",
			forwardedHost: "other.example", forwardedMethod: "DELETE", forwardedProto: "http"},
	}
	f.Fuzz(func(t *testing.T, origURL, origMethod, fwdURI, fwdHost, fwdMethod, fwdProto, suffix string) {
		v := forwardAuthHeaders{origURL, origMethod, fwdURI, fwdHost, fwdMethod, fwdProto, suffix}
		for mode, h := range gates {
			for _, trusted := range []bool{true, false} {
				o, err := h.originalRequest(v.request(trusted))
				got := outcome(o, err)
				if !trusted && mode != "envoy" && err != errUntrustedForwarder {
					t.Fatalf("mode %s, untrusted peer, %+v: %s, want refused as untrusted", mode, v, got)
				}
				for _, alt := range alternatives {
					w := v
					if mode == "nginx" || mode == "envoy" {
						w.forwardedURI, w.forwardedHost, w.forwardedMethod, w.forwardedProto =
							alt.forwardedURI, alt.forwardedHost, alt.forwardedMethod, alt.forwardedProto
					}
					if mode == "traefik" || mode == "envoy" {
						w.originalURL, w.originalMethod = alt.originalURL, alt.originalMethod
					}
					if other := outcome(h.originalRequest(w.request(trusted))); other != got {
						t.Fatalf("mode %s, trusted %v: the answer depends on another source's headers:\n%+v\n\t→ %s\n%+v\n\t→ %s",
							mode, trusted, v, got, w, other)
					}
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, v.request(trusted))
				if rec.Code >= 500 {
					t.Fatalf("mode %s, trusted %v, %+v: status %d", mode, trusted, v, rec.Code)
				}
			}
		}
	})
}

// TestForwardAuth_EnvoyIgnoresForwardedProto (found by
// FuzzForwardAuthHeaders; fixed in 137def9): in envoy mode gatehouse
// reads "the call itself: its method, its Host, and the path after
// /_gatehouse/auth" and "Envoy needs no entry [in trusted_proxies]:
// gatehouse reads its path, not its headers" (docs/forward-auth.md), so
// X-Forwarded-Proto must not change the request judged, nor turn it into
// a 400.
func TestForwardAuth_EnvoyIgnoresForwardedProto(t *testing.T) {
	h, _ := fuzzGate(t, "forward_auth: {mode: envoy}\ntrusted_proxies: [192.0.2.0/24]\nroutes:\n  - name: app\n")
	want := outcome(h.originalRequest(forwardAuthHeaders{suffix: "/admin?x=1"}.request(true)))
	for _, proto := range []string{"http", "https", "HTTPS", "ftp"} {
		v := forwardAuthHeaders{forwardedProto: proto, suffix: "/admin?x=1"}
		if got := outcome(h.originalRequest(v.request(true))); got != want {
			t.Errorf("envoy mode, trusted peer, X-Forwarded-Proto %q: %s; want %s, as without the header", proto, got, want)
		}
	}
}
