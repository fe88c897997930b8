// Package testenv runs gatehouse end to end for tests: a real OpenID
// provider (github.com/oauth2-proxy/mockoidc, signing real RS256 JWTs
// that go-oidc verifies), a recording upstream on httptest, and gatehouse
// itself, built from YAML through the real config loader, on httptest,
// with a clock the test moves instead of sleeping.
package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/proxy"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mockoidc reads time from a package variable; it is pointed once at
// whichever environment's clock is current, through an atomic pointer, so
// tests never write the variable while a provider reads it.
var (
	currentClock atomic.Pointer[Clock]
	hookOnce     sync.Once
)

// Env is one gatehouse with its identity provider and upstream.
type Env struct {
	T        testing.TB
	IdP      *mockoidc.MockOIDC
	Upstream *httptest.Server
	Server   *httptest.Server // gatehouse
	Gateway  *proxy.Gateway
	Config   *config.Config
	Clock    *Clock
	URL      string // gatehouse's URL, e.g. http://127.0.0.1:40123
	Logs     *LogBuffer

	mu       sync.Mutex
	requests []*http.Request // as the upstream received them
	grants   map[string]int  // token endpoint calls by grant_type
}

// Grants returns how many token endpoint calls of grant_type the provider
// received.
func (e *Env) Grants(grantType string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.grants[grantType]
}

func (e *Env) countGrants(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == mockoidc.TokenEndpoint {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			q, _ := url.ParseQuery(string(body))
			e.mu.Lock()
			if e.grants == nil {
				e.grants = map[string]int{}
			}
			e.grants[q.Get("grant_type")]++
			e.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// fixExpiresIn corrects a unit slip of mockoidc: its token response
// encodes expires_in as a Go time.Duration (nanoseconds), where RFC 6749
// §5.1 says seconds. Without this an access token would seem to live for
// millennia and refresh could never be tested. Nothing else is changed.
func fixExpiresIn(next http.Handler) http.Handler {
	return RewriteTokenResponse(next, func(m map[string]any) bool {
		ns, ok := m["expires_in"].(float64)
		if ok {
			m["expires_in"] = int64(ns / 1e9)
		}
		return ok
	})
}

// RewriteTokenResponse is provider middleware that hands every successful
// token endpoint response, as a JSON object, to edit; when edit returns
// true the edited object is sent instead. Other requests pass untouched.
func RewriteTokenResponse(next http.Handler, edit func(m map[string]any) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != mockoidc.TokenEndpoint {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var m map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(body, &m) == nil && edit(m) {
			body, _ = json.Marshal(m)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// DefaultAllow is the top-level policy of an environment whose YAML
// gives none: users with an email at example.com pass (User's and the
// tests' users), others are refused, as a real configuration would
// refuse them; gatehouse has no "anyone" default.
const DefaultAllow = "allow:\n  email_domains: [example.com]\n"

// hasTopLevelAllow reports whether a YAML fragment gives a top-level allow.
func hasTopLevelAllow(yml string) bool {
	return strings.HasPrefix(yml, "allow:") || strings.Contains(yml, "\nallow:")
}

// Options shape an environment.
type Options struct {
	// YAML is appended to the base configuration (external_url, upstream,
	// oidc, cookie); give whole top-level sections, e.g. "session:\n  idle_timeout: 5m\n".
	// ${UPSTREAM} is the recording upstream's URL. Without a top-level
	// allow section in it, DefaultAllow is added.
	YAML string
	// NoUpstream leaves the top-level upstream out of the base
	// configuration (for routes-only or forward-auth-only setups).
	NoUpstream bool
	// OIDCYAML is added inside the oidc section, indented by two spaces,
	// e.g. "timeout: 1s\n".
	OIDCYAML string
	// CookieYAML is added inside the cookie section, e.g. "domain: x\n".
	CookieYAML string
	// Upstream replaces the recording upstream's handler (requests are
	// still recorded).
	Upstream http.Handler
	// Transport replaces the upstream transport.
	Transport http.RoundTripper
	// IdPMiddleware wraps the provider's endpoints (to fail, slow down or
	// tamper with answers).
	IdPMiddleware func(http.Handler) http.Handler
	// ExternalURL replaces gatehouse's external_url (default its own
	// http://127.0.0.1:port), e.g. an https one to see its cookies. The
	// server still listens on plain HTTP at URL; a Browser, which does not
	// send Secure cookies there, does not fit it: send requests with
	// their Cookie header written out.
	ExternalURL string
	// ClientSecret replaces the client secret gatehouse is configured
	// with (the provider keeps its own), e.g. a wrong one.
	ClientSecret string
	// Issuer, when set, maps the provider's issuer to the oidc.issuer
	// gatehouse is configured with, e.g. adding a trailing slash the
	// provider's discovery does not have.
	Issuer func(providerIssuer string) string
	// TLS serves gatehouse (and its replicas) over https with httptest's
	// certificate, its external_url the https one: Secure and __Host-
	// cookies then travel as in production, and Browsers trust the
	// certificate. ExternalURL is ignored.
	TLS bool
}

// New starts an environment; everything stops at the end of the test.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	clock := &Clock{t: time.Now()}
	currentClock.Store(clock)
	hookOnce.Do(func() {
		mockoidc.NowFunc = func() time.Time { return currentClock.Load().Now() }
	})
	idp, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatalf("mockoidc: %v", err)
	}
	e := &Env{T: t, IdP: idp, Clock: clock, Logs: &LogBuffer{}}
	_ = idp.AddMiddleware(e.countGrants)
	_ = idp.AddMiddleware(fixExpiresIn)
	if opts.IdPMiddleware != nil {
		_ = idp.AddMiddleware(opts.IdPMiddleware)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start(ln, nil); err != nil {
		t.Fatalf("start mockoidc: %v", err)
	}
	t.Cleanup(func() { _ = idp.Shutdown() })
	up := opts.Upstream
	if up == nil {
		up = http.HandlerFunc(echo)
	}
	e.Upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.requests = append(e.requests, r.Clone(r.Context()))
		e.mu.Unlock()
		up.ServeHTTP(w, r)
	}))
	t.Cleanup(e.Upstream.Close)

	e.Server = httptest.NewUnstartedServer(nil)
	e.URL = "http://" + e.Server.Listener.Addr().String()
	if opts.TLS {
		e.URL = "https://" + e.Server.Listener.Addr().String()
	}
	external := e.URL
	if opts.ExternalURL != "" && !opts.TLS {
		external = opts.ExternalURL
	}
	issuer, secret := idp.Issuer(), idp.ClientSecret
	if opts.Issuer != nil {
		issuer = opts.Issuer(issuer)
	}
	if opts.ClientSecret != "" {
		secret = opts.ClientSecret
	}
	upstreamLine := "upstream: " + e.Upstream.URL + "\n"
	if opts.NoUpstream {
		upstreamLine = ""
	}
	yml := fmt.Sprintf(`external_url: %s
%soidc:
  issuer: %s
  client_id: %s
  client_secret: ${TEST_CLIENT_SECRET}
  scopes: [openid, email, profile, groups]
%scookie:
  secret: %s
%s`, external, upstreamLine, issuer, idp.ClientID, indent(opts.OIDCYAML), strings.Repeat("s", 32), indent(opts.CookieYAML)) + opts.YAML
	if !hasTopLevelAllow(opts.YAML) {
		if yml != "" && !strings.HasSuffix(yml, "\n") {
			yml += "\n"
		}
		yml += DefaultAllow
	}
	cfg, err := config.Parse([]byte(yml), func(k string) (string, bool) {
		switch k {
		case "TEST_CLIENT_SECRET":
			return secret, true
		case "UPSTREAM":
			return e.Upstream.URL, true
		}
		return os.LookupEnv(k)
	})
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	e.Config = cfg
	logger := slog.New(slog.NewJSONHandler(e.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Logger: logger, Now: clock.Now, Transport: opts.Transport})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	e.Gateway = gw
	e.Server.Config = gw.Server()
	e.Server.Config.Addr = ""
	if opts.TLS {
		e.Server.StartTLS()
	} else {
		e.Server.Start()
	}
	t.Cleanup(e.Server.Close)
	return e
}

// indent puts two spaces before every line of a YAML fragment.
func indent(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

// echo answers with the request it received, as JSON.
func echo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.RequestURI(), "headers": r.Header})
}

// Requests returns the requests the upstream has received.
func (e *Env) Requests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*http.Request(nil), e.requests...)
}

// LastRequest returns the last request the upstream received, or fails the
// test.
func (e *Env) LastRequest() *http.Request {
	e.T.Helper()
	rs := e.Requests()
	if len(rs) == 0 {
		e.T.Fatal("upstream received no request")
	}
	return rs[len(rs)-1]
}

// Advance moves gatehouse's clock (and the provider's, which shares it).
func (e *Env) Advance(d time.Duration) { e.Clock.Advance(d) }

// User returns a mockoidc user with verified email.
func User(sub, email string, groups ...string) *mockoidc.MockUser {
	return &mockoidc.MockUser{Subject: sub, Email: email, EmailVerified: true,
		PreferredUsername: strings.Split(email, "@")[0], Groups: groups}
}

// Response is a finished exchange, body read.
type Response struct {
	*http.Response
	Body string
	Hops []string // URLs visited, in order
}

// Browser is a cookie-keeping client that behaves like a browser: it
// sends navigation headers and follows redirects itself, recording them.
type Browser struct {
	env    *Env
	Jar    http.CookieJar
	Client *http.Client
}

// NewBrowser returns a browser with an empty cookie jar.
func (e *Env) NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	var tr http.RoundTripper
	if strings.HasPrefix(e.URL, "https:") {
		tr = e.Server.Client().Transport // trusts httptest's certificate
	}
	return &Browser{env: e, Jar: jar, Client: &http.Client{
		Jar:           jar,
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Navigate opens rawURL (absolute, or a path on gatehouse) as a page and
// follows up to 10 redirects.
func (b *Browser) Navigate(rawURL string) *Response {
	b.env.T.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.env.URL + rawURL
	}
	var hops []string
	for range 10 {
		hops = append(hops, rawURL)
		req, err := http.NewRequest(http.MethodGet, rawURL, nil)
		if err != nil {
			b.env.T.Fatalf("navigate %s: %v", rawURL, err)
		}
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		resp := b.Do(req)
		if resp.StatusCode < 300 || resp.StatusCode > 399 {
			resp.Hops = hops
			return resp
		}
		loc, err := resp.Location()
		if err != nil {
			b.env.T.Fatalf("redirect without Location from %s", rawURL)
		}
		rawURL = loc.String()
	}
	b.env.T.Fatalf("too many redirects: %v", hops)
	return nil
}

// Do sends a request and reads the whole body. A request with its own
// Host (another virtual host on gatehouse's address) still carries the
// cookies the browser holds for gatehouse's address, as when every host
// resolves to gatehouse and shares the cookie.
func (b *Browser) Do(req *http.Request) *Response {
	b.env.T.Helper()
	if req.Host != "" && req.Host != req.URL.Host && req.Header.Get("Cookie") == "" {
		for _, c := range b.Jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		b.env.T.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &Response{Response: resp, Body: string(body)}
}

// Get sends a plain GET (no navigation headers), following no redirect.
func (b *Browser) Get(rawURL string, header ...string) *Response {
	b.env.T.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.env.URL + rawURL
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.env.T.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return b.Do(req)
}

// Login signs user in through the real flow, starting at path, and
// returns the final response (the upstream's answer for path).
func (b *Browser) Login(user mockoidc.User, path string) *Response {
	b.env.T.Helper()
	b.env.IdP.QueueUser(user)
	return b.Navigate(path)
}

// Cookie returns the value of the named cookie the browser holds for
// gatehouse, or "".
func (b *Browser) Cookie(name string) string {
	u, _ := url.Parse(b.env.URL)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// SetCookie puts a cookie for gatehouse's host into the jar.
func (b *Browser) SetCookie(name, value string) {
	u, _ := url.Parse(b.env.URL)
	b.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// SessionCookie returns the session cookie's value.
func (b *Browser) SessionCookie() string { return b.Cookie(b.env.Gateway.Auth().SessionCookieName()) }

// LogBuffer collects log output for assertions; safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TokenUser is a mockoidc user whose ID token claims a test shapes
// freely: Claims starts from what mockoidc would sign (iss, aud, sub, exp,
// iat, nbf, jti, nonce) plus email, email_verified, preferred_username and
// groups, then applies Mutate. mockoidc signs the result with its real key.
type TokenUser struct {
	Sub, Email string
	Verified   *bool // nil: no email_verified claim
	Groups     []string
	Mutate     func(claims map[string]any)
}

// ID implements mockoidc.User.
func (u *TokenUser) ID() string { return u.Sub }

// Userinfo implements mockoidc.User.
func (u *TokenUser) Userinfo([]string) ([]byte, error) {
	return json.Marshal(map[string]any{"sub": u.Sub, "email": u.Email})
}

// Claims implements mockoidc.User.
func (u *TokenUser) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	b, err := json.Marshal(base)
	if err != nil {
		return nil, err
	}
	m := jwt.MapClaims{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if u.Email != "" {
		m["email"] = u.Email
		m["preferred_username"] = strings.Split(u.Email, "@")[0]
	}
	if u.Verified != nil {
		m["email_verified"] = *u.Verified
	}
	if u.Groups != nil {
		m["groups"] = u.Groups
	}
	if u.Mutate != nil {
		u.Mutate(m)
	}
	return m, nil
}

// NewClock returns a clock that reads start until advanced.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Env returns the environment (or replica) the browser is aimed at.
func (b *Browser) Env() *Env { return b.env }
