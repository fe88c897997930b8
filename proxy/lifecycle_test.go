package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// mockoidc's access tokens (and so the session's access expiry) last 10
// minutes; with refresh_before 1m a refresh is due after 9.
const accessTTL = 10 * time.Minute

func TestRefresh_BeforeExpiry(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "routes:\n  - upstream: ${UPSTREAM}\n    pass_access_token: true\n", NoUpstream: true})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	first := e.LastRequest().Header.Get("X-Forwarded-Access-Token")
	if first == "" || e.Grants("refresh_token") != 0 {
		t.Fatalf("after login: token %q, refreshes %d", first, e.Grants("refresh_token"))
	}
	e.Advance(accessTTL - 61*time.Second)
	wantUpstream(t, b, "/")
	if n := e.Grants("refresh_token"); n != 0 {
		t.Fatalf("refreshed %d times before refresh_before", n)
	}
	e.Advance(2 * time.Second) // now within a minute of expiry
	wantUpstream(t, b, "/")
	if n := e.Grants("refresh_token"); n != 1 {
		t.Fatalf("refreshes: %d, want 1", n)
	}
	second := e.LastRequest().Header.Get("X-Forwarded-Access-Token")
	if second == "" || second == first {
		t.Errorf("access token not renewed")
	}
	wantUpstream(t, b, "/")
	if n := e.Grants("refresh_token"); n != 1 {
		t.Errorf("refreshed again with a fresh token: %d", n)
	}
	if !strings.Contains(e.Logs.String(), `"msg":"session refreshed"`) {
		t.Error("no refresh log line")
	}
}

func TestRefresh_ConcurrentRequestsRefreshOnce(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	e.Advance(accessTTL)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
			resp, err := b.Client.Do(req)
			if err == nil {
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 20 {
		t.Errorf("%d of 20 concurrent requests passed", ok.Load())
	}
	if n := e.Grants("refresh_token"); n != 1 {
		t.Errorf("refreshes: %d, want exactly 1 for 20 concurrent requests", n)
	}
}

func TestRefresh_InvalidGrantEndsSession(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	e.Advance(accessTTL)
	e.IdP.QueueError(&mockoidc.ServerError{Code: http.StatusBadRequest, Error: mockoidc.InvalidGrant, Description: "user disabled"})
	wantLogin(t, b, "/")
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("store holds %d sessions after invalid_grant", n)
	}
	if !strings.Contains(e.Logs.String(), `"reason":"refresh_rejected"`) {
		t.Error("no session_end log with reason refresh_rejected")
	}
}

// TestRefresh_ProviderDownServesUntilExpiry: while the provider cannot
// refresh, the session keeps serving with its current tokens, with
// attempts spaced by a back-off, and ends once the tokens expire: never
// indefinitely.
func TestRefresh_ProviderDownServesUntilExpiry(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	e.Advance(accessTTL - 30*time.Second)
	_ = e.IdP.Shutdown()
	wantUpstream(t, b, "/")
	if !strings.Contains(e.Logs.String(), "token refresh failed") {
		t.Error("the failed refresh was not logged")
	}
	e.Advance(20 * time.Second) // still 10s before expiry
	wantUpstream(t, b, "/")
	if n := e.Gateway.Store.Len(); n != 1 {
		t.Errorf("store holds %d sessions before the tokens expired", n)
	}
	e.Advance(11 * time.Second) // past the access token's expiry
	wantLogin(t, b, "/")
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("store holds %d sessions after the tokens expired unrefreshed", n)
	}
	if !strings.Contains(e.Logs.String(), `"reason":"refresh_failed"`) {
		t.Error("no session_end log with reason refresh_failed")
	}
}

func TestRefresh_UpdatesClaimsButNotLifetime(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "session:\n  idle_timeout: 20m\n  absolute_timeout: 25m\n"})
	groups := []string{"staff"}
	var mu sync.Mutex
	u := &testenv.TokenUser{Sub: "alice", Email: "alice@example.com", Verified: ptr(true),
		Mutate: func(c map[string]any) { mu.Lock(); c["groups"] = groups; mu.Unlock() }}
	b := e.NewBrowser()
	b.Login(u, "/")
	if got := e.LastRequest().Header.Get("X-Forwarded-Groups"); got != "staff" {
		t.Fatalf("groups %q", got)
	}
	mu.Lock()
	groups = []string{"staff", "admins"}
	mu.Unlock()
	e.Advance(accessTTL)
	wantUpstream(t, b, "/")
	if got := e.LastRequest().Header.Get("X-Forwarded-Groups"); got != "staff,admins" {
		t.Errorf("groups after refresh %q, want the refreshed ID token's", got)
	}
	// Refreshes keep coming, but the absolute limit counts from login.
	e.Advance(accessTTL)
	wantUpstream(t, b, "/")
	e.Advance(5*time.Minute + time.Second)
	wantLogin(t, b, "/")
}

func TestRefresh_OtherSubjectEndsSession(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	var calls atomic.Int32
	u := &testenv.TokenUser{Sub: "alice", Mutate: func(c map[string]any) {
		if calls.Add(1) > 1 {
			c["sub"] = "mallory"
		}
	}}
	b := e.NewBrowser()
	b.Login(u, "/")
	e.Advance(accessTTL)
	wantLogin(t, b, "/")
	if e.Gateway.Store.Len() != 0 {
		t.Error("a refresh for another subject kept the session")
	}
}

// logoutToken signs claims with the provider's own key (or another one).
func logoutToken(t *testing.T, e *testenv.Env, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := e.IdP.Keypair.SignJWT(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func logoutClaims(e *testenv.Env, sub, sid string) jwt.MapClaims {
	now := e.Clock.Now()
	c := jwt.MapClaims{
		"iss": e.IdP.Issuer(), "aud": e.IdP.ClientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti":    base64.RawURLEncoding.EncodeToString([]byte(now.String() + sub + sid)),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

func postLogout(t *testing.T, e *testenv.Env, token string) *testenv.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/_gatehouse/backchannel-logout", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.NewBrowser().Do(req)
}

func withSID(sub, sid string) *testenv.TokenUser {
	return &testenv.TokenUser{Sub: sub, Email: sub + "@example.com", Verified: ptr(true),
		Mutate: func(c map[string]any) { c["sid"] = sid }}
}

func TestBackchannelLogout(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	login := func(u *testenv.TokenUser) *testenv.Browser {
		b := e.NewBrowser()
		b.Login(u, "/")
		return b
	}
	alice1, alice2, bob := login(withSID("alice", "sid-a1")), login(withSID("alice", "sid-a2")), login(withSID("bob", "sid-b"))

	t.Run("by sid", func(t *testing.T) {
		r := postLogout(t, e, logoutToken(t, e, logoutClaims(e, "alice", "sid-a1")))
		if r.StatusCode != 200 || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d %s", r.StatusCode, r.Body)
		}
		wantLogin(t, alice1, "/")
		wantUpstream(t, alice2, "/")
		wantUpstream(t, bob, "/")
	})
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherKP, _ := mockoidc.NewKeypair(other)
	bad := func(mut func(jwt.MapClaims)) string {
		c := logoutClaims(e, "bob", "sid-b")
		mut(c)
		return logoutToken(t, e, c)
	}
	for _, tc := range []struct {
		name  string
		token func() string
	}{
		{"bad signature", func() string { s, _ := otherKP.SignJWT(logoutClaims(e, "bob", "sid-b")); return s }},
		{"alg none", func() string { return unsigned(logoutClaims(e, "bob", "sid-b")) }},
		{"wrong aud", func() string { return bad(func(c jwt.MapClaims) { c["aud"] = "someone-else" }) }},
		{"wrong iss", func() string { return bad(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }) }},
		{"missing events", func() string { return bad(func(c jwt.MapClaims) { delete(c, "events") }) }},
		{"other event", func() string {
			return bad(func(c jwt.MapClaims) {
				c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
			})
		}},
		{"nonce present", func() string { return bad(func(c jwt.MapClaims) { c["nonce"] = "n" }) }},
		{"iat far in the past", func() string {
			return bad(func(c jwt.MapClaims) { c["iat"] = e.Clock.Now().Add(-time.Hour).Unix() })
		}},
		{"iat in the future", func() string {
			return bad(func(c jwt.MapClaims) { c["iat"] = e.Clock.Now().Add(time.Hour).Unix() })
		}},
		{"expired", func() string {
			return bad(func(c jwt.MapClaims) { c["exp"] = e.Clock.Now().Add(-time.Second).Unix() })
		}},
		{"no sub nor sid", func() string { return bad(func(c jwt.MapClaims) { delete(c, "sub"); delete(c, "sid") }) }},
		{"no jti", func() string { return bad(func(c jwt.MapClaims) { delete(c, "jti") }) }},
		{"not a JWT", func() string { return "garbage" }},
		{"empty", func() string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := postLogout(t, e, tc.token())
			var body map[string]string
			if r.StatusCode != 400 || json.Unmarshal([]byte(r.Body), &body) != nil || body["error"] != "invalid_request" || body["error_description"] == "" {
				t.Fatalf("status %d body %s, want 400 with a reason", r.StatusCode, r.Body)
			}
			wantUpstream(t, bob, "/")
		})
	}
	t.Run("replayed jti", func(t *testing.T) {
		tok := logoutToken(t, e, logoutClaims(e, "carol", ""))
		if r := postLogout(t, e, tok); r.StatusCode != 200 {
			t.Fatalf("first use: %d", r.StatusCode)
		}
		if r := postLogout(t, e, tok); r.StatusCode != 400 || !strings.Contains(r.Body, "jti") {
			t.Fatalf("replay: %d %s", r.StatusCode, r.Body)
		}
	})
	t.Run("by sub, every session of it", func(t *testing.T) {
		e.Advance(time.Second) // a new jti
		a3 := login(withSID("alice", "sid-a3"))
		r := postLogout(t, e, logoutToken(t, e, logoutClaims(e, "alice", "")))
		if r.StatusCode != 200 {
			t.Fatalf("%d %s", r.StatusCode, r.Body)
		}
		wantLogin(t, alice2, "/")
		wantLogin(t, a3, "/")
		wantUpstream(t, bob, "/")
	})
	if sids, subs := e.Gateway.Store.(*sessions.Memory).IndexSizes(); sids != 1 || subs != 1 {
		t.Errorf("indexes hold %d sids and %d subjects, want bob's only", sids, subs)
	}
}

// unsigned makes an alg=none JWT.
func unsigned(c jwt.MapClaims) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	p, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// verifyAssertion checks an assertion against the JWKS gatehouse serves.
func verifyAssertion(t *testing.T, e *testenv.Env, token, audience string) (josejwt.Claims, map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	r := e.NewBrowser().Get("/_gatehouse/jwks.json")
	if err := json.Unmarshal([]byte(r.Body), &set); err != nil {
		t.Fatalf("jwks: %v %s", err, r.Body)
	}
	parsed, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return josejwt.Claims{}, nil, err
	}
	var std josejwt.Claims
	var extra map[string]any
	if err := parsed.Claims(set, &std, &extra); err != nil {
		return std, nil, err
	}
	err = std.ValidateWithLeeway(josejwt.Expected{Issuer: e.URL, AnyAudience: josejwt.Audience{audience}, Time: e.Clock.Now()}, 0)
	return std, extra, err
}

func TestAssertion(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com", "staff"), "/")
	token := e.LastRequest().Header.Get("X-Gatehouse-Assertion")
	if token == "" {
		t.Fatal("no assertion on the proxied request")
	}
	std, extra, err := verifyAssertion(t, e, token, e.Upstream.URL)
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if std.Subject != "alice" || extra["email"] != "alice@example.com" || extra["sid"] == "" ||
		std.Expiry.Time().Sub(std.IssuedAt.Time()) > 5*time.Minute {
		t.Errorf("claims %+v %v", std, extra)
	}
	if _, _, err := verifyAssertion(t, e, token, "http://other-app:8080"); err == nil {
		t.Error("the assertion verified for another audience")
	}
	// Cached: the same token within the re-sign margin, a new one after.
	e.Advance(3 * time.Minute)
	wantUpstream(t, b, "/")
	if got := e.LastRequest().Header.Get("X-Gatehouse-Assertion"); got != token {
		t.Error("assertion re-signed before it was within a minute of expiry")
	}
	e.Advance(90 * time.Second)
	wantUpstream(t, b, "/")
	renewed := e.LastRequest().Header.Get("X-Gatehouse-Assertion")
	if renewed == token {
		t.Fatal("assertion not re-signed near expiry")
	}
	if _, _, err := verifyAssertion(t, e, renewed, e.Upstream.URL); err != nil {
		t.Errorf("renewed assertion: %v", err)
	}
}

func TestAssertion_KeyRotation(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	b := e.NewBrowser()
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	old := e.LastRequest().Header.Get("X-Gatehouse-Assertion")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := e.Gateway.Handler.Asserter().Rotate(key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := verifyAssertion(t, e, old, e.Upstream.URL); err != nil {
		t.Fatalf("an assertion of the old key stopped verifying right after rotation: %v", err)
	}
	var set jose.JSONWebKeySet
	_ = json.Unmarshal([]byte(e.NewBrowser().Get("/_gatehouse/jwks.json").Body), &set)
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys during rotation, want 2", len(set.Keys))
	}
	// The session's cached assertion is of the old key: the next request
	// gets one of the new key.
	wantUpstream(t, b, "/")
	kid := func(token string) string {
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}
	if kid(e.LastRequest().Header.Get("X-Gatehouse-Assertion")) == kid(old) {
		t.Error("the assertion cached before the rotation is still sent after it")
	}
	e.Advance(5*time.Minute + time.Second)
	_ = json.Unmarshal([]byte(e.NewBrowser().Get("/_gatehouse/jwks.json").Body), &set)
	if len(set.Keys) != 1 {
		t.Errorf("JWKS has %d keys after the old key's assertions expired, want 1", len(set.Keys))
	}
	wantUpstream(t, b, "/")
	if _, _, err := verifyAssertion(t, e, e.LastRequest().Header.Get("X-Gatehouse-Assertion"), e.Upstream.URL); err != nil {
		t.Errorf("assertion of the new key: %v", err)
	}
}

func TestAssertion_Off(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "assertion:\n  enabled: false\n"})
	e.NewBrowser().Login(testenv.User("alice", "alice@example.com"), "/")
	if v := e.LastRequest().Header.Get("X-Gatehouse-Assertion"); v != "" {
		t.Errorf("assertion sent while off: %q", v)
	}
	if r := e.NewBrowser().Get("/_gatehouse/jwks.json"); r.StatusCode != 404 {
		t.Errorf("jwks while off: %d", r.StatusCode)
	}
}

func bearerToken(t *testing.T, e *testenv.Env, kp *mockoidc.Keypair, mut func(jwt.MapClaims)) string {
	t.Helper()
	now := e.Clock.Now()
	c := jwt.MapClaims{"iss": e.IdP.Issuer(), "aud": []string{"api"}, "sub": "svc-reports",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "groups": []string{"robots"}}
	if mut != nil {
		mut(c)
	}
	tok, err := kp.SignJWT(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestBearer(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "bearer:\n  enabled: true\n  audiences: [api]\nallow:\n  groups: [robots, staff]\n"})
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherKP, _ := mockoidc.NewKeypair(other)
	call := func(token string) *testenv.Response {
		req, _ := http.NewRequest(http.MethodGet, e.URL+"/reports", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "text/html") // a browser-like Accept must still not redirect
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		return e.NewBrowser().Do(req)
	}
	r := call(bearerToken(t, e, e.IdP.Keypair, nil))
	if r.StatusCode != 200 || e.LastRequest().Header.Get("X-Forwarded-User") != "svc-reports" {
		t.Fatalf("valid token: %d %s", r.StatusCode, r.Body)
	}
	if e.LastRequest().Header.Get("Authorization") == "" {
		t.Error("the Authorization header did not reach the upstream")
	}
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("a bearer call created %d sessions", n)
	}
	for _, tc := range []struct{ name, token string }{
		{"expired", bearerToken(t, e, e.IdP.Keypair, func(c jwt.MapClaims) { c["exp"] = e.Clock.Now().Add(-time.Minute).Unix() })},
		{"wrong audience", bearerToken(t, e, e.IdP.Keypair, func(c jwt.MapClaims) { c["aud"] = "other" })},
		{"other key", bearerToken(t, e, otherKP, nil)},
		{"unsigned", unsigned(jwt.MapClaims{"iss": e.IdP.Issuer(), "aud": "api", "sub": "x", "exp": e.Clock.Now().Add(time.Hour).Unix()})},
		{"wrong issuer", bearerToken(t, e, e.IdP.Keypair, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })},
		{"opaque", "2YotnFZFEjr1zCsicMWpAA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(tc.token)
			if r.StatusCode != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `Bearer realm="gatehouse", error="invalid_token"`) {
				t.Errorf("status %d WWW-Authenticate %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
			}
			if r.Header.Get("Location") != "" {
				t.Error("a bearer client was redirected")
			}
		})
	}
	t.Run("policy applies", func(t *testing.T) {
		r := call(bearerToken(t, e, e.IdP.Keypair, func(c jwt.MapClaims) { c["groups"] = []string{"interns"} }))
		if r.StatusCode != 403 {
			t.Errorf("status %d, want 403", r.StatusCode)
		}
	})
}

// TestAssertion_VerifiesWithGoOIDC checks the Go snippet of
// docs/identity.md as written.
func TestAssertion_VerifiesWithGoOIDC(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	e.NewBrowser().Login(testenv.User("alice", "alice@example.com", "staff"), "/")
	r := e.LastRequest()
	ctx := oidc.ClientContext(t.Context(), http.DefaultClient)
	keys := oidc.NewRemoteKeySet(ctx, e.URL+"/_gatehouse/jwks.json")
	v := oidc.NewVerifier(e.URL, keys,
		&oidc.Config{ClientID: e.Upstream.URL, SupportedSigningAlgs: []string{"ES256"}, Now: e.Clock.Now})
	tok, err := v.Verify(ctx, r.Header.Get("X-Gatehouse-Assertion"))
	if err != nil || tok.Subject != "alice" {
		t.Fatalf("verify: %v", err)
	}
	other := oidc.NewVerifier(e.URL, keys, &oidc.Config{ClientID: "http://other:8080", SupportedSigningAlgs: []string{"ES256"}, Now: e.Clock.Now})
	if _, err := other.Verify(ctx, r.Header.Get("X-Gatehouse-Assertion")); err == nil {
		t.Error("verified for another audience")
	}
}
