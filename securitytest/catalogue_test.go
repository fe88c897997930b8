package securitytest

// catalogue_test.go collects, in one table, every attack gatehouse
// defends against, each run end to end (real provider, real cookies, real
// proxy) with the outcome it must have: where the browser lands, the
// status, what the upstream saw, how many sessions the store holds.

import (
	"bufio"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// attack is one way to attack gatehouse, the invariant, requirement or
// advisory it tries to break, and the test that shows it fails.
type attack struct {
	name    string
	defends string
	run     func(t *testing.T)
}

func TestAttackCatalogue(t *testing.T) {
	for _, a := range catalogue() {
		t.Run(a.name, func(t *testing.T) {
			t.Logf("defends: %s", a.defends)
			start := time.Now()
			a.run(t)
			t.Logf("row took %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

func catalogue() []attack {
	return []attack{
		{"open redirect", "README security model \"Redirects\"; RFC 9700 §4.11; CVE-2020-5233, CVE-2020-11053, CVE-2020-4037, CVE-2021-21291, Vouch redirect chaining", openRedirectPayloads},
		{"identity header spoofing", "invariant 6: the upstream sees only gatehouse's identity headers, once each; GHSA-vjrc-mh2v-45x6 (underscores), golang/go#50580 (Connection), GHSA-3q9r-p662-5j8m", identityHeaderSpoofing},
		{"public path bypass", "public routes are decided on the cleaned path and the upstream is sent that path; GHSA-pvrc-wvj2-f59p, Louketo PR #200, GHSA-pxq7-h93f-9jrg", publicPathBypasses},
		{"path read another way by the app", "judge what the app will see: the route and the public verdict hold for every reading of the path (generic; Tomcat, Jetty and Spring cutting ';' parameters; IIS dropping trailing dots and spaces; a server cutting at an encoded '#' or '?'; an app decoding twice), else 400 ambiguous_path; CVE-2020-1957, CVE-2020-13933 (Apache Shiro and Spring), GHSA-pxq7-h93f-9jrg", pathReadingBypasses},
		{"session cookie forgery", "the session cookie is sealed (AES + HMAC, name bound into the MAC) and read only under its exact name; RFC 6265bis cookie prefixes", sessionCookieForgery},
		{"session fixation", "a fresh session ID at every login, the old session deleted; GHSA-f24x-5g9q-753f, OWASP session management", sessionFixation},
		{"cross-site request forgery", "callback state bound to the browser (RFC 9700 §4.7.1, KEYCLOAK-8667); sign-out is a POST with a session-bound token and a same-origin Origin, GET never signs out", crossSiteRequestForgery},
		{"code and state replay", "state is single-use (RFC 9700 §4.7.1); a used code is refused by the provider and gatehouse shows its error page (RFC 6749 §4.1.2)", codeAndStateReplay},
		{"ID token forgery", "OIDC Core §3.1.3.7 ID token validation: asymmetric signature by the provider's key, iss, aud, azp, exp, iat, nonce, sub; RFC 8725 (alg none, HS/RS confusion)", idTokenForgery},
		{"oversized headers", "server.max_header_bytes answers 431; a pile of login cookies neither crashes gatehouse nor creates state (TFA #238)", oversizedHeaders},
		{"unauthenticated flood", "invariant 1: no server-side state before login, so nobody can flood the store to evict real users (Authelia issue #417)", unauthenticatedFlood},
		{"bearer token forgery", "bearer tokens: provider's asymmetric signature, exp, aud in bearer.audiences; RFC 6750 §3.1 (401 invalid_token, never a redirect, never a session)", bearerTokenForgery},
		{"back-channel logout forgery", "OIDC Back-Channel Logout 1.0 §2.6 (signature, events, no nonce); §2.8 (400, sessions untouched)", backchannelLogoutForgery},
		{"forward-auth spoofing", "forwarding headers believed only from trusted_proxies and only from the configured proxy family; GHSA-7x63-xv5r-3p2x", forwardAuthSpoofing},
		{"token exposure in pages", "tokens never leave the server: no gatehouse page or JSON shows a JWT or the session cookie; GHSA-rrqr-7w59-637v", tokenExposureInPages},
		{"login CSRF through a planted login cookie", "invariant 8: the login cookie is __Host- on https, host-only even with cookie.domain, and read only under that exact name (RFC 6265bis cookie prefixes; RFC 9700 §4.7.1)", plantedLoginCookie},
		{"login state replay at any replica", "invariant 1: a login state is consumed in the shared store, apart from the sessions, before the token call (RFC 9700 §4.7.1); a store error stops the login", loginStateReplay},
		{"ID and logout tokens as bearer tokens", "bearer tokens must be access tokens: not logout tokens (typ logout+jwt, events; BCL 1.0 §2.4) nor ID tokens (nonce, at_hash, c_hash); RFC 9068 §2.1, RFC 8725 §3.11", bearerOtherTokenKinds},
		{"back-channel logout naming two users", "a logout token with a sid and a sub ends only sessions with both (OIDC Back-Channel Logout 1.0 §2.4)", backchannelMixedClaims},
		{"secrets in the log", "STYLE \"Log an error once...; tokens, codes, cookie values and keys stay out\"", secretsInTheLog},
		{"open-by-default policy", "invariant 10: an empty policy is a configuration error, never \"anyone\"; a policy with no rule lets nobody pass; anyone only by allow: {any_user: true} (issue 12)", openByDefaultPolicy},
		{"store flooding by one user", "invariant 1: a user whom no route allows gets no session, and one allowed account's logins end only its own oldest sessions (session.max_per_user), so no one evicts another user (issue 12)", storeFloodingByOneUser},
	}
}

// --- shared helpers --------------------------------------------------------

// loopbackOnly is the browsers' transport: it dials loopback addresses
// only, so a redirect that leaves for evil.com fails here instead of
// reaching the network.
var loopbackOnly = &http.Transport{
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("test browser refuses to dial %s: it is not loopback", addr)
		}
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	},
	MaxIdleConnsPerHost: 64,
}

// browser is a test browser that never leaves loopback.
func browser(e *testenv.Env) *testenv.Browser {
	b := e.NewBrowser()
	b.Client.Transport = loopbackOnly
	return b
}

func alice() *mockoidc.MockUser {
	return testenv.User("alice", "alice@example.com", "staff")
}

// newRequest builds a request with headers given as name, value pairs
// (set with Add, so a name may repeat).
func newRequest(t *testing.T, method, rawURL string, body io.Reader, hdr ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

// startAndAuthorize starts a login in b and lets the provider sign user in,
// returning the callback URL the provider sends the browser to (not yet
// visited) and the login cookie the start set.
func startAndAuthorize(t *testing.T, e *testenv.Env, b *testenv.Browser, rd string, user mockoidc.User) (callback string, loginCookie *http.Cookie) {
	t.Helper()
	start := b.Get("/_gatehouse/start?rd=" + url.QueryEscape(rd))
	if start.StatusCode != http.StatusFound {
		t.Fatalf("start: status %d, want 302; body %s", start.StatusCode, start.Body)
	}
	for _, c := range start.Cookies() {
		if c.Name == e.Gateway.Auth().LoginCookieName() {
			loginCookie = c
		}
	}
	e.IdP.QueueUser(user)
	az := browser(e).Get(start.Header.Get("Location"))
	if az.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, want 302; body %s", az.StatusCode, az.Body)
	}
	return az.Header.Get("Location"), loginCookie
}

// loginLocation runs a login with rd up to the callback's answer and
// returns its status and Location (where gatehouse sends the browser).
func loginLocation(t *testing.T, e *testenv.Env, rd string) (int, string) {
	t.Helper()
	b := browser(e)
	cb, _ := startAndAuthorize(t, e, b, rd, alice())
	r := b.Get(cb)
	return r.StatusCode, r.Header.Get("Location")
}

// follow navigates like a browser from rawURL, following up to 12
// redirects, and returns every URL visited and the final status. Unlike
// Browser.Navigate it reports failures instead of ending the test, so a
// table can go on.
func follow(b *testenv.Browser, rawURL string) (hops []string, status int, err error) {
	for range 12 {
		hops = append(hops, rawURL)
		req, err := http.NewRequest(http.MethodGet, rawURL, nil)
		if err != nil {
			return hops, 0, err
		}
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		resp, err := b.Client.Do(req)
		if err != nil {
			return hops, 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 300 || resp.StatusCode > 399 {
			return hops, resp.StatusCode, nil
		}
		loc, err := resp.Location()
		if err != nil {
			return hops, resp.StatusCode, fmt.Errorf("redirect without a usable Location: %w", err)
		}
		rawURL = loc.String()
	}
	return hops, 0, errors.New("more than 12 redirects")
}

// sendRaw writes a request line and headers exactly as given (no client
// cleaning of the target) and returns the response status, or 0 when the
// server closed without answering.
func sendRaw(t *testing.T, e *testenv.Env, method, target string, hdr ...string) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, strings.TrimPrefix(e.URL, "http://"))
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// normHeader folds a header name the way WSGI and PHP do: lower case, '_'
// read as '-'.
func normHeader(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// isErrorPage reports whether a body is one of gatehouse's error pages.
func isErrorPage(body string) bool { return strings.Contains(body, `id="request-id"`) }

// --- JWT helpers -------------------------------------------------------------

var otherRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func b64JSON(v any) string {
	j, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(j)
}

// makeJWT builds a compact JWS from a header and claims; sign nil leaves
// the signature empty.
func makeJWT(header, claims map[string]any, sign func(input []byte) []byte) string {
	in := b64JSON(header) + "." + b64JSON(claims)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(in))
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func rs256(k *rsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		h := sha256.Sum256(in)
		s, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
		if err != nil {
			panic(err)
		}
		return s
	}
}

func hs256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// jwtClaims decodes a JWT's claims without checking anything.
func jwtClaims(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// publicKeySecrets are the encodings of the provider's public key an
// algorithm-confusion attacker uses as an HMAC secret.
func publicKeySecrets(t *testing.T, pub *rsa.PublicKey) []struct {
	enc    string
	secret []byte
} {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		enc    string
		secret []byte
	}{
		{"PEM PKIX", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})},
		{"PEM PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})},
		{"DER PKIX", der},
	}
}

func providerKid(t *testing.T, e *testenv.Env) string {
	t.Helper()
	kid, err := e.IdP.Keypair.KeyID()
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

// tokenTap sits in front of the provider's token endpoint: it records
// every token response gatehouse receives and, when tamper is set,
// replaces the id_token in it.
type tokenTap struct {
	mu        sync.Mutex
	tamper    func(idToken string) string
	responses []map[string]any
}

func (p *tokenTap) setTamper(f func(string) string) {
	p.mu.Lock()
	p.tamper = f
	p.mu.Unlock()
}

func (p *tokenTap) middleware(next http.Handler) http.Handler {
	return testenv.RewriteTokenResponse(next, func(m map[string]any) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		tampered := false
		if idt, ok := m["id_token"].(string); ok && p.tamper != nil {
			m["id_token"] = p.tamper(idt)
			tampered = true
		}
		p.responses = append(p.responses, m)
		return tampered
	})
}

// tokens returns every token string the provider handed gatehouse.
func (p *tokenTap) tokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.responses {
		for _, k := range []string{"id_token", "access_token", "refresh_token"} {
			if s, ok := m[k].(string); ok && s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func (p *tokenTap) lastIDToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.responses) - 1; i >= 0; i-- {
		if s, ok := p.responses[i]["id_token"].(string); ok {
			return s
		}
	}
	return ""
}

// --- 1. open redirects -------------------------------------------------------

func openRedirectPayloads(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "redirect_allow_hosts: [app.example.com, .apps.example.com]\n"})
	host := strings.TrimPrefix(e.URL, "http://")
	_, port, _ := net.SplitHostPort(host)
	idp, _ := url.Parse(e.IdP.Issuer())

	hostile := []string{
		// Scheme-relative and backslash forms (CVE-2020-5233).
		"//evil.com", "///evil.com", "////evil.com", "/\\evil.com", "\\\\evil.com", "/\\/evil.com", "\\/evil.com",
		// Whitespace and control characters, raw and encoded (CVE-2020-11053, CVE-2020-4037).
		"/%09/evil.com", "/%0a/evil.com", "/%0d/evil.com", "/%0d%0a/evil.com", "/%0b/evil.com",
		"/\t/evil.com", "/\r\n/evil.com", "/\t\t/\t\\evil.com",
		// Encoded slashes and backslashes, single and double, mixed case.
		// Double encoding: the README promises no encoded slashes or
		// whitespace; an app or cache that decodes once more reads "//".
		"/%5cevil.com", "/%5Cevil.com", "/%5c%5cevil.com", "%2f%2fevil.com", "/%2f/evil.com", "/%2F%2Fevil.com",
		"%252f%252fevil.com", "/%252f/evil.com", "/%252F%252Fevil.com", "/%255c/evil.com", "/%2509/evil.com",
		// Dot segments.
		"/./\\evil.com", "/.//evil.com", "/./../../\\evil.com", "/%2e%2e//evil.com", "//evil.com/%2f..",
		// Other schemes and scheme spellings.
		"https://evil.com", "HTTPS://evil.com", "HtTpS://evil.com", "https:evil.com", "https:/evil.com",
		"http:/\\evil.com", "http:\\\\evil.com", "https:///evil.com",
		"javascript:alert(1)", "JaVaScRiPt:alert(1)", "javascript://%0aalert(1)", " javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
		"vbscript:msgbox(1)",
		// User info.
		"http://" + host + "@evil.com/", "https://evil.com@" + host + "/", "//user:pass@evil.com/",
		"http://evil.com#@" + host + "/", "http://evil.com\\@" + host + "/", "http://" + host + "%40evil.com/",
		// Unicode look-alikes of / and . , raw and percent-encoded (auth.Redirects
		// documents that a path holding a non-ASCII byte once decoded is refused).
		"/〱evil.com", "/\u2215evil.com", "/\uff0f\uff0fevil.com", "https://evil\u3002com/",
		"/%E3%80%B1evil.com", "/%EF%BC%8F%EF%BC%8Fevil.com", "/%E2%88%95evil.com",
		// IP encodings and other spellings of gatehouse's own address.
		"http://2130706433:" + port + "/", "http://0x7f.0.0.1:" + port + "/", "http://0177.0.0.1:" + port + "/",
		"http://127.1:" + port + "/", "http://[::ffff:127.0.0.1]:" + port + "/", "http://localhost:" + port + "/",
		"http://127.0.0.1:" + port + ".evil.com/", "http://2130706433/",
		// Allow-list confusion (CVE-2021-21291, Vouch 910943a).
		"https://app.example.com.evil.com/", "https://app.example.com@evil.com/", "https://evilapps.example.com/",
		"https://apps.example.com/", "HTTPS:app.example.com/x", "https:app.example.com/x", "https://evil.com/app.example.com",
		"http://evil.com?" + host, "https://evil.com/" + host,
		// Redirect chains through the app.
		"/?next=https://evil.com", "/login?next=//evil.com", "/x?url=https%3A%2F%2Fevil.com", "/x?r=https:/evil.com",
		// The double-encoded chain is a query carrying another URL to an app
		// that decodes its parameter once more.
		"/x?to=%2F%2Fevil.com", "/x?next=https%253A%252F%252Fevil.com", "/x?u=HTTPS://EVIL.COM",
	}
	if len(hostile) < 30 {
		t.Fatalf("only %d payloads", len(hostile))
	}
	t.Logf("%d hostile rd payloads through the real login", len(hostile))
	allowedHosts := map[string]bool{host: true, idp.Host: true}
	for _, rd := range hostile {
		b := browser(e)
		e.IdP.QueueUser(alice())
		hops, status, err := follow(b, e.URL+"/_gatehouse/start?rd="+url.QueryEscape(rd))
		final := hops[len(hops)-1]
		switch {
		case err != nil:
			t.Errorf("rd=%q: %v (hops %q); want to land on %s/", rd, err, hops, e.URL)
		case final != e.URL+"/" || status != http.StatusOK:
			t.Errorf("rd=%q: landed on %s (status %d), want %s/ (200)", rd, final, status, e.URL)
		}
		for _, h := range hops {
			if u, err := url.Parse(h); err != nil || !allowedHosts[u.Host] {
				t.Errorf("rd=%q: the browser was sent to %s, outside gatehouse and the provider", rd, h)
			}
		}
	}

	// The rules must not refuse everything: safe targets are kept.
	t.Run("safe targets kept", func(t *testing.T) {
		e.IdP.QueueUser(alice())
		hops, status, err := follow(browser(e), e.URL+"/_gatehouse/start?rd="+url.QueryEscape("/ok/page?x=1&y=%2F"))
		if err != nil || hops[len(hops)-1] != e.URL+"/ok/page?x=1&y=%2F" || status != 200 {
			t.Errorf("rd=/ok/page?x=1&y=%%2F: landed on %s (status %d, %v), want %s/ok/page?x=1&y=%%2F", hops[len(hops)-1], status, err, e.URL)
		}
		for _, rd := range []string{
			"https://app.example.com/page?x=1",
			"https://crm.apps.example.com/x",
			"https://a.b.apps.example.com/deep/path",
			e.URL + "/own?y=2",
			"HTTPS://crm.apps.example.com/x",                         // schemes are case-insensitive (RFC 3986 §3.1)
			strings.Replace(e.URL, "http://", "HTTP://", 1) + "/own", // the external origin, upper-case scheme
		} {
			if status, loc := loginLocation(t, e, rd); status != http.StatusFound || loc != rd {
				t.Errorf("allowed rd=%q: callback answered %d Location %q, want 302 %q", rd, status, loc, rd)
			}
		}
	})
}

// --- 2. identity header spoofing ---------------------------------------------

// spoofable are header names an upstream may believe: identity headers of
// gatehouse and its peers, client address and URL overrides, forwarding
// headers.
var spoofable = []string{
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username",
	"X-Auth-Request-Access-Token", "X-Auth-Request-Redirect",
	"X-Forwarded-Access-Token", "X-Forwarded-Id-Token", "X-Gatehouse-Assertion", "X-Gatehouse-User",
	"X-Real-Ip", "X-Client-Ip", "True-Client-Ip",
	"X-Original-Url", "X-Original-Uri", "X-Rewrite-Url", "X-Original-Method", "X-Original-Host",
	"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix",
	"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Server", "Forwarded",
}

// lookalikes are the spellings of a header name an upstream may fold into
// it: case variants and '_' for '-'.
func lookalikes(name string) []string {
	under := strings.ReplaceAll(name, "-", "_")
	alt := []byte(strings.ToLower(name))
	for i := 0; i < len(alt); i += 2 {
		if alt[i] >= 'a' && alt[i] <= 'z' {
			alt[i] -= 'a' - 'A'
		}
	}
	firstUnder := strings.Replace(name, "-", "_", 1)
	var out []string
	for _, v := range []string{name, strings.ToLower(name), strings.ToUpper(name), string(alt), under, strings.ToLower(under), firstUnder} {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func identityHeaderSpoofing(t *testing.T) {
	// Loopback is trusted by default; trust another network so the test
	// client is an ordinary client.
	e := testenv.New(t, testenv.Options{YAML: `trusted_proxies: [192.0.2.0/24]
routes:
  - name: docs
    match: {path_prefix: /docs}
    upstream: ${UPSTREAM}
    public: [/docs]
`})
	host := strings.TrimPrefix(e.URL, "http://")
	signedIn := browser(e)
	if r := signedIn.Login(alice(), "/"); r.StatusCode != 200 {
		t.Fatalf("login: %d", r.StatusCode)
	}

	// spoofed returns a request to path carrying every look-alike of every
	// spoofable header, each twice, and Connection tokens asking the proxy
	// to drop the headers gatehouse sets.
	spoofed := func(path string) *http.Request {
		req := newRequest(t, http.MethodGet, e.URL+path, nil, "Accept", "application/json")
		n := 0
		for _, name := range spoofable {
			for _, v := range lookalikes(name) {
				n++
				// Raw keys: Header.Set would canonicalise the look-alikes away.
				req.Header[v] = []string{fmt.Sprintf("evil-%d-a", n), fmt.Sprintf("evil-%d-b", n)}
			}
		}
		req.Header["Connection"] = []string{
			"keep-alive, X-Forwarded-User, X-Forwarded-Email, X-Forwarded-Groups, X-Forwarded-Preferred-Username",
			"X-Gatehouse-Assertion, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, x-forwarded-user, X_Forwarded_Email",
		}
		return req
	}
	// gatehouse's own headers on a signed-in request, with the values it
	// must set.
	own := map[string]string{
		"x-forwarded-user": "alice", "x-forwarded-email": "alice@example.com", "x-forwarded-groups": "staff",
		"x-forwarded-preferred-username": "alice", "x-forwarded-for": "127.0.0.1",
		"x-forwarded-host": host, "x-forwarded-proto": "http", "x-gatehouse-assertion": "",
	}
	// check compares what the upstream received with want (normalised
	// name → value, "" for any value); every other spoofable name, and
	// every look-alike, must be absent.
	check := func(t *testing.T, up http.Header, want map[string]string) {
		t.Helper()
		seen := map[string][]string{} // normalised name → raw names
		for k, vs := range up {
			for _, v := range vs {
				if strings.Contains(v, "evil") {
					t.Errorf("upstream received the client's %s: %q", k, v)
				}
			}
			seen[normHeader(k)] = append(seen[normHeader(k)], k)
		}
		for _, name := range spoofable {
			n := normHeader(name)
			raw := seen[n]
			wantV, wanted := want[n]
			if !wanted {
				if len(raw) != 0 {
					t.Errorf("upstream received %v (%q), want no %s at all", raw, up.Values(raw[0]), name)
				}
				continue
			}
			if len(raw) != 1 || raw[0] != http.CanonicalHeaderKey(name) {
				t.Errorf("upstream header names folding to %s: %v, want exactly [%s]", n, raw, http.CanonicalHeaderKey(name))
				continue
			}
			got := up.Values(raw[0])
			if len(got) != 1 || (wantV != "" && got[0] != wantV) {
				t.Errorf("upstream %s = %q, want exactly one value %q", name, got, wantV)
			}
		}
		for n, raw := range seen {
			if _, ok := want[n]; !ok && (strings.HasPrefix(n, "x-forwarded-") || strings.HasPrefix(n, "x-gatehouse-")) {
				t.Errorf("upstream received %v, which no client may set", raw)
			}
		}
	}

	t.Run("signed in", func(t *testing.T) {
		r := signedIn.Do(spoofed("/spoof"))
		if r.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200 from the upstream", r.StatusCode)
		}
		check(t, e.LastRequest().Header, own)
	})
	t.Run("public path, anonymous", func(t *testing.T) {
		before := len(e.Requests())
		r := browser(e).Do(spoofed("/docs/page"))
		if r.StatusCode != http.StatusOK || len(e.Requests()) != before+1 {
			t.Fatalf("status %d, upstream reached %d times; want 200, once", r.StatusCode, len(e.Requests())-before)
		}
		check(t, e.LastRequest().Header, map[string]string{"x-forwarded-for": "127.0.0.1", "x-forwarded-host": host, "x-forwarded-proto": "http"})
	})
	t.Run("public path, signed in", func(t *testing.T) {
		r := signedIn.Do(spoofed("/docs/page"))
		if r.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", r.StatusCode)
		}
		// Whatever gatehouse itself sends there, nothing of the client's.
		up := e.LastRequest().Header
		want := map[string]string{"x-forwarded-for": "127.0.0.1", "x-forwarded-host": host, "x-forwarded-proto": "http"}
		for _, n := range []string{"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-preferred-username", "x-gatehouse-assertion"} {
			if up.Get(n) != "" {
				want[n] = own[n]
			}
		}
		check(t, up, want)
	})
	t.Run("protected path, anonymous", func(t *testing.T) {
		before := len(e.Requests())
		r := browser(e).Do(spoofed("/admin"))
		if r.StatusCode != http.StatusUnauthorized || len(e.Requests()) != before {
			t.Errorf("status %d, upstream reached %d times; want 401 and no upstream call", r.StatusCode, len(e.Requests())-before)
		}
	})
}

// --- 3. public path bypasses -------------------------------------------------

func publicPathBypasses(t *testing.T) {
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: `routes:
  - name: site
    match: {path_prefix: /}
    upstream: ${UPSTREAM}
    public: [/public]
`})
	for _, tc := range []struct {
		target string
		served string // the path the upstream must see; "" = must not be reached
	}{
		{"/public/x", "/public/x"}, // control: public
		{"/admin", ""},             // control: protected
		{"/public/../admin", ""},
		{"/public/%2e%2e/admin", ""},
		{"/public/%2E%2E/admin", ""},
		{"/public/.%2e/admin", ""},
		{"/public/%2e./admin", ""},
		{"/public/x/../../admin", ""},
		{"/public/%2e%2e%2fadmin", ""},
		{"/public%2fadmin", ""},
		{"/public%2Fadmin", ""},
		{"/public%2f..%2fadmin", ""},
		{"/public/..%2fadmin", ""},
		{"/public%5c..%5cadmin", ""},
		{"/public\\..\\admin", ""},
		{"//admin", ""},
		{"///public/../admin", ""},
		{"//public", "/public"},
		{"//public//x", "/public/x"},
		{"/PUBLIC/x", ""},
		{"/Public/x", ""},
		{"/publicx", ""},
		{"/public;/../admin", ""},
		{"/public/..;/admin", ""},
		{"/public/..%3B/admin", ""},
		{"/public;x=1/../admin", ""},
		{"/admin;/public", ""},
		{"/admin;public", ""},
		{"/public%00/admin", ""},
		{"/public/%00/../../admin", ""},
		{"/admin%00/public", ""},
		{"/public%23/../admin", ""},
		{"/admin%23/public", ""},
		{"/admin#/public", ""},
		{"/public#/../admin", ""},
		{"/public/%23/../admin", "/public/admin"}, // "#" is a segment, ".." removes it: truly public
		{"/public./x", ""},
		{"/public../admin", ""},
		{"/admin.", ""},
		{"/admin/..", ""},
		{"/public/..", ""},
		{"/public/x/..", "/public"},
		{"/public/.", "/public"},
		{"/./admin", ""},
		{"/%2e/admin", ""},
		{"/admin/../public/x", "/public/x"},
		{"/public/%252e%252e/admin", ""},    // double encoding: an app decoding again reads /admin
		{"/public/..%252f..%252fadmin", ""}, // double-encoded slashes
		{"/%70ublic/x", "/public/x"},
		{"/public/x?y=/../admin", "/public/x"},
		{"http://example.com/public/../admin", ""},
		{"http://example.com/public/x", "/public/x"},
	} {
		before := len(e.Requests())
		status := sendRaw(t, e, http.MethodGet, tc.target, "Accept", "application/json")
		reached := len(e.Requests()) > before
		if tc.served == "" {
			if reached {
				t.Errorf("GET %s without a session reached the upstream as %q (status %d); want it refused", tc.target, e.LastRequest().URL.Path, status)
			} else if status != 400 && status != 401 {
				t.Errorf("GET %s without a session: status %d, want 400 or 401", tc.target, status)
			}
			continue
		}
		if !reached || status != 200 {
			t.Errorf("GET %s (public): status %d, upstream reached %v; want 200 from the upstream", tc.target, status, reached)
			continue
		}
		if got := e.LastRequest().URL.Path; got != tc.served {
			t.Errorf("GET %s: upstream served %q, want the cleaned path %q", tc.target, got, tc.served)
		}
	}
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("store holds %d sessions, want 0", n)
	}
}

// --- 3b. a path the app reads another way -------------------------------------

// pathReadingEnv is a public catch-all with a protected /admin route
// inside it, and a signed-in user outside /admin's group.
func pathReadingEnv(t *testing.T) (e *testenv.Env, outsider string) {
	t.Helper()
	e = testenv.New(t, testenv.Options{NoUpstream: true, YAML: `routes:
  - name: site
    upstream: ${UPSTREAM}
    public: [/]
    allow: {groups: [staff, admins]}
  - name: admin
    match: {path_prefix: /admin}
    upstream: ${UPSTREAM}
    allow: {groups: [admins]}
`})
	b := browser(e)
	b.Login(testenv.User("sam", "sam@example.com", "staff"), "/_gatehouse/start?rd=/")
	return e, e.Gateway.Auth().SessionCookieName() + "=" + b.SessionCookie()
}

// pathReadingBypasses sends /admin addresses that some server family
// reads as /admin while the generic reading is the public catch-all:
// refused (400) without a session and for a user outside /admin's group,
// never reaching the upstream; a ";jsessionid=" inside one route still
// passes, sent as it was judged.
func pathReadingBypasses(t *testing.T) {
	e, outsider := pathReadingEnv(t)
	for _, target := range []string{
		"/admin;jsessionid=1/secret", "/admin;x", "/admin;/secret", "/ADMIN;x/secret", // servlet path parameters
		"/admin%3bx/secret", "/admin%3B/secret", // an encoded ';' (decode, then cut)
		"/admin./secret", "/admin%2e/secret", "/admin%20/secret", "/admin.%20/secret", "/admin::$DATA/secret", // IIS, NTFS
		"/admin%23/secret", "/admin%3f/secret", // a server cutting at '#' or '?'
		"/%2561dmin/secret", "/admin%253bx/secret", // an app that decodes twice
		"//admin%3bx//secret", "/x/../admin;x/secret", "/admin.;x/secret", // combinations
		"/public/..;/admin", "/admin%09/secret", "/admin%5csecret", // refused before
	} {
		for _, who := range [][]string{{"Accept", "application/json"}, {"Accept", "application/json", "Cookie", outsider}} {
			before := len(e.Requests())
			status := sendRaw(t, e, http.MethodGet, target, who...)
			if len(e.Requests()) > before || status != 400 {
				t.Errorf("GET %s (%d headers): status %d, upstream reached %v; want 400, not reached", target, len(who)/2, status, len(e.Requests()) > before)
			}
		}
	}
	for _, tc := range []struct{ target, sent string }{
		{"/public/index.html;jsessionid=ABC", "/public/index.html;jsessionid=ABC"},
		{"/adminx;y", "/adminx;y"},
	} {
		if status := sendRaw(t, e, http.MethodGet, tc.target); status != 200 {
			t.Errorf("GET %s: status %d, want 200", tc.target, status)
		} else if got := e.LastRequest().RequestURI; got != tc.sent {
			t.Errorf("GET %s: the upstream was sent %q, want %q", tc.target, got, tc.sent)
		}
	}
	if status := sendRaw(t, e, http.MethodGet, "/admin/page;jsessionid=X", "Accept", "application/json", "Cookie", outsider); status != 403 {
		t.Errorf("GET /admin/page;jsessionid=X outside the group: status %d, want 403", status)
	}
}

// --- 4. session cookie forgery -----------------------------------------------

func sessionCookieForgery(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := browser(e)
	b.Login(alice(), "/")
	name := e.Gateway.Auth().SessionCookieName()
	good := b.SessionCookie()
	if good == "" {
		t.Fatal("no session cookie after login")
	}
	own, err := sessions.NewCodec(name, "session", e.Config.Cookie.Keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := own.OpenID(good)
	if err != nil {
		t.Fatalf("the session cookie does not open: %v", err)
	}
	foreign, _ := sessions.NewCodec(name, "session", [][]byte{[]byte(strings.Repeat("k", 32))}, time.Hour)
	foreignValue, _ := foreign.SealID(id) // the right ID under another secret
	otherName, _ := sessions.NewCodec("other", "session", e.Config.Cookie.Keys, time.Hour)
	movedValue, _ := otherName.SealID(id) // the right secret, another cookie's name
	_, login := startAndAuthorize(t, e, browser(e), "/", alice())
	if login == nil {
		t.Fatal("no login cookie at start")
	}
	// flip replaces the byte at i with another base64url character.
	flip := func(i int) string {
		v := []byte(good)
		v[i] = 'A'
		if good[i] == 'A' {
			v[i] = 'B'
		}
		return string(v)
	}
	for _, tc := range []struct {
		name   string
		cookie []string // Cookie header lines
		status int
	}{
		{"tampered first byte", []string{name + "=" + flip(0)}, 401},
		{"tampered middle byte", []string{name + "=" + flip(len(good)/2)}, 401},
		{"tampered last byte", []string{name + "=" + flip(len(good)-1)}, 401},
		{"truncated by 4", []string{name + "=" + good[:len(good)-4]}, 401},
		{"truncated to half", []string{name + "=" + good[:len(good)/2]}, 401},
		{"extended", []string{name + "=" + good + "AAAA"}, 401},
		{"oversize 5000 bytes", []string{name + "=" + strings.Repeat("A", 5000)}, 401},
		{"oversize: real value padded past 4096", []string{name + "=" + good + strings.Repeat("A", 4200)}, 401},
		{"empty", []string{name + "="}, 401},
		{"garbage", []string{name + "=not-a-cookie"}, 401},
		{"sealed with another secret", []string{name + "=" + foreignValue}, 401},
		{"sealed for another cookie name", []string{name + "=" + movedValue}, 401},
		{"the login cookie's value", []string{name + "=" + login.Value}, 401},
		{"upper-case name", []string{strings.ToUpper(name) + "=" + good}, 401},
		{"title-case name", []string{strings.ToUpper(name[:1]) + name[1:] + "=" + good}, 401},
		{"__HOST- prefix", []string{"__HOST-" + name + "=" + good}, 401},
		{"__Host- prefix", []string{"__Host-" + name + "=" + good}, 401},
		{"__Secure- prefix", []string{"__Secure-" + name + "=" + good}, 401},
		{"forged only, twice", []string{name + "=forged; " + name + "=" + flip(3)}, 401},
		{"forged first, real second", []string{name + "=forged; " + name + "=" + good}, 200},
		{"forged first, real second, two Cookie headers", []string{name + "=forged", "a=1; " + name + "=" + good}, 200},
		{"another secret's cookie first, real second", []string{name + "=" + foreignValue + "; " + name + "=" + good}, 200},
		{"real first, forged second", []string{name + "=" + good + "; " + name + "=forged"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, e.URL+"/cookie", nil, "Accept", "application/json")
			req.Header["Cookie"] = tc.cookie
			before := len(e.Requests())
			r := browser(e).Do(req)
			if r.StatusCode != tc.status {
				t.Fatalf("Cookie %.120q: status %d, want %d", tc.cookie, r.StatusCode, tc.status)
			}
			reached := len(e.Requests()) > before
			if tc.status != 200 {
				if reached {
					t.Errorf("Cookie %.120q reached the upstream", tc.cookie)
				}
				return
			}
			up := e.LastRequest()
			if got := up.Header.Get("X-Forwarded-User"); !reached || got != "alice" {
				t.Errorf("upstream reached %v as %q, want alice", reached, got)
			}
			if c := up.Header.Get("Cookie"); strings.Contains(c, name+"=") {
				t.Errorf("upstream received gatehouse's cookie: %q", c)
			}
		})
	}
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("store holds %d sessions, want alice's only", n)
	}
	if r := b.Get("/", "Accept", "application/json"); r.StatusCode != 200 {
		t.Errorf("the real cookie stopped working: %d", r.StatusCode)
	}
}

// --- 5. session fixation -----------------------------------------------------

func sessionFixation(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	name := e.Gateway.Auth().SessionCookieName()
	codec, err := sessions.NewCodec(name, "session", e.Config.Cookie.Keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	idOf := func(v string) sessions.ID {
		id, err := codec.OpenID(v)
		if err != nil {
			t.Fatalf("cookie %q does not open: %v", v, err)
		}
		return id
	}

	// The attacker signs in, then plants their cookie in the victim's browser.
	attacker := browser(e)
	attacker.Login(testenv.User("mallory", "mallory@example.com"), "/")
	planted := attacker.SessionCookie()
	victim := browser(e)
	victim.SetCookie(name, planted)
	r := victim.Login(testenv.User("victim", "victim@example.com"), "/_gatehouse/start?rd=/")
	if r.StatusCode != 200 {
		t.Fatalf("victim login: %d", r.StatusCode)
	}
	got := victim.SessionCookie()
	if got == "" || got == planted || idOf(got) == idOf(planted) {
		t.Fatalf("planted cookie survived sign-in: before %.20q…, after %.20q…; want a new session ID", planted, got)
	}
	if who := e.LastRequest().Header.Get("X-Forwarded-User"); who != "victim" {
		t.Errorf("after sign-in the upstream saw %q, want victim", who)
	}
	if r := attacker.Get("/", "Accept", "application/json"); r.StatusCode != 401 {
		t.Errorf("the planted session still works: status %d, want 401", r.StatusCode)
	}
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("store holds %d sessions, want the victim's only", n)
	}

	// Planted while the victim's login is in flight (after start, before
	// the callback): the callback itself must issue a new ID and end the
	// planted session.
	mallory2 := browser(e)
	mallory2.Login(testenv.User("mallory2", "mallory2@example.com"), "/")
	planted2 := mallory2.SessionCookie()
	victim2 := browser(e)
	cb, _ := startAndAuthorize(t, e, victim2, "/", testenv.User("victim2", "victim2@example.com"))
	victim2.SetCookie(name, planted2)
	if r := victim2.Get(cb); r.StatusCode != http.StatusFound {
		t.Fatalf("victim2 callback: %d", r.StatusCode)
	}
	if got := victim2.SessionCookie(); got == "" || got == planted2 || idOf(got) == idOf(planted2) {
		t.Errorf("cookie planted mid-login survived the callback: want a new session ID")
	}
	if r := mallory2.Get("/", "Accept", "application/json"); r.StatusCode != 401 {
		t.Errorf("the session planted mid-login still works after the victim's sign-in: status %d, want 401", r.StatusCode)
	}

	// A forged value planted before sign-in is replaced too.
	other := browser(e)
	other.SetCookie(name, "planted-by-attacker")
	other.Login(testenv.User("carol", "carol@example.com"), "/_gatehouse/start?rd=/")
	if v := other.SessionCookie(); v == "planted-by-attacker" || v == "" {
		t.Errorf("forged planted cookie after sign-in: %q, want a new sealed ID", v)
	}
}

// --- 6. cross-site request forgery -------------------------------------------

func crossSiteRequestForgery(t *testing.T) {
	e := testenv.New(t, testenv.Options{})

	t.Run("callback", func(t *testing.T) {
		attacker := browser(e)
		cb, _ := startAndAuthorize(t, e, attacker, "/", testenv.User("mallory", "mallory@example.com"))
		for _, tc := range []struct {
			name    string
			started bool   // the victim has a login of its own in flight
			reason  string // the check that must refuse it
		}{
			{"victim with its own login in flight", true, "state_mismatch"},
			{"victim with no login cookie", false, "no_login_cookie"},
		} {
			victim := browser(e)
			if tc.started {
				victim.Get("/_gatehouse/start?rd=/")
			}
			logFrom := len(e.Logs.String())
			r := victim.Get(cb, "Accept", "text/html")
			if r.StatusCode != http.StatusBadRequest || !isErrorPage(r.Body) {
				t.Errorf("%s opened the attacker's callback: status %d, want 400 error page", tc.name, r.StatusCode)
			}
			if logs := e.Logs.String()[logFrom:]; !strings.Contains(logs, `"reason":"`+tc.reason+`"`) {
				t.Errorf("%s: refusal not logged with reason %s (the state check must refuse it, before any code exchange); log:\n%.800s", tc.name, tc.reason, logs)
			}
			if victim.SessionCookie() != "" || e.Gateway.Store.Len() != 0 {
				t.Errorf("%s: session cookie %v, store %d; want none", tc.name, victim.SessionCookie() != "", e.Gateway.Store.Len())
			}
		}
		// Control: the callback was valid, in the browser that started it.
		if r := attacker.Get(cb); r.StatusCode != http.StatusFound || attacker.SessionCookie() == "" {
			t.Errorf("the attacker's own callback: status %d; want 302 and a session (else the refusals above prove nothing)", r.StatusCode)
		}
	})

	t.Run("logout", func(t *testing.T) {
		a := browser(e)
		a.Login(alice(), "/")
		mallory := browser(e)
		mallory.Login(testenv.User("mallory", "mallory@example.com"), "/")
		page := a.Get("/_gatehouse/logout", "Accept", "text/html")
		csrf := between(page.Body, `name="csrf" value="`, `"`)
		if page.StatusCode != 200 || csrf == "" {
			t.Fatalf("logout page: status %d, csrf %q", page.StatusCode, csrf)
		}
		foreignCSRF := between(mallory.Get("/_gatehouse/logout", "Accept", "text/html").Body, `name="csrf" value="`, `"`)
		signedIn := func() bool { return a.Get("/_gatehouse/whoami").StatusCode == 200 }

		for _, tc := range []struct {
			name   string
			method string
			path   string
			body   string
			hdr    []string
		}{
			{"GET (img tag)", "GET", "/_gatehouse/logout", "", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}},
			{"GET with the right token", "GET", "/_gatehouse/logout?csrf=" + csrf, "", nil},
			{"HEAD", "HEAD", "/_gatehouse/logout?csrf=" + csrf, "", nil},
			{"POST without token, foreign Origin", "POST", "/_gatehouse/logout", "", []string{"Origin", "https://evil.example"}},
			{"POST without token, no Origin", "POST", "/_gatehouse/logout", "", nil},
			{"POST with a forged token", "POST", "/_gatehouse/logout", "csrf=00ff", []string{"Origin", e.URL}},
			{"POST with another session's token", "POST", "/_gatehouse/logout", "csrf=" + foreignCSRF, []string{"Origin", e.URL}},
			{"POST with the token, foreign Origin", "POST", "/_gatehouse/logout", "csrf=" + csrf, []string{"Origin", "https://evil.example"}},
			{"POST with the token, look-alike Origin", "POST", "/_gatehouse/logout", "csrf=" + csrf, []string{"Origin", e.URL + ".evil.example"}},
			{"POST with the token, https Origin of the same host", "POST", "/_gatehouse/logout", "csrf=" + csrf, []string{"Origin", strings.Replace(e.URL, "http:", "https:", 1)}},
			{"POST with the token in the query only", "POST", "/_gatehouse/logout?csrf=" + csrf, "", []string{"Origin", e.URL}},
		} {
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(tc.body)
			}
			req := newRequest(t, tc.method, e.URL+tc.path, body, append([]string{"Accept", "text/html"}, tc.hdr...)...)
			if tc.method == "POST" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			r := a.Do(req)
			if tc.method == "POST" && r.StatusCode != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403", tc.name, r.StatusCode)
			}
			if !signedIn() {
				t.Fatalf("%s signed alice out", tc.name)
			}
		}
		if n := e.Gateway.Store.Len(); n < 2 {
			t.Errorf("store holds %d sessions, want alice's and mallory's", n)
		}
		// Control: gatehouse's own form signs out.
		req := newRequest(t, "POST", e.URL+"/_gatehouse/logout", strings.NewReader("csrf="+csrf), "Origin", e.URL, "Content-Type", "application/x-www-form-urlencoded")
		if r := a.Do(req); r.StatusCode != http.StatusSeeOther || signedIn() {
			t.Errorf("own sign-out form: status %d, still signed in %v; want 303 and signed out", r.StatusCode, signedIn())
		}
	})
}

// --- 7. code and state replay ------------------------------------------------

func codeAndStateReplay(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := browser(e)
	cb, loginCookie := startAndAuthorize(t, e, b, "/x", alice())
	if r := b.Get(cb); r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/x" {
		t.Fatalf("first callback: %d → %q, want 302 → /x", r.StatusCode, r.Header.Get("Location"))
	}
	first := b.SessionCookie()
	code := func() string { u, _ := url.Parse(cb); return u.Query().Get("code") }()
	exchanges := e.Grants("authorization_code")

	t.Run("callback URL replayed in the same browser", func(t *testing.T) {
		r := b.Get(cb, "Accept", "text/html")
		if r.StatusCode != http.StatusBadRequest || !isErrorPage(r.Body) {
			t.Errorf("status %d, want 400 error page", r.StatusCode)
		}
		if n := e.Grants("authorization_code"); n != exchanges {
			t.Errorf("the replayed state reached the token endpoint (%d exchanges, want %d)", n, exchanges)
		}
		if b.SessionCookie() != first || e.Gateway.Store.Len() != 1 {
			t.Errorf("replay changed the session: cookie changed %v, store %d", b.SessionCookie() != first, e.Gateway.Store.Len())
		}
	})
	t.Run("callback URL replayed with a copy of the original login cookie", func(t *testing.T) {
		thief := browser(e)
		r := thief.Get(cb, "Accept", "text/html", "Cookie", loginCookie.Name+"="+loginCookie.Value)
		if r.StatusCode != http.StatusBadRequest || !isErrorPage(r.Body) {
			t.Errorf("status %d, want 400 error page", r.StatusCode)
		}
		if thief.SessionCookie() != "" || e.Gateway.Store.Len() != 1 {
			t.Errorf("replay created a session: cookie %v, store %d", thief.SessionCookie() != "", e.Gateway.Store.Len())
		}
	})
	t.Run("used code in a fresh login", func(t *testing.T) {
		fresh := browser(e)
		start := fresh.Get("/_gatehouse/start?rd=/y")
		loc, _ := url.Parse(start.Header.Get("Location"))
		state := loc.Query().Get("state")
		before := e.Grants("authorization_code")
		r := fresh.Get("/_gatehouse/callback?code="+url.QueryEscape(code)+"&state="+url.QueryEscape(state), "Accept", "text/html")
		if r.StatusCode != http.StatusBadRequest || !isErrorPage(r.Body) || !strings.Contains(r.Body, "/_gatehouse/start?rd=") {
			t.Errorf("status %d, want gatehouse's 400 error page with a way to sign in again; body %.300s", r.StatusCode, r.Body)
		}
		if e.Grants("authorization_code") != before+1 {
			t.Errorf("token endpoint calls %d → %d: the provider was not asked (the refusal must be the provider's)", before, e.Grants("authorization_code"))
		}
		if fresh.SessionCookie() != "" || e.Gateway.Store.Len() != 1 {
			t.Errorf("replayed code created a session: cookie %v, store %d", fresh.SessionCookie() != "", e.Gateway.Store.Len())
		}
	})
}

// --- 8. ID token forgery -----------------------------------------------------

func idTokenForgery(t *testing.T) {
	tap := &tokenTap{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: tap.middleware, YAML: "allow: {any_user: true}\n"})
	kid := providerKid(t, e)
	other := otherRSAKey()
	otherJWK, _ := json.Marshal(map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(other.N.Bytes()), "e": "AQAB"})
	attackerJWKS := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[%s]}`, otherJWK)
	}))
	t.Cleanup(attackerJWKS.Close)
	var jwk map[string]any
	_ = json.Unmarshal(otherJWK, &jwk)

	resign := func(header map[string]any, sign func([]byte) []byte) func(string) string {
		return func(idt string) string { return makeJWT(header, jwtClaims(idt), sign) }
	}
	type tc struct {
		name   string
		user   mockoidc.User
		tamper func(string) string
	}
	// The provider itself signed a token for another issuer or client:
	// only the operator can fix that, so the page is a 500 that says so,
	// not a 4xx (and still no session).
	misconfigured := map[string]bool{"wrong iss": true, "iss with a trailing slash": true, "wrong aud": true}
	user := func(mut func(c map[string]any)) mockoidc.User {
		return &testenv.TokenUser{Sub: "victim", Email: "victim@example.com", Mutate: mut}
	}
	now := func() time.Time { return e.Clock.Now() }
	cases := []tc{
		// Signature and algorithm attacks: the provider's answer is replaced.
		{"signed by another key with the provider's kid", nil, resign(map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}, rs256(other))},
		{"signed by another key, no kid", nil, resign(map[string]any{"alg": "RS256", "typ": "JWT"}, rs256(other))},
		{"signature stripped", nil, func(idt string) string { return idt[:strings.LastIndexByte(idt, '.')+1] }},
		{"alg none", nil, resign(map[string]any{"alg": "none", "typ": "JWT", "kid": kid}, nil)},
		{"alg None", nil, resign(map[string]any{"alg": "None", "typ": "JWT"}, nil)},
		{"alg NONE with the original signature", nil, func(idt string) string {
			parts := strings.Split(idt, ".")
			return b64JSON(map[string]any{"alg": "NONE", "kid": kid}) + "." + parts[1] + "." + parts[2]
		}},
		{"embedded jwk of the attacker (CVE-2018-0114)", nil, resign(map[string]any{"alg": "RS256", "kid": kid, "jwk": jwk}, rs256(other))},
		{"jku pointing at the attacker's JWKS", nil, resign(map[string]any{"alg": "RS256", "kid": kid, "jku": attackerJWKS.URL}, rs256(other))},
		// A forgery for another audience is a forgery, not the operator's
		// mistake: only the provider's own signature makes it one.
		{"signed by another key, for another audience", nil, func(idt string) string {
			c := jwtClaims(idt)
			c["aud"] = []string{"someone-else"}
			return makeJWT(map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}, c, rs256(other))
		}},
	}
	for _, k := range publicKeySecrets(t, e.IdP.Keypair.PublicKey) {
		cases = append(cases, tc{"HS256 with the provider's public key (" + k.enc + ")", nil,
			resign(map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, hs256(k.secret))})
	}
	cases = append(cases,
		// Claim attacks: mockoidc signs them with its real key.
		tc{"wrong iss", user(func(c map[string]any) { c["iss"] = "https://evil.example" }), nil},
		tc{"iss with a trailing slash", user(func(c map[string]any) { c["iss"] = c["iss"].(string) + "/" }), nil},
		tc{"wrong aud", user(func(c map[string]any) { c["aud"] = []string{"someone-else"} }), nil},
		tc{"aud of several clients, no azp", user(func(c map[string]any) { c["aud"] = []any{c["aud"].([]any)[0], "someone-else"} }), nil},
		tc{"azp of another client", user(func(c map[string]any) { c["azp"] = "other-client" }), nil},
		tc{"expired exp", user(func(c map[string]any) { c["exp"] = now().Add(-time.Minute).Unix() }), nil},
		tc{"iat in the future", user(func(c map[string]any) { c["iat"] = now().Add(time.Hour).Unix() }), nil},
		tc{"iat missing", user(func(c map[string]any) { delete(c, "iat") }), nil},
		tc{"nonce mismatch", user(func(c map[string]any) { c["nonce"] = "attackers-nonce" }), nil},
		tc{"nonce missing", user(func(c map[string]any) { delete(c, "nonce") }), nil},
		tc{"sub missing", user(func(c map[string]any) { delete(c, "sub") }), nil},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tap.setTamper(c.tamper)
			defer tap.setTamper(nil)
			u := c.user
			if u == nil {
				u = &testenv.TokenUser{Sub: "victim", Email: "victim@example.com"}
			}
			b := browser(e)
			e.IdP.QueueUser(u)
			logFrom := len(e.Logs.String())
			hops, status, err := follow(b, e.URL+"/_gatehouse/start?rd=/")
			if err != nil {
				t.Fatalf("login: %v (hops %q)", err, hops)
			}
			final, _ := url.Parse(hops[len(hops)-1])
			wantMin, wantMax, reason := 400, 499, "id_token_invalid"
			if misconfigured[c.name] {
				wantMin, wantMax, reason = 500, 500, "misconfigured"
			}
			if status < wantMin || status > wantMax || final.Path != "/_gatehouse/callback" {
				t.Errorf("login ended on %s with status %d, want %d-%d at the callback", final.Path, status, wantMin, wantMax)
			}
			// Refused by gatehouse's ID token checks, not anywhere else.
			if logs := e.Logs.String()[logFrom:]; !strings.Contains(logs, `"reason":"`+reason+`"`) {
				t.Errorf("no login_failure with reason %s logged; log:\n%.1500s", reason, logs)
			}
			if b.SessionCookie() != "" {
				t.Error("a session cookie was set")
			}
			if n := e.Gateway.Store.Len(); n != 0 {
				t.Errorf("store holds %d sessions, want 0", n)
			}
			if n := len(e.Requests()); n != 0 {
				t.Errorf("the upstream was reached %d times", n)
			}
		})
	}
	// Controls: the same plumbing with an honest token signs in, so the
	// refusals above are gatehouse's checks, not a broken harness.
	t.Run("control: re-signed by the provider's key", func(t *testing.T) {
		tap.setTamper(resign(map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}, rs256(e.IdP.Keypair.PrivateKey)))
		defer tap.setTamper(nil)
		if r := browser(e).Login(&testenv.TokenUser{Sub: "honest"}, "/"); r.StatusCode != 200 {
			t.Errorf("status %d, want 200", r.StatusCode)
		}
	})
	t.Run("control: untouched", func(t *testing.T) {
		if r := browser(e).Login(&testenv.TokenUser{Sub: "honest2"}, "/"); r.StatusCode != 200 || e.Gateway.Store.Len() != 2 {
			t.Errorf("status %d, store %d; want 200 and 2 sessions", r.StatusCode, e.Gateway.Store.Len())
		}
	})
}

// --- 9. oversized headers ----------------------------------------------------

func oversizedHeaders(t *testing.T) {
	t.Run("beyond max_header_bytes", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{YAML: "server:\n  max_header_bytes: 8192\n"})
		many := make([]string, 0, 1000)
		for i := range 500 {
			many = append(many, fmt.Sprintf("X-H-%d", i), strings.Repeat("v", 40))
		}
		for _, tc := range []struct {
			name string
			hdr  []string
			want int
		}{
			{"one 20 KiB header", []string{"X-Big", strings.Repeat("a", 20<<10)}, 431},
			{"500 headers", many, 431},
			{"20 KiB Cookie header", []string{"Cookie", "gatehouse=" + strings.Repeat("A", 20<<10)}, 431},
			{"2 KiB header (under the limit)", []string{"X-Big", strings.Repeat("a", 2<<10), "Accept", "application/json"}, 401},
		} {
			if got := sendRaw(t, e, "GET", "/", tc.hdr...); got != tc.want {
				t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
			}
		}
		if s := sendRaw(t, e, "GET", "/_gatehouse/healthz"); s != 200 {
			t.Errorf("healthz after oversized requests: %d", s)
		}
		if n, m := e.Gateway.Store.Len(), len(e.Requests()); n != 0 || m != 0 {
			t.Errorf("store %d, upstream %d; want 0, 0", n, m)
		}
	})
	t.Run("200 login-looking cookies", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{})
		login := e.Gateway.Auth().LoginCookieName()
		var pairs []string
		for i := range 200 {
			var v [48]byte
			_, _ = rand.Read(v[:])
			n := login
			if i%2 == 1 {
				n = fmt.Sprintf("%s_%d", login, i)
			}
			pairs = append(pairs, n+"="+base64.RawURLEncoding.EncodeToString(v[:]))
		}
		cookie := strings.Join(pairs, "; ")
		for _, tc := range []struct {
			method, target string
			want           int
		}{
			{"GET", "/_gatehouse/callback?code=c&state=s", 400},
			{"GET", "/_gatehouse/start?rd=/", 302},
			{"GET", "/", 401},
			{"GET", "/_gatehouse/whoami", 401},
			{"GET", "/_gatehouse/logout", 200},
			{"POST", "/_gatehouse/logout", 200},
		} {
			req := newRequest(t, tc.method, e.URL+tc.target, nil, "Accept", "application/json", "Cookie", cookie)
			r := browser(e).Do(req)
			if r.StatusCode != tc.want {
				t.Errorf("%s %s with 200 login cookies (%d bytes): status %d, want %d", tc.method, tc.target, len(cookie), r.StatusCode, tc.want)
			}
			for _, c := range r.Cookies() {
				if len(c.Name)+len(c.Value) > 4096 {
					t.Errorf("%s %s set a %d-byte cookie %s", tc.method, tc.target, len(c.Name)+len(c.Value), c.Name)
				}
			}
		}
		if s := sendRaw(t, e, "GET", "/_gatehouse/healthz"); s != 200 {
			t.Errorf("healthz afterwards: %d", s)
		}
		if n, m := e.Gateway.Store.Len(), len(e.Requests()); n != 0 || m != 0 {
			t.Errorf("store %d, upstream %d; want 0, 0", n, m)
		}
	})
}

// --- 10. unauthenticated flood -----------------------------------------------

func unauthenticatedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 requests: skipped with -short")
	}
	e := testenv.New(t, testenv.Options{YAML: "forward_auth:\n  mode: nginx\nbearer:\n  enabled: true\n  audiences: [api]\n"})
	name := e.Gateway.Auth().SessionCookieName()
	login := e.Gateway.Auth().LoginCookieName()
	nav := []string{"Accept", "text/html", "Sec-Fetch-Mode", "navigate"}
	type class struct {
		name, method, path, body string
		hdr                      []string
		want                     map[int]bool
	}
	classes := []class{
		{"browser page", "GET", "/wiki/page?x=1", "", nav, map[int]bool{302: true}},
		{"API client", "GET", "/api/items", "", []string{"Accept", "application/json"}, map[int]bool{401: true}},
		{"form post", "POST", "/submit", "a=1", []string{"Content-Type", "application/x-www-form-urlencoded"}, map[int]bool{401: true}},
		{"login start", "GET", "/_gatehouse/start?rd=/x", "", nil, map[int]bool{302: true}},
		{"bogus callback", "GET", "/_gatehouse/callback?code=c&state=s", "", []string{"Accept", "text/html"}, map[int]bool{400: true}},
		{"callback with forged login cookie", "GET", "/_gatehouse/callback?code=c&state=s", "", []string{"Cookie", login + "=forged"}, map[int]bool{400: true}},
		{"forged session cookie, browser", "GET", "/", "", append([]string{"Cookie", name + "=forged"}, nav...), map[int]bool{302: true}},
		{"forged session cookie, API", "GET", "/api", "", []string{"Cookie", name + "=AAAA" + strings.Repeat("x", 100)}, map[int]bool{401: true}},
		{"forged bearer token", "GET", "/api", "", []string{"Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, map[int]bool{401: true}},
		{"forward-auth call", "GET", "/_gatehouse/auth", "", []string{"X-Original-URL", "http://app.example.com/x", "Accept", "application/json"}, map[int]bool{401: true}},
		{"whoami", "GET", "/_gatehouse/whoami", "", nil, map[int]bool{401: true}},
		{"logout post", "POST", "/_gatehouse/logout", "csrf=x", []string{"Content-Type", "application/x-www-form-urlencoded"}, map[int]bool{200: true}},
		{"back-channel logout garbage", "POST", "/_gatehouse/backchannel-logout", "logout_token=a.b.c", []string{"Content-Type", "application/x-www-form-urlencoded"}, map[int]bool{400: true}},
	}
	total, workers := 100000, 32
	if raceEnabled {
		// The race detector makes each request ~12x slower; the full
		// 100,000 run in the plain go test ./... and in CI's separate run.
		total = 20000
	}
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers},
		Timeout:       10 * time.Second,
	}
	t.Cleanup(client.CloseIdleConnections)
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		mu       sync.Mutex
		wrong    = map[string]map[int]int{}
		failures atomic.Int64
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				c := classes[int(i)%len(classes)]
				var body io.Reader
				if c.body != "" {
					body = strings.NewReader(c.body)
				}
				req, _ := http.NewRequest(c.method, e.URL+c.path, body)
				for j := 0; j+1 < len(c.hdr); j += 2 {
					req.Header.Set(c.hdr[j], c.hdr[j+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					if failures.Add(1) <= 5 {
						t.Errorf("%s: %v", c.name, err)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if !c.want[resp.StatusCode] {
					mu.Lock()
					if wrong[c.name] == nil {
						wrong[c.name] = map[int]int{}
					}
					wrong[c.name][resp.StatusCode]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d unauthenticated requests (%d kinds, %d workers, keep-alive) in %s: %.0f requests/s",
		total, len(classes), workers, took.Round(time.Millisecond), float64(total)/took.Seconds())
	for _, c := range classes {
		if w := wrong[c.name]; w != nil {
			t.Errorf("%s %s: unexpected statuses (status → count) %v, want one of %v", c.method, c.path, w, c.want)
		}
	}
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("%d unauthenticated requests left %d sessions in the store, want 0", total, n)
	}
	if n := len(e.Requests()); n != 0 {
		t.Errorf("the upstream received %d requests, want 0", n)
	}
}

// --- 11. bearer token forgery ------------------------------------------------

func bearerTokenForgery(t *testing.T) {
	tap := &tokenTap{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: tap.middleware, YAML: "bearer:\n  enabled: true\n  audiences: [api]\nallow: {any_user: true}\n"})
	kid := providerKid(t, e)
	claims := func(mut func(c map[string]any)) map[string]any {
		now := e.Clock.Now()
		c := map[string]any{"iss": e.IdP.Issuer(), "aud": []string{"api"}, "sub": "svc-reports",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "groups": []string{"robots"}}
		if mut != nil {
			mut(c)
		}
		return c
	}
	rsHeader := map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}
	// A user's real ID token: signed by the provider, but for gatehouse's
	// client, not for the API.
	browser(e).Login(alice(), "/")
	idToken := tap.lastIDToken()
	sessionsBefore := e.Gateway.Store.Len()
	upstreamBefore := len(e.Requests())

	cases := []struct{ name, token string }{
		{"forged: another key, the provider's kid", makeJWT(rsHeader, claims(nil), rs256(otherRSAKey()))},
		{"forged: another key, no kid", makeJWT(map[string]any{"alg": "RS256"}, claims(nil), rs256(otherRSAKey()))},
		{"alg none", makeJWT(map[string]any{"alg": "none", "typ": "JWT"}, claims(nil), nil)},
		{"expired", makeJWT(rsHeader, claims(func(c map[string]any) { c["exp"] = e.Clock.Now().Add(-time.Minute).Unix() }), rs256(e.IdP.Keypair.PrivateKey))},
		{"wrong audience", makeJWT(rsHeader, claims(func(c map[string]any) { c["aud"] = []string{"other-api"} }), rs256(e.IdP.Keypair.PrivateKey))},
		{"no audience", makeJWT(rsHeader, claims(func(c map[string]any) { delete(c, "aud") }), rs256(e.IdP.Keypair.PrivateKey))},
		{"wrong issuer", makeJWT(rsHeader, claims(func(c map[string]any) { c["iss"] = "https://evil.example" }), rs256(e.IdP.Keypair.PrivateKey))},
		{"a user's ID token (aud is the client, not the API)", idToken},
	}
	for _, k := range publicKeySecrets(t, e.IdP.Keypair.PublicKey) {
		cases = append(cases, struct{ name, token string }{"HS256 with the provider's public key (" + k.enc + ")",
			makeJWT(map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, claims(nil), hs256(k.secret))})
	}
	call := func(token string) *testenv.Response {
		// Browser-like headers: a bearer client must still never be redirected.
		return browser(e).Do(newRequest(t, "GET", e.URL+"/reports", nil,
			"Authorization", "Bearer "+token, "Accept", "text/html", "Sec-Fetch-Mode", "navigate"))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(c.token)
			wa := r.Header.Get("WWW-Authenticate")
			if r.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, `error="invalid_token"`) {
				t.Errorf("status %d WWW-Authenticate %q, want 401 Bearer error=\"invalid_token\"", r.StatusCode, wa)
			}
			if loc := r.Header.Get("Location"); loc != "" {
				t.Errorf("redirected to %q", loc)
			}
			for _, ck := range r.Cookies() {
				if ck.Name == e.Gateway.Auth().SessionCookieName() && ck.Value != "" {
					t.Errorf("a session cookie was set")
				}
			}
			if n := e.Gateway.Store.Len(); n != sessionsBefore {
				t.Errorf("store holds %d sessions, want %d", n, sessionsBefore)
			}
			if n := len(e.Requests()); n != upstreamBefore {
				t.Errorf("the upstream was reached")
			}
		})
	}
	t.Run("control: a valid token", func(t *testing.T) {
		r := call(makeJWT(rsHeader, claims(nil), rs256(e.IdP.Keypair.PrivateKey)))
		if r.StatusCode != 200 || e.LastRequest().Header.Get("X-Forwarded-User") != "svc-reports" {
			t.Errorf("status %d, want 200 as svc-reports", r.StatusCode)
		}
		if n := e.Gateway.Store.Len(); n != sessionsBefore {
			t.Errorf("a bearer call changed the store: %d sessions, want %d", n, sessionsBefore)
		}
	})
}

// --- 12. back-channel logout forgery -----------------------------------------

func backchannelLogoutForgery(t *testing.T) {
	tap := &tokenTap{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: tap.middleware, YAML: "allow: {any_user: true}\n"})
	kid := providerKid(t, e)
	a := browser(e)
	a.Login(&testenv.TokenUser{Sub: "alice", Email: "alice@example.com", Mutate: func(c map[string]any) { c["sid"] = "sid-a" }}, "/")
	idToken := tap.lastIDToken()
	if idToken == "" || e.Gateway.Store.Len() != 1 {
		t.Fatalf("login: id token %v, store %d", idToken != "", e.Gateway.Store.Len())
	}
	var jti atomic.Int64
	claims := func() map[string]any {
		now := e.Clock.Now()
		return map[string]any{"iss": e.IdP.Issuer(), "aud": e.IdP.ClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": fmt.Sprintf("jti-%d", jti.Add(1)), "sid": "sid-a", "sub": "alice",
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	}
	post := func(token string) *testenv.Response {
		return browser(e).Do(newRequest(t, "POST", e.URL+"/_gatehouse/backchannel-logout",
			strings.NewReader(url.Values{"logout_token": {token}}.Encode()), "Content-Type", "application/x-www-form-urlencoded"))
	}
	rsHeader := map[string]any{"alg": "RS256", "typ": "logout+jwt", "kid": kid}
	cases := []struct{ name, token string }{
		{"signed by another key with the provider's kid", makeJWT(rsHeader, claims(), rs256(otherRSAKey()))},
		{"alg none", makeJWT(map[string]any{"alg": "none"}, claims(), nil)},
		{"the user's ID token replayed (nonce, no events)", idToken},
		{"the user's ID token re-signed without nonce (still no events)", func() string {
			c := jwtClaims(idToken)
			delete(c, "nonce")
			return makeJWT(rsHeader, c, rs256(e.IdP.Keypair.PrivateKey))
		}()},
	}
	for _, k := range publicKeySecrets(t, e.IdP.Keypair.PublicKey) {
		cases = append(cases, struct{ name, token string }{"HS256 with the provider's public key (" + k.enc + ")",
			makeJWT(map[string]any{"alg": "HS256", "kid": kid}, claims(), hs256(k.secret))})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := post(c.token)
			var body map[string]string
			if r.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(r.Body), &body) != nil || body["error"] == "" {
				t.Errorf("status %d body %s, want 400 with an error", r.StatusCode, r.Body)
			}
			if n := e.Gateway.Store.Len(); n != 1 {
				t.Errorf("store holds %d sessions, want alice's", n)
			}
			if s := a.Get("/", "Accept", "application/json").StatusCode; s != 200 {
				t.Errorf("alice's session ended: status %d", s)
			}
		})
	}
	t.Run("control: a genuine logout token ends the session", func(t *testing.T) {
		tok, err := e.IdP.Keypair.SignJWT(jwt.MapClaims(claims()))
		if err != nil {
			t.Fatal(err)
		}
		if r := post(tok); r.StatusCode != 200 {
			t.Fatalf("status %d %s, want 200", r.StatusCode, r.Body)
		}
		if n := e.Gateway.Store.Len(); n != 0 {
			t.Errorf("store holds %d sessions, want 0", n)
		}
	})
}

// --- 13. forward-auth spoofing -----------------------------------------------

const forwardAuthRoutes = `routes:
  - name: wiki
    match: {host: wiki.example.com}
    public: [/static]
    allow: {groups: [staff]}
  - name: wiki-admin
    match: {host: wiki.example.com, path_prefix: /admin}
    allow: {groups: [admins]}
allow:
  groups: [staff]
`

// forwardAuthCall is one forward-auth call and the status it must get.
type forwardAuthCall struct {
	name   string
	staff  bool // from the signed-in staff member, else anonymous
	hdr    []string
	status int
}

func runForwardAuth(t *testing.T, mode, extra string, calls []forwardAuthCall) *testenv.Env {
	t.Helper()
	e := testenv.New(t, testenv.Options{NoUpstream: true, YAML: "forward_auth:\n  mode: " + mode + "\n" + extra + forwardAuthRoutes})
	staff := browser(e)
	staff.Login(testenv.User("bob", "bob@example.com", "staff"), "/_gatehouse/start?rd=/")
	if staff.SessionCookie() == "" {
		t.Fatal("staff login failed")
	}
	for _, c := range calls {
		b := browser(e)
		if c.staff {
			b = staff
		}
		r := b.Get("/_gatehouse/auth", c.hdr...)
		if r.StatusCode != c.status {
			t.Errorf("%s mode, %s: status %d, want %d; body %.200s", mode, c.name, r.StatusCode, c.status, r.Body)
		}
		if r.StatusCode != 200 && r.Header.Get("X-Forwarded-User") != "" {
			t.Errorf("%s mode, %s: refused answer carries X-Forwarded-User %q", mode, c.name, r.Header.Get("X-Forwarded-User"))
		}
	}
	return e
}

func forwardAuthSpoofing(t *testing.T) {
	claim := func(uri string) []string {
		return []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "wiki.example.com",
			"X-Forwarded-Uri", uri, "X-Original-URL", "https://wiki.example.com" + uri}
	}
	t.Run("untrusted peer, traefik", func(t *testing.T) {
		e := runForwardAuth(t, "traefik", "trusted_proxies: [192.0.2.0/24]\n", []forwardAuthCall{
			{"anonymous claims a public path", false, claim("/static/a.css"), 403},
			{"anonymous browser claims a page", false, append(claim("/page"), "Accept", "text/html", "Sec-Fetch-Mode", "navigate"), 403},
			{"staff claims an allowed path", true, claim("/page"), 403},
		})
		if !strings.Contains(e.Logs.String(), "untrusted_forwarder") {
			t.Error("no log line names the untrusted forwarder")
		}
	})
	t.Run("untrusted peer, nginx", func(t *testing.T) {
		runForwardAuth(t, "nginx", "trusted_proxies: [192.0.2.0/24]\n", []forwardAuthCall{
			{"anonymous claims a public path", false, claim("/static/a.css"), 403},
			{"staff claims an allowed path", true, claim("/page"), 403},
		})
	})
	t.Run("nginx mode ignores Traefik's headers", func(t *testing.T) {
		runForwardAuth(t, "nginx", "", []forwardAuthCall{
			{"control: staff, allowed page", true, []string{"X-Original-URL", "https://wiki.example.com/page"}, 200},
			{"anonymous: X-Forwarded-Uri names a public path", false, []string{"X-Original-URL", "https://wiki.example.com/page", "X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/static/x"}, 401},
			{"staff: X-Forwarded-Uri names an allowed path", true, []string{"X-Original-URL", "https://wiki.example.com/admin", "X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/page"}, 403},
			{"only Traefik's headers", false, []string{"X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/static/x"}, 400},
		})
	})
	t.Run("traefik mode ignores nginx's headers", func(t *testing.T) {
		runForwardAuth(t, "traefik", "", []forwardAuthCall{
			{"control: anonymous, public path", false, []string{"X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/static/x"}, 200},
			{"only nginx's header, naming a public path", false, []string{"X-Original-URL", "https://wiki.example.com/static/x"}, 400},
			{"staff: X-Original-URL names an allowed path", true, []string{"X-Forwarded-Host", "wiki.example.com", "X-Forwarded-Uri", "/admin/x", "X-Original-URL", "https://wiki.example.com/page"}, 403},
		})
	})
}

// --- 14. token exposure in pages ---------------------------------------------

func tokenExposureInPages(t *testing.T) {
	tap := &tokenTap{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: tap.middleware, YAML: "allow:\n  groups: [admins]\n" +
		"routes:\n  - match: {path_prefix: /staff}\n    upstream: ${UPSTREAM}\n    allow: {groups: [staff]}\n"}) // bob has a session, for /staff only
	a := browser(e)
	if r := a.Login(testenv.User("alice", "alice@example.com", "admins"), "/"); r.StatusCode != 200 {
		t.Fatalf("alice: %d", r.StatusCode)
	}
	bob := browser(e)
	forbidden := bob.Login(testenv.User("bob", "bob@example.com", "staff"), "/")
	if forbidden.StatusCode != 403 {
		t.Fatalf("bob: %d, want 403", forbidden.StatusCode)
	}
	secrets := map[string]string{"alice's session cookie": a.SessionCookie(), "bob's session cookie": bob.SessionCookie()}
	for i, tok := range tap.tokens() {
		secrets[fmt.Sprintf("token %d from the provider", i)] = tok
	}
	html := []string{"Accept", "text/html"}
	js := []string{"Accept", "application/json"}
	pages := map[string]*testenv.Response{"403 page": forbidden}
	// add records a page after checking it is the page meant.
	add := func(name string, status int, r *testenv.Response) {
		t.Helper()
		if r.StatusCode != status {
			t.Errorf("%s: status %d, want %d (not the page this row means to inspect)", name, r.StatusCode, status)
		}
		pages[name] = r
	}
	add("whoami (JSON)", 200, a.Get("/_gatehouse/whoami", js...))
	add("whoami (HTML accept)", 200, a.Get("/_gatehouse/whoami", html...))
	add("403 JSON", 403, bob.Get("/", js...))
	add("logout confirmation", 200, a.Get("/_gatehouse/logout", html...))
	add("logout confirmation (bob)", 200, bob.Get("/_gatehouse/logout", html...))
	add("logout with a forged token", 403, a.Do(newRequest(t, "POST", e.URL+"/_gatehouse/logout", strings.NewReader("csrf=x"),
		"Accept", "text/html", "Content-Type", "application/x-www-form-urlencoded", "Origin", e.URL)))
	add("callback state mismatch", 400, a.Get("/_gatehouse/callback?code=x&state=y", html...))
	add("callback without code (JSON)", 400, a.Get("/_gatehouse/callback?state=y", js...))
	add("callback provider error", 403, a.Get("/_gatehouse/callback?error=access_denied&state=y", html...))
	add("bad path", 400, a.Get("/a%2fb", html...))
	add("unknown gatehouse page", 404, a.Get("/_gatehouse/nope", html...))
	add("readyz", 200, a.Get("/_gatehouse/readyz"))
	add("healthz", 200, a.Get("/_gatehouse/healthz"))
	add("401 JSON", 401, browser(e).Get("/x", js...))
	add("302 to the login", 302, browser(e).Get("/x", html...))
	// A login refused after the provider sent its tokens: its error page.
	refused := browser(e)
	cb, _ := startAndAuthorize(t, e, refused, "/", &testenv.TokenUser{Sub: "dave", Mutate: func(c map[string]any) { c["nonce"] = "other" }})
	add("id_token_invalid page", 400, refused.Get(cb, html...))
	// One the provider signed for another client: the misconfiguration page.
	misconfigured := browser(e)
	cb, _ = startAndAuthorize(t, e, misconfigured, "/", &testenv.TokenUser{Sub: "erin", Mutate: func(c map[string]any) { c["aud"] = []string{"someone-else"} }})
	add("misconfigured page", 500, misconfigured.Get(cb, html...))
	csrf := between(pages["logout confirmation"].Body, `name="csrf" value="`, `"`)
	add("logout", 303, a.Do(newRequest(t, "POST", e.URL+"/_gatehouse/logout", strings.NewReader("csrf="+csrf),
		"Accept", "text/html", "Content-Type", "application/x-www-form-urlencoded", "Origin", e.URL)))
	add("signed-out", 200, a.Get("/_gatehouse/signed-out", html...))
	for i, tok := range tap.tokens() {
		secrets[fmt.Sprintf("token %d from the provider", i)] = tok
	}

	names := make([]string, 0, len(pages))
	for n := range pages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := pages[n]
		var hdr strings.Builder
		for k, vs := range r.Header {
			if k != "Set-Cookie" {
				fmt.Fprintf(&hdr, "%s: %s\n", k, strings.Join(vs, ", "))
			}
		}
		for where, text := range map[string]string{"body": r.Body, "headers": hdr.String()} {
			if i := strings.Index(text, "eyJ"); i >= 0 {
				t.Errorf("%s (status %d): %s shows a JWT: …%.60s…", n, r.StatusCode, where, text[i:])
			}
			for what, s := range secrets {
				if s != "" && strings.Contains(text, s) {
					t.Errorf("%s (status %d): %s contains %s", n, r.StatusCode, where, what)
				}
			}
		}
	}
}

// --- 15. secrets in the log ---------------------------------------------------

func secretsInTheLog(t *testing.T) {
	tap := &tokenTap{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: tap.middleware, YAML: "bearer:\n  enabled: true\n  audiences: [api]\n"})
	secrets := map[string]string{"client secret": e.IdP.ClientSecret, "cookie secret": strings.Repeat("s", 32)}

	// A login, with its code and cookies.
	a := browser(e)
	cb, login := startAndAuthorize(t, e, a, "/", alice())
	a.Get(cb)
	code, _ := url.Parse(cb)
	secrets["authorization code"] = code.Query().Get("code")
	secrets["login cookie"] = login.Value
	secrets["session cookie"] = a.SessionCookie()
	// The code replayed in a fresh login: the provider refuses it.
	fresh := browser(e)
	loc, _ := url.Parse(fresh.Get("/_gatehouse/start?rd=/").Header.Get("Location"))
	fresh.Get("/_gatehouse/callback?code="+url.QueryEscape(secrets["authorization code"])+"&state="+loc.Query().Get("state"), "Accept", "text/html")
	// A refused ID token, and one for another client (misconfigured).
	e.IdP.QueueUser(&testenv.TokenUser{Sub: "carol", Mutate: func(c map[string]any) { c["nonce"] = "other" }})
	_, _, _ = follow(browser(e), e.URL+"/_gatehouse/start?rd=/")
	e.IdP.QueueUser(&testenv.TokenUser{Sub: "carol", Mutate: func(c map[string]any) { c["aud"] = []string{"someone-else"} }})
	_, _, _ = follow(browser(e), e.URL+"/_gatehouse/start?rd=/")
	// A refused bearer token (a real ID token: wrong audience).
	idt := tap.lastIDToken()
	browser(e).Get("/api", "Authorization", "Bearer "+idt)
	// A refused back-channel logout (an ID token as logout token).
	browser(e).Do(newRequest(t, "POST", e.URL+"/_gatehouse/backchannel-logout",
		strings.NewReader(url.Values{"logout_token": {idt}}.Encode()), "Content-Type", "application/x-www-form-urlencoded"))
	// A forged session cookie and a sign-out.
	browser(e).Get("/", "Cookie", e.Gateway.Auth().SessionCookieName()+"="+secrets["session cookie"]+"x")
	page := a.Get("/_gatehouse/logout", "Accept", "text/html")
	csrf := between(page.Body, `name="csrf" value="`, `"`)
	secrets["logout csrf token"] = csrf
	a.Do(newRequest(t, "POST", e.URL+"/_gatehouse/logout", strings.NewReader("csrf="+csrf), "Content-Type", "application/x-www-form-urlencoded", "Origin", e.URL))
	for i, tok := range tap.tokens() {
		secrets[fmt.Sprintf("provider token %d (%s…)", i, tok[:min(len(tok), 12)])] = tok
	}

	logs := e.Logs.String()
	if !strings.Contains(logs, "code_rejected") || !strings.Contains(logs, "id_token_invalid") || !strings.Contains(logs, `"reason":"misconfigured"`) {
		t.Fatalf("the log lacks the refusals this row provokes; log:\n%s", logs)
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := secrets[n]
		if len(s) < 8 {
			t.Errorf("%s: %q is too short to look for", n, s)
			continue
		}
		if i := strings.Index(logs, s); i >= 0 {
			lineStart := strings.LastIndexByte(logs[:i], '\n') + 1
			lineEnd := strings.IndexByte(logs[i:], '\n')
			if lineEnd < 0 {
				lineEnd = len(logs) - i
			}
			t.Errorf("the log contains the %s, in: %.400s", n, logs[lineStart:i+lineEnd])
		}
	}
	if i := strings.Index(logs, "eyJ"); i >= 0 {
		t.Errorf("the log contains a JWT: …%.80s…", logs[i:])
	}
}
