package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

const (
	testClientID = "gatehouse"
	// testSecret needs form-urlencoding in HTTP Basic (RFC 6749 §2.3.1).
	testSecret      = "s3cr3t with space+plus/slash:colon%"
	testRedirect    = "http://127.0.0.1:4180/_gatehouse/callback?keep=1"
	testPostLogout  = "http://127.0.0.1:4180/signed-out"
	allTestScopes   = "openid email profile groups offline_access"
	otherRedirect   = "http://127.0.0.1:4180/evil"
	testStateValue  = "state-123"
	testNonceValue  = "nonce-456"
	unregisteredURI = "http://127.0.0.1:9999/elsewhere"
)

// fakeClock is a settable clock shared by the provider and the verifier.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testEnv is a running provider with an OAuth 2.0 client and an ID token
// verifier pointed at it.
type testEnv struct {
	t        *testing.T
	p        *Provider
	srv      *httptest.Server
	issuer   string
	clock    *fakeClock
	conf     *oauth2.Config
	oidcProv *oidc.Provider
	verifier *oidc.IDTokenVerifier
	// noRedirect is an HTTP client that returns redirects instead of
	// following them.
	noRedirect *http.Client
}

func newTestEnv(t *testing.T, issuerPath string, mutate func(*Options)) *testEnv {
	t.Helper()
	var p *Provider
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r)
	}))
	issuer := "http://" + srv.Listener.Addr().String() + issuerPath
	clock := &fakeClock{now: time.Now().Truncate(time.Second)}
	opts := Options{
		Issuer:                 issuer,
		ClientID:               testClientID,
		ClientSecret:           testSecret,
		RedirectURIs:           []string{testRedirect},
		PostLogoutRedirectURIs: []string{testPostLogout},
		Now:                    clock.Now,
	}
	if mutate != nil {
		mutate(&opts)
	}
	var err error
	p, err = New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.Start()
	t.Cleanup(srv.Close)

	ctx := oidc.ClientContext(t.Context(), srv.Client())
	oidcProv, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	noRedirect := srv.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &testEnv{
		t:        t,
		p:        p,
		srv:      srv,
		issuer:   issuer,
		clock:    clock,
		oidcProv: oidcProv,
		verifier: oidcProv.Verifier(&oidc.Config{ClientID: testClientID, Now: clock.Now}),
		conf: &oauth2.Config{
			ClientID:     testClientID,
			ClientSecret: testSecret,
			Endpoint:     oidcProv.Endpoint(),
			RedirectURL:  testRedirect,
			Scopes:       strings.Fields(allTestScopes),
		},
		noRedirect: noRedirect,
	}
}

// ctx returns a context whose HTTP client reaches the test server.
func (e *testEnv) ctx() context.Context {
	return oidc.ClientContext(e.t.Context(), e.srv.Client())
}

func (e *testEnv) get(rawURL string) *http.Response {
	e.t.Helper()
	resp, err := e.noRedirect.Get(rawURL)
	if err != nil {
		e.t.Fatalf("GET %s: %v", rawURL, err)
	}
	return resp
}

func (e *testEnv) postForm(rawURL string, form url.Values) *http.Response {
	e.t.Helper()
	resp, err := e.noRedirect.PostForm(rawURL, form)
	if err != nil {
		e.t.Fatalf("POST %s: %v", rawURL, err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

var (
	formActionRE  = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	hiddenFieldRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// loginForm fetches the sign-in page at authURL and returns the form's
// absolute action URL and hidden fields.
func (e *testEnv) loginForm(authURL string) (string, url.Values, string) {
	e.t.Helper()
	resp := e.get(authURL)
	body := readBody(e.t, resp)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET authorize: status %d, body %s", resp.StatusCode, body)
	}
	m := formActionRE.FindStringSubmatch(body)
	if m == nil {
		e.t.Fatalf("no form in sign-in page:\n%s", body)
	}
	action, err := url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		e.t.Fatalf("form action: %v", err)
	}
	base, _ := url.Parse(e.srv.URL)
	fields := url.Values{}
	for _, f := range hiddenFieldRE.FindAllStringSubmatch(body, -1) {
		fields.Add(html.UnescapeString(f[1]), html.UnescapeString(f[2]))
	}
	return base.ResolveReference(action).String(), fields, body
}

// submitLogin posts the sign-in form with extra fields and returns the
// redirect's parsed Location.
func (e *testEnv) submitLogin(authURL string, extra url.Values) *url.URL {
	e.t.Helper()
	action, fields, _ := e.loginForm(authURL)
	for k, v := range extra {
		fields[k] = v
	}
	resp := e.postForm(action, fields)
	body := readBody(e.t, resp)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("POST authorize: status %d, body %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatalf("Location: %v", err)
	}
	return loc
}

// login signs in as user and returns the authorization code.
func (e *testEnv) login(user, verifier string) string {
	e.t.Helper()
	authURL := e.conf.AuthCodeURL(testStateValue, oauth2.S256ChallengeOption(verifier), oidc.Nonce(testNonceValue))
	loc := e.submitLogin(authURL, url.Values{"user": {user}})
	q := loc.Query()
	if got := q.Get("state"); got != testStateValue {
		e.t.Fatalf("state = %q, want %q", got, testStateValue)
	}
	if q.Get("code") == "" {
		e.t.Fatalf("no code in redirect %s", loc)
	}
	return q.Get("code")
}

// loginAndExchange runs a full flow as user and returns the tokens.
func (e *testEnv) loginAndExchange(user string) *oauth2.Token {
	e.t.Helper()
	verifier := oauth2.GenerateVerifier()
	code := e.login(user, verifier)
	tok, err := e.conf.Exchange(e.ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return tok
}

// verifyIDToken verifies the id_token of tok and returns it with its claims.
func (e *testEnv) verifyIDToken(tok *oauth2.Token) (*oidc.IDToken, idClaims, string) {
	e.t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		e.t.Fatal("token response has no id_token")
	}
	idt, err := e.verifier.Verify(e.ctx(), raw)
	if err != nil {
		e.t.Fatalf("verify id token: %v", err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		e.t.Fatalf("id token claims: %v", err)
	}
	return idt, c, raw
}

type idClaims struct {
	Sub               string   `json:"sub"`
	Azp               string   `json:"azp"`
	Sid               string   `json:"sid"`
	Nonce             *string  `json:"nonce"`
	AuthTime          int64    `json:"auth_time"`
	Email             string   `json:"email"`
	EmailVerified     *bool    `json:"email_verified"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
}

// postToken sends a raw token request and returns status, headers and body.
func (e *testEnv) postToken(form url.Values, basicUser, basicPass string) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(url.QueryEscape(basicUser), url.QueryEscape(basicPass))
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("POST token: %v", err)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(readBody(e.t, resp)), &body); err != nil {
		e.t.Fatalf("token response is not JSON: %v", err)
	}
	return resp.StatusCode, resp.Header, body
}

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse jws: %v", err)
	}
	return jws.Signatures[0].Header.KeyID
}

func retrieveErrorCode(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *oauth2.RetrieveError", err)
	}
	return re.ErrorCode
}

func TestAuthorizationCodeFlow(t *testing.T) {
	users := map[string]struct {
		email, name string
		groups      []string
	}{
		"alice": {"alice@example.com", "Alice Example", []string{"admins", "staff"}},
		"bob":   {"bob@example.com", "Bob Example", []string{"staff"}},
	}
	for _, issuerPath := range []string{"", "/idp"} {
		for _, style := range []struct {
			name  string
			style oauth2.AuthStyle
		}{{"client_secret_basic", oauth2.AuthStyleInHeader}, {"client_secret_post", oauth2.AuthStyleInParams}} {
			for _, user := range []string{"alice", "bob"} {
				t.Run(fmt.Sprintf("issuer%q/%s/%s", issuerPath, style.name, user), func(t *testing.T) {
					e := newTestEnv(t, issuerPath, nil)
					e.conf.Endpoint.AuthStyle = style.style
					want := users[user]

					verifier := oauth2.GenerateVerifier()
					authURL := e.conf.AuthCodeURL(testStateValue, oauth2.S256ChallengeOption(verifier), oidc.Nonce(testNonceValue))
					loc := e.submitLogin(authURL, url.Values{"user": {user}})
					if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "http://127.0.0.1:4180/_gatehouse/callback" {
						t.Errorf("redirected to %s", got)
					}
					if got := loc.Query().Get("keep"); got != "1" {
						t.Errorf("existing redirect_uri query lost: keep=%q", got)
					}
					if got := loc.Query().Get("state"); got != testStateValue {
						t.Errorf("state = %q", got)
					}
					tok, err := e.conf.Exchange(e.ctx(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
					if err != nil {
						t.Fatalf("exchange: %v", err)
					}
					if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.RefreshToken == "" {
						t.Errorf("token = %+v", tok)
					}
					if got := tok.Extra("scope"); got != allTestScopes {
						t.Errorf("scope = %v", got)
					}
					if d := time.Until(tok.Expiry); d < 50*time.Minute || d > 61*time.Minute {
						t.Errorf("expiry in %v, want about 1h", d)
					}
					idt, c, _ := e.verifyIDToken(tok)
					if idt.Nonce != testNonceValue {
						t.Errorf("nonce = %q", idt.Nonce)
					}
					if idt.Subject != user || c.Azp != testClientID || c.Sid == "" {
						t.Errorf("sub/azp/sid = %q/%q/%q", idt.Subject, c.Azp, c.Sid)
					}
					if idt.Issuer != e.issuer || !slices.Equal(idt.Audience, []string{testClientID}) {
						t.Errorf("iss/aud = %q/%q", idt.Issuer, idt.Audience)
					}
					if c.Email != want.email || c.EmailVerified == nil || !*c.EmailVerified {
						t.Errorf("email = %q verified %v", c.Email, c.EmailVerified)
					}
					if c.Name != want.name || c.PreferredUsername != user {
						t.Errorf("name/preferred_username = %q/%q", c.Name, c.PreferredUsername)
					}
					if !slices.Equal(c.Groups, want.groups) {
						t.Errorf("groups = %q, want %q", c.Groups, want.groups)
					}
					if c.AuthTime != e.clock.Now().Unix() {
						t.Errorf("auth_time = %d", c.AuthTime)
					}
					if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
						t.Errorf("at_hash: %v", err)
					}
					ui, err := e.oidcProv.UserInfo(e.ctx(), oauth2.StaticTokenSource(tok))
					if err != nil {
						t.Fatalf("userinfo: %v", err)
					}
					var uc idClaims
					if err := ui.Claims(&uc); err != nil {
						t.Fatal(err)
					}
					if ui.Subject != user || ui.Email != want.email || !slices.Equal(uc.Groups, want.groups) {
						t.Errorf("userinfo = %+v %+v", ui, uc)
					}
				})
			}
		}
	}
}

func TestScopesFilterClaims(t *testing.T) {
	tests := []struct {
		scopes                     []string
		wantEmail, wantName, wantG bool
	}{
		{[]string{"openid"}, false, false, false},
		{[]string{"openid", "email"}, true, false, false},
		{[]string{"openid", "profile"}, false, true, false},
		{[]string{"openid", "groups", "unknown-scope"}, false, false, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.scopes, "+"), func(t *testing.T) {
			e := newTestEnv(t, "", nil)
			e.conf.Scopes = tt.scopes
			tok := e.loginAndExchange("alice")
			_, c, _ := e.verifyIDToken(tok)
			if (c.Email != "") != tt.wantEmail || (c.EmailVerified != nil) != tt.wantEmail {
				t.Errorf("email = %q, email_verified = %v", c.Email, c.EmailVerified)
			}
			if (c.Name != "") != tt.wantName || (c.PreferredUsername != "") != tt.wantName {
				t.Errorf("name = %q, preferred_username = %q", c.Name, c.PreferredUsername)
			}
			if (c.Groups != nil) != tt.wantG {
				t.Errorf("groups = %q", c.Groups)
			}
			if strings.Contains(fmt.Sprint(tok.Extra("scope")), "unknown-scope") {
				t.Errorf("unknown scope granted: %v", tok.Extra("scope"))
			}
		})
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	tests := []struct {
		name string
		// run performs the failing request and returns status, headers
		// and the JSON body.
		run        func(e *testEnv) (int, http.Header, map[string]any)
		wantStatus int
		wantError  string
	}{
		{
			name: "wrong PKCE verifier",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				code := e.login("alice", oauth2.GenerateVerifier())
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {testRedirect}, "code_verifier": {oauth2.GenerateVerifier()}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_grant",
		},
		{
			name: "missing PKCE verifier",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				code := e.login("alice", oauth2.GenerateVerifier())
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {testRedirect}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_grant",
		},
		{
			name: "different redirect_uri",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				v := oauth2.GenerateVerifier()
				code := e.login("alice", v)
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {otherRedirect}, "code_verifier": {v}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_grant",
		},
		{
			name: "expired code",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				v := oauth2.GenerateVerifier()
				code := e.login("alice", v)
				e.clock.Advance(61 * time.Second)
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {code},
					"redirect_uri": {testRedirect}, "code_verifier": {v}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_grant",
		},
		{
			name: "unknown code",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"nope"},
					"redirect_uri": {testRedirect}, "code_verifier": {oauth2.GenerateVerifier()}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_grant",
		},
		{
			name: "wrong client secret",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, testClientID, "wrong")
			},
			wantStatus: 401, wantError: "invalid_client",
		},
		{
			name: "secret not url-decoded by client",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				form := url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}
				req, _ := http.NewRequest(http.MethodPost, e.issuer+"/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(testClientID, "s3cr3t+with+space%2Bplus") // decodes to something else
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					e.t.Fatal(err)
				}
				var body map[string]any
				_ = json.Unmarshal([]byte(readBody(e.t, resp)), &body)
				return resp.StatusCode, resp.Header, body
			},
			wantStatus: 401, wantError: "invalid_client",
		},
		{
			name: "no client authentication",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, "", "")
			},
			wantStatus: 401, wantError: "invalid_client",
		},
		{
			name: "two client authentication methods",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
					"client_id": {testClientID}, "client_secret": {testSecret}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_request",
		},
		{
			name: "unsupported grant type",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"password"}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "unsupported_grant_type",
		},
		{
			name: "missing grant type",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_request",
		},
		{
			name: "repeated parameter",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {"a", "b"}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_request",
		},
		{
			name: "unknown refresh token",
			run: func(e *testEnv) (int, http.Header, map[string]any) {
				return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}}, testClientID, testSecret)
			},
			wantStatus: 400, wantError: "invalid_grant",
		},
	}
	e := newTestEnv(t, "", nil) // key generation is slow; share one provider
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			status, h, body := tt.run(e)
			if status != tt.wantStatus || body["error"] != tt.wantError {
				t.Fatalf("got %d %v, want %d %s", status, body, tt.wantStatus, tt.wantError)
			}
			if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
				t.Errorf("cache headers = %q / %q", h.Get("Cache-Control"), h.Get("Pragma"))
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	e := newTestEnv(t, "", nil)
	verifier := oauth2.GenerateVerifier()
	code := e.login("alice", verifier)
	tok, err := e.conf.Exchange(e.ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("first exchange: %v", err)
	}
	_, err = e.conf.Exchange(e.ctx(), code, oauth2.VerifierOption(verifier))
	if got := retrieveErrorCode(t, err); got != "invalid_grant" {
		t.Fatalf("second exchange error = %q, want invalid_grant", got)
	}
	// The replay revokes what the code produced.
	if _, err := e.oidcProv.UserInfo(e.ctx(), oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("access token still valid after the code was replayed")
	}
	_, err = e.conf.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if got := retrieveErrorCode(t, err); got != "invalid_grant" {
		t.Errorf("refresh after replay error = %q, want invalid_grant", got)
	}

	// A failed first attempt spends the code too.
	code = e.login("bob", verifier)
	if _, err := e.conf.Exchange(e.ctx(), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("exchange with wrong verifier succeeded")
	}
	_, err = e.conf.Exchange(e.ctx(), code, oauth2.VerifierOption(verifier))
	if got := retrieveErrorCode(t, err); got != "invalid_grant" {
		t.Fatalf("retry with right verifier error = %q, want invalid_grant", got)
	}
}

func TestRefreshToken(t *testing.T) {
	e := newTestEnv(t, "", nil)
	tok := e.loginAndExchange("alice")
	_, first, _ := e.verifyIDToken(tok)

	e.clock.Advance(10 * time.Minute)
	refreshed, err := e.conf.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.AccessToken == tok.AccessToken || refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken {
		t.Errorf("tokens were not renewed: %+v", refreshed)
	}
	idt, second, _ := e.verifyIDToken(refreshed)
	if second.Sub != first.Sub || second.Sid != first.Sid || second.AuthTime != first.AuthTime {
		t.Errorf("refreshed id token sub/sid/auth_time = %q/%q/%d, want %q/%q/%d",
			second.Sub, second.Sid, second.AuthTime, first.Sub, first.Sid, first.AuthTime)
	}
	if second.Nonce != nil {
		t.Errorf("refreshed id token has nonce %q", *second.Nonce)
	}
	if !idt.IssuedAt.Equal(e.clock.Now()) {
		t.Errorf("iat = %v, want %v", idt.IssuedAt, e.clock.Now())
	}

	// The old refresh token was rotated away.
	_, err = e.conf.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if got := retrieveErrorCode(t, err); got != "invalid_grant" {
		t.Errorf("old refresh token error = %q, want invalid_grant", got)
	}

	t.Run("narrower scope", func(t *testing.T) {
		e.t = t
		status, _, body := e.postToken(url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {refreshed.RefreshToken}, "scope": {"openid email"}}, testClientID, testSecret)
		if status != http.StatusOK || body["scope"] != "openid email" {
			t.Fatalf("got %d %v", status, body)
		}
		raw, _ := body["id_token"].(string)
		idt, err := e.verifier.Verify(e.ctx(), raw)
		if err != nil {
			t.Fatal(err)
		}
		var c idClaims
		_ = idt.Claims(&c)
		if c.Email == "" || c.Groups != nil {
			t.Errorf("claims = %+v", c)
		}
		// The rotated refresh token keeps the original grant.
		status, _, body = e.postToken(url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {body["refresh_token"].(string)}, "scope": {"openid groups"}}, testClientID, testSecret)
		if status != http.StatusOK {
			t.Fatalf("second narrowing: %d %v", status, body)
		}
		status, _, body = e.postToken(url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {body["refresh_token"].(string)}, "scope": {"openid admin"}}, testClientID, testSecret)
		if status != http.StatusBadRequest || body["error"] != "invalid_scope" {
			t.Fatalf("wider scope: %d %v", status, body)
		}
	})
}

func TestRotateKey(t *testing.T) {
	e := newTestEnv(t, "", nil)
	before := e.loginAndExchange("alice")
	_, _, rawBefore := e.verifyIDToken(before)

	if err := e.p.RotateKey(); err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	after := e.loginAndExchange("bob")
	_, _, rawAfter := e.verifyIDToken(after)
	if kidOf(t, rawBefore) == kidOf(t, rawAfter) {
		t.Fatalf("kid did not change after rotation: %s", kidOf(t, rawAfter))
	}
	// The old token still verifies against the published key set.
	if _, err := e.verifier.Verify(e.ctx(), rawBefore); err != nil {
		t.Errorf("token signed before rotation: %v", err)
	}

	resp := e.get(e.issuer + "/jwks")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(readBody(t, resp)), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("jwks has %d keys, want 2", len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() || k.Use != "sig" || k.Algorithm != "RS256" || k.KeyID == "" {
			t.Errorf("bad jwk %+v", k)
		}
	}

	// SignJWT uses the active key.
	raw, err := e.p.SignJWT(map[string]any{"iss": e.issuer, "sub": "alice", "aud": testClientID,
		"exp": e.clock.Now().Add(time.Minute).Unix(), "iat": e.clock.Now().Unix(), "events": map[string]any{}})
	if err != nil {
		t.Fatalf("SignJWT: %v", err)
	}
	if kidOf(t, raw) != kidOf(t, rawAfter) {
		t.Errorf("SignJWT kid = %s, want active %s", kidOf(t, raw), kidOf(t, rawAfter))
	}
	if _, err := e.verifier.Verify(e.ctx(), raw); err != nil {
		t.Errorf("SignJWT token does not verify: %v", err)
	}
}

func TestAuthorizeRejectsUntrustedClient(t *testing.T) {
	e := newTestEnv(t, "", nil)
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := url.Values{
		"client_id": {testClientID}, "redirect_uri": {testRedirect}, "response_type": {"code"},
		"scope": {"openid"}, "state": {testStateValue}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	tests := []struct {
		name   string
		change url.Values
		drop   string
	}{
		{name: "unregistered redirect_uri", change: url.Values{"redirect_uri": {unregisteredURI}}},
		{name: "redirect_uri prefix", change: url.Values{"redirect_uri": {testRedirect + "&x=1"}}},
		{name: "missing redirect_uri", drop: "redirect_uri"},
		{name: "unknown client_id", change: url.Values{"client_id": {"other"}}},
		{name: "missing client_id", drop: "client_id"},
		{name: "repeated redirect_uri", change: url.Values{"redirect_uri": {testRedirect, testRedirect}}},
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				e.t = t
				v := url.Values{}
				for k, vs := range base {
					v[k] = vs
				}
				for k, vs := range tt.change {
					v[k] = vs
				}
				v.Del(tt.drop)
				var resp *http.Response
				if method == http.MethodGet {
					resp = e.get(e.issuer + "/authorize?" + v.Encode())
				} else {
					v.Set("user", "alice")
					resp = e.postForm(e.issuer+"/authorize", v)
				}
				body := readBody(t, resp)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400", resp.StatusCode)
				}
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Fatalf("redirected to %s", loc)
				}
				if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "Sign-in error") {
					t.Errorf("not an error page: %s", body)
				}
			})
		}
	}
}

func TestAuthorizeRedirectsParameterErrors(t *testing.T) {
	e := newTestEnv(t, "", nil)
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := url.Values{
		"client_id": {testClientID}, "redirect_uri": {testRedirect}, "response_type": {"code"},
		"scope": {"openid"}, "state": {testStateValue}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	tests := []struct {
		name      string
		change    url.Values
		drop      string
		wantError string
	}{
		{name: "missing code_challenge", drop: "code_challenge", wantError: "invalid_request"},
		{name: "missing code_challenge_method", drop: "code_challenge_method", wantError: "invalid_request"},
		{name: "plain PKCE", change: url.Values{"code_challenge_method": {"plain"}}, wantError: "invalid_request"},
		{name: "short code_challenge", change: url.Values{"code_challenge": {"abc"}}, wantError: "invalid_request"},
		{name: "missing response_type", drop: "response_type", wantError: "invalid_request"},
		{name: "implicit flow", change: url.Values{"response_type": {"token"}}, wantError: "unsupported_response_type"},
		{name: "no openid scope", change: url.Values{"scope": {"email"}}, wantError: "invalid_scope"},
		{name: "repeated scope", change: url.Values{"scope": {"openid", "email"}}, wantError: "invalid_request"},
		{name: "fragment response mode", change: url.Values{"response_mode": {"fragment"}}, wantError: "invalid_request"},
		{name: "prompt none", change: url.Values{"prompt": {"none"}}, wantError: "login_required"},
		{name: "request object", change: url.Values{"request": {"eyJ"}}, wantError: "request_not_supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			v := url.Values{}
			for k, vs := range base {
				v[k] = vs
			}
			for k, vs := range tt.change {
				v[k] = vs
			}
			v.Del(tt.drop)
			resp := e.get(e.issuer + "/authorize?" + v.Encode())
			readBody(t, resp)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			q := loc.Query()
			if !strings.HasPrefix(loc.String(), "http://127.0.0.1:4180/_gatehouse/callback?") || q.Get("keep") != "1" {
				t.Errorf("redirected to %s", loc)
			}
			if q.Get("error") != tt.wantError || q.Get("error_description") == "" || q.Get("state") != testStateValue {
				t.Errorf("query = %v, want error %s with description and state", q, tt.wantError)
			}
			if q.Has("code") {
				t.Error("error redirect carries a code")
			}
		})
	}
}

func TestDeny(t *testing.T) {
	e := newTestEnv(t, "", nil)
	authURL := e.conf.AuthCodeURL(testStateValue, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	loc := e.submitLogin(authURL, url.Values{"deny": {"1"}})
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("state") != testStateValue || q.Has("code") {
		t.Fatalf("deny redirect = %s", loc)
	}
}

func TestLoginPostRejectsUnknownUser(t *testing.T) {
	e := newTestEnv(t, "", nil)
	authURL := e.conf.AuthCodeURL(testStateValue, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	action, fields, _ := e.loginForm(authURL)
	for _, user := range []string{"mallory", ""} {
		t.Run("user="+user, func(t *testing.T) {
			e.t = t
			fields.Set("user", user)
			resp := e.postForm(action, fields)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.Contains(body, `id="error"`) || !strings.Contains(body, `id="login-alice"`) {
				t.Errorf("sign-in page with error expected:\n%s", body)
			}
		})
	}
}

func TestLoginPage(t *testing.T) {
	e := newTestEnv(t, "", func(o *Options) {
		o.Users = append(DefaultUsers(), User{Subject: "eve", Name: `<script>alert("x")</script>`, Email: `e"ve@example.com`})
	})
	state := `"><script>alert(1)</script>`
	authURL := e.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	resp := e.get(authURL)
	body := readBody(t, resp)
	headers := map[string]string{
		"Cache-Control":   "no-store",
		"X-Frame-Options": "DENY",
		"Content-Type":    "text/html; charset=utf-8",
	}
	for k, want := range headers {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'") ||
		!strings.Contains(csp, "http://127.0.0.1:4180") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	for _, want := range []string{
		"<title>gatehouse development sign-in</title>",
		"development identity provider — not for production",
		`<button type="submit" name="user" value="alice" id="login-alice">`,
		`<button type="submit" name="user" value="bob" id="login-bob">`,
		`name="deny" value="1" id="deny"`,
		`&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`,
		`value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("unescaped script in page:\n%s", body)
	}
	// The escaped state survives the round trip through the form.
	loc := e.submitLogin(authURL, url.Values{"user": {"eve"}})
	if got := loc.Query().Get("state"); got != state {
		t.Errorf("state = %q, want %q", got, state)
	}
}

func TestUserinfo(t *testing.T) {
	e := newTestEnv(t, "", nil)
	e.conf.Scopes = []string{"openid", "email"}
	tok := e.loginAndExchange("bob")
	tests := []struct {
		name       string
		auth       string
		advance    time.Duration
		wantStatus int
		wantHeader string
	}{
		{name: "valid", auth: "Bearer " + tok.AccessToken, wantStatus: 200},
		{name: "lower-case scheme", auth: "bearer " + tok.AccessToken, wantStatus: 200},
		{name: "no token", wantStatus: 401, wantHeader: `Bearer realm="devidp"`},
		{name: "unknown token", auth: "Bearer nope", wantStatus: 401, wantHeader: `Bearer error="invalid_token"`},
		{name: "basic auth", auth: "Basic Ym9iOmJvYg==", wantStatus: 401, wantHeader: `Bearer realm="devidp"`},
		{name: "expired token", auth: "Bearer " + tok.AccessToken, advance: time.Hour, wantStatus: 401, wantHeader: `Bearer error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Advance(tt.advance)
			req, _ := http.NewRequest(http.MethodGet, e.issuer+"/userinfo", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]any
			if err := json.Unmarshal([]byte(readBody(t, resp)), &claims); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.wantHeader) || (tt.wantHeader == "") != (got == "") {
				t.Errorf("WWW-Authenticate = %q, want prefix %q", got, tt.wantHeader)
			}
			if tt.wantStatus == 200 {
				want := map[string]any{"sub": "bob", "email": "bob@example.com", "email_verified": true}
				if fmt.Sprint(claims) != fmt.Sprint(want) {
					t.Errorf("claims = %v, want %v", claims, want)
				}
			}
		})
	}
}

func TestLogout(t *testing.T) {
	e := newTestEnv(t, "/idp", nil)
	_, _, idToken := e.verifyIDToken(e.loginAndExchange("alice"))
	other := newTestEnv(t, "/idp", nil)
	_, _, foreign := other.verifyIDToken(other.loginAndExchange("alice"))
	e.t = t
	e.clock.Advance(2 * time.Hour) // the hint may be expired

	tests := []struct {
		name         string
		params       url.Values
		wantStatus   int
		wantLocation string
	}{
		{name: "registered redirect with state", params: url.Values{"post_logout_redirect_uri": {testPostLogout}, "state": {"s1"}, "id_token_hint": {idToken}},
			wantStatus: 302, wantLocation: testPostLogout + "?state=s1"},
		{name: "registered redirect with client_id", params: url.Values{"post_logout_redirect_uri": {testPostLogout}, "client_id": {testClientID}},
			wantStatus: 302, wantLocation: testPostLogout},
		{name: "unregistered redirect is ignored", params: url.Values{"post_logout_redirect_uri": {unregisteredURI}, "state": {"s1"}},
			wantStatus: 200},
		{name: "login redirect_uri is not a logout uri", params: url.Values{"post_logout_redirect_uri": {testRedirect}},
			wantStatus: 200},
		{name: "no parameters", params: url.Values{}, wantStatus: 200},
		{name: "foreign id_token_hint", params: url.Values{"post_logout_redirect_uri": {testPostLogout}, "id_token_hint": {foreign}},
			wantStatus: 400},
		{name: "garbage id_token_hint", params: url.Values{"id_token_hint": {"not-a-jwt"}}, wantStatus: 400},
		{name: "unknown client_id", params: url.Values{"post_logout_redirect_uri": {testPostLogout}, "client_id": {"other"}},
			wantStatus: 400},
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				e.t = t
				var resp *http.Response
				if method == http.MethodGet {
					resp = e.get(e.issuer + "/logout?" + tt.params.Encode())
				} else {
					resp = e.postForm(e.issuer+"/logout", tt.params)
				}
				body := readBody(t, resp)
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
				}
				if got := resp.Header.Get("Location"); got != tt.wantLocation {
					t.Errorf("Location = %q, want %q", got, tt.wantLocation)
				}
				if tt.wantStatus == 200 && !strings.Contains(body, "You are signed out of the development provider") {
					t.Errorf("signed-out page expected:\n%s", body)
				}
			})
		}
	}
}

func TestDiscoveryAndRouting(t *testing.T) {
	e := newTestEnv(t, "/idp", nil)
	resp := e.get(e.issuer + "/.well-known/openid-configuration")
	var doc map[string]any
	if err := json.Unmarshal([]byte(readBody(t, resp)), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                e.issuer,
		"authorization_endpoint":                e.issuer + "/authorize",
		"token_endpoint":                        e.issuer + "/token",
		"userinfo_endpoint":                     e.issuer + "/userinfo",
		"jwks_uri":                              e.issuer + "/jwks",
		"end_session_endpoint":                  e.issuer + "/logout",
		"response_types_supported":              []any{"code"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"scopes_supported":                      []any{"openid", "email", "profile", "groups", "offline_access"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []any{"S256"},
		"grant_types_supported":                 []any{"authorization_code", "refresh_token"},
		"backchannel_logout_supported":          false,
	}
	for k, v := range want {
		if fmt.Sprint(doc[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, doc[k], v)
		}
	}
	if _, ok := doc["claims_supported"].([]any); !ok {
		t.Error("claims_supported missing")
	}

	tests := []struct {
		method, path string
		wantStatus   int
	}{
		{http.MethodGet, "/jwks", 200},
		{http.MethodGet, "/idp/jwks", 200},
		{http.MethodGet, "/idpx/jwks", 404},
		{http.MethodGet, "/idp/nothing", 404},
		{http.MethodGet, "/idp", 404},
		{http.MethodGet, "/idp/token", 405},
		{http.MethodPost, "/idp/jwks", 405},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.srv.URL+tt.path, nil)
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readBody(t, resp)
			want := tt.wantStatus
			if tt.path == "/jwks" {
				want = 404 // outside the issuer path
			}
			if resp.StatusCode != want {
				t.Errorf("status %d, want %d", resp.StatusCode, want)
			}
		})
	}
}

func TestConcurrentLogins(t *testing.T) {
	e := newTestEnv(t, "", nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			user := []string{"alice", "bob"}[i%2]
			verifier := oauth2.GenerateVerifier()
			authURL := e.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier))
			v, _ := url.Parse(authURL)
			q := v.Query()
			q.Set("user", user)
			resp, err := e.noRedirect.PostForm(e.issuer+"/authorize", q)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			tok, err := e.conf.Exchange(e.ctx(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				errs <- fmt.Errorf("exchange: %w", err)
				return
			}
			if i == 0 {
				if err := e.p.RotateKey(); err != nil {
					errs <- err
				}
			}
			raw, _ := tok.Extra("id_token").(string)
			if idt, err := e.verifier.Verify(e.ctx(), raw); err != nil || idt.Subject != user {
				errs <- fmt.Errorf("verify: %v (sub %v)", err, idt)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	valid := func() Options {
		return Options{Issuer: "http://127.0.0.1:4181", ClientID: "c", ClientSecret: "s", RedirectURIs: []string{"http://127.0.0.1:4180/cb"}}
	}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"missing issuer", func(o *Options) { o.Issuer = "" }, "issuer is required"},
		{"relative issuer", func(o *Options) { o.Issuer = "/idp" }, "http or https"},
		{"trailing slash", func(o *Options) { o.Issuer = "http://127.0.0.1:4181/" }, "must not end with a slash"},
		{"issuer query", func(o *Options) { o.Issuer = "http://127.0.0.1:4181?x=1" }, "query or fragment"},
		{"missing client id", func(o *Options) { o.ClientID = "" }, "client id is required"},
		{"missing client secret", func(o *Options) { o.ClientSecret = "" }, "client secret is required"},
		{"no redirect uris", func(o *Options) { o.RedirectURIs = nil }, "redirect uri is required"},
		{"relative redirect uri", func(o *Options) { o.RedirectURIs = []string{"/cb"} }, "not an absolute uri"},
		{"redirect uri fragment", func(o *Options) { o.RedirectURIs = []string{"http://127.0.0.1/cb#x"} }, "fragment"},
		{"bad logout uri", func(o *Options) { o.PostLogoutRedirectURIs = []string{"signed-out"} }, "post-logout"},
		{"empty users", func(o *Options) { o.Users = []User{} }, "at least one user"},
		{"duplicate users", func(o *Options) { o.Users = []User{{Subject: "a"}, {Subject: "a"}} }, "duplicate"},
		{"empty subject", func(o *Options) { o.Users = []User{{Name: "x"}} }, "empty subject"},
		{"negative ttl", func(o *Options) { o.IDTokenTTL = -time.Second }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestStoreBounds(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	t.Run("cap drops oldest", func(t *testing.T) {
		s := newStore[int](3)
		for i := range 5 {
			s.put(now, fmt.Sprint(i), now.Add(time.Hour), i)
		}
		if s.len() != 3 {
			t.Fatalf("len = %d, want 3", s.len())
		}
		for i, want := range []bool{false, false, true, true, true} {
			if _, ok := s.get(now, fmt.Sprint(i)); ok != want {
				t.Errorf("key %d present = %v, want %v", i, ok, want)
			}
		}
	})
	t.Run("expired dropped on write", func(t *testing.T) {
		s := newStore[int](10)
		s.put(now, "old", now.Add(time.Minute), 1)
		s.put(now, "old2", now.Add(time.Minute), 2)
		s.put(now.Add(2*time.Minute), "new", now.Add(3*time.Minute), 3)
		if s.len() != 1 {
			t.Fatalf("len = %d, want 1", s.len())
		}
	})
	t.Run("expired not returned", func(t *testing.T) {
		s := newStore[int](10)
		s.put(now, "k", now.Add(time.Minute), 1)
		if _, ok := s.get(now.Add(time.Minute), "k"); ok {
			t.Error("expired entry returned")
		}
		if s.len() != 0 {
			t.Errorf("expired entry kept, len %d", s.len())
		}
	})
}

// TestStepUpLogin: the development provider has no single sign-on session:
// every authorization request, with max_age and prompt=login as
// gatehouse's step-up sends them, shows its sign-in page, and the ID token
// carries auth_time of that sign-in, not of an earlier one.
func TestStepUpLogin(t *testing.T) {
	e := newTestEnv(t, "", nil)
	first := e.loginAndExchange("alice")
	_, c1, _ := e.verifyIDToken(first)
	e.clock.Advance(20 * time.Minute)
	verifier := oauth2.GenerateVerifier()
	authURL := e.conf.AuthCodeURL(testStateValue, oauth2.S256ChallengeOption(verifier), oidc.Nonce(testNonceValue),
		oauth2.SetAuthURLParam("max_age", "900"), oauth2.SetAuthURLParam("prompt", "login"))
	loc := e.submitLogin(authURL, url.Values{"user": {"alice"}}) // fails unless the sign-in page is shown
	tok, err := e.conf.Exchange(e.ctx(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	_, c2, _ := e.verifyIDToken(tok)
	if c2.AuthTime != e.clock.Now().Unix() || c2.AuthTime == c1.AuthTime {
		t.Errorf("step-up auth_time = %d, want the new sign-in's %d (first was %d)", c2.AuthTime, e.clock.Now().Unix(), c1.AuthTime)
	}
}
