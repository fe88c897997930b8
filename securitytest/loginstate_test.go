package securitytest

// loginstate_test.go: the login state belongs to the browser that started
// the login, and serves once (login CSRF through a planted login cookie,
// callback replay at any replica); tokens the provider signs for other
// purposes are not credentials (ID and logout tokens as bearer tokens); a
// logout token ends only the sessions it names.

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// rawClient sends requests with the Cookie header the test writes and
// follows no redirect: for an https external URL, whose Secure cookies a
// cookie jar would not send to the plain-HTTP test server.
var rawClient = &http.Client{
	Transport:     loopbackOnly,
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// rawGet sends GET rawURL with a Cookie header (none when cookie is "").
func rawGet(t *testing.T, rawURL, cookie string) (*http.Response, string) {
	t.Helper()
	hdr := []string{"Accept", "application/json"}
	if cookie != "" {
		hdr = append(hdr, "Cookie", cookie)
	}
	resp, err := rawClient.Do(newRequest(t, "GET", rawURL, nil, hdr...))
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// onServer turns a URL on the external origin into the same path and
// query on the test server.
func onServer(t *testing.T, e *testenv.Env, external string) string {
	t.Helper()
	u, err := url.Parse(external)
	if err != nil {
		t.Fatal(err)
	}
	return e.URL + u.RequestURI()
}

// --- login CSRF through a planted login cookie -------------------------------

// plantedLoginCookie: on https the login cookie is __Host-, which only
// gatehouse's own host can set; a sibling subdomain (a compromised or
// user-content site under cookie.domain) can plant a __Secure- or an
// unprefixed cookie for the parent domain and /_gatehouse/. With the
// attacker's login cookie planted so and the attacker's unused callback
// URL, the victim would be signed in as the attacker: the planted cookie
// must not be login state.
func plantedLoginCookie(t *testing.T) {
	e := testenv.New(t, testenv.Options{ExternalURL: "https://gate.example.test", CookieYAML: "domain: example.test\n"})
	name := e.Gateway.Auth().LoginCookieName()

	// The attacker starts a login and lets the provider sign it in.
	start, _ := rawGet(t, e.URL+"/_gatehouse/start?rd=/", "")
	var login *http.Cookie
	for _, c := range start.Cookies() {
		if c.Name == name {
			login = c
		}
	}
	if start.StatusCode != http.StatusFound || login == nil {
		t.Fatalf("start: status %d, cookies %q", start.StatusCode, start.Header.Values("Set-Cookie"))
	}
	if name != "__Host-gatehouse_login" || login.Path != "/" || login.Domain != "" || !login.Secure || !login.HttpOnly || login.SameSite != http.SameSiteLaxMode {
		t.Errorf("login cookie %s: Path %q, Domain %q, Secure %v, HttpOnly %v, SameSite %v; want __Host-gatehouse_login, Path=/, host-only, Secure, HttpOnly, Lax (even with cookie.domain set)",
			name, login.Path, login.Domain, login.Secure, login.HttpOnly, login.SameSite)
	}
	e.IdP.QueueUser(testenv.User("mallory", "mallory@example.com"))
	az, _ := rawGet(t, start.Header.Get("Location"), "")
	if az.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", az.StatusCode)
	}
	callback := onServer(t, e, az.Header.Get("Location"))
	exchanges := e.Grants("authorization_code")

	// What a sibling subdomain can plant in the victim's browser.
	for _, planted := range []string{
		"__Secure-gatehouse_login=" + login.Value, // Domain=example.test; Path=/_gatehouse/
		"gatehouse_login=" + login.Value,
		"__HOST-gatehouse_login=" + login.Value, // not the prefix: RFC 6265bis compares names exactly
		"__Secure-gatehouse=" + login.Value,
	} {
		resp, body := rawGet(t, callback, planted)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"error":"no_login_cookie"`) {
			t.Errorf("victim holding %.40s…: status %d body %.200s; want 400 no_login_cookie", planted, resp.StatusCode, body)
		}
		for _, c := range resp.Cookies() {
			if c.Name == e.Gateway.Auth().SessionCookieName() && c.Value != "" {
				t.Errorf("victim holding %.40s…: signed in", planted)
			}
		}
	}
	if n, m := e.Grants("authorization_code"), e.Gateway.Store.Len(); n != exchanges || m != 0 {
		t.Errorf("token endpoint calls %d → %d, store %d: a planted login cookie reached the code exchange", exchanges, n, m)
	}
	// Control: the attacker's own browser holds the __Host- cookie.
	resp, body := rawGet(t, callback, name+"="+login.Value)
	if resp.StatusCode != http.StatusFound || e.Gateway.Store.Len() != 1 {
		t.Fatalf("the attacker's own callback: status %d %.200s, store %d; want 302 and a session", resp.StatusCode, body, e.Gateway.Store.Len())
	}
	// The login cookie now goes with every request (Path=/): the upstream
	// never sees it, nor the old one, nor the session cookie.
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == e.Gateway.Auth().SessionCookieName() {
			session = c.Name + "=" + c.Value
		}
	}
	if r, body := rawGet(t, e.URL+"/page", "app=1; "+session+"; "+name+"=x; __Secure-gatehouse_login=y"); r.StatusCode != http.StatusOK {
		t.Fatalf("signed-in request: status %d %.200s", r.StatusCode, body)
	}
	if got := e.LastRequest().Header.Values("Cookie"); len(got) != 1 || got[0] != "app=1" {
		t.Errorf("upstream Cookie = %q, want only the app's own cookie", got)
	}
}

// --- login state replay at any replica ---------------------------------------

// loginStateReplay: a callback replayed with a saved copy of the login
// cookie, at the replica that served the login or another one sharing
// the store, is refused before the token endpoint is called, even when
// the provider accepts a code twice (testenv.AcceptCodeTwice); and a
// store that cannot record the state stops the login (fail closed).
func loginStateReplay(t *testing.T) {
	replay := func(t *testing.T, e *testenv.Env, replayURL func(cb string) string) {
		t.Helper()
		b := browser(e)
		cb, saved := startAndAuthorize(t, e, b, "/x", alice())
		if r := b.Get(cb); r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/x" {
			t.Fatalf("first callback: %d → %q, want 302 → /x", r.StatusCode, r.Header.Get("Location"))
		}
		exchanges, stored := e.Grants("authorization_code"), e.Gateway.Store.Len()
		for i := range 3 {
			thief := browser(e)
			r := thief.Get(replayURL(cb), "Accept", "text/html", "Cookie", saved.Name+"="+saved.Value)
			if r.StatusCode != http.StatusBadRequest || !isErrorPage(r.Body) || !strings.Contains(r.Body, "already used") {
				t.Errorf("replay %d: status %d, want the 400 \"already used\" page; body %.300s", i+1, r.StatusCode, r.Body)
			}
			if n := e.Grants("authorization_code"); n != exchanges {
				t.Errorf("replay %d reached the token endpoint (%d exchanges, want %d)", i+1, n, exchanges)
			}
			if n := e.Gateway.Store.Len(); n != stored || thief.SessionCookie() != "" {
				t.Errorf("replay %d: store %d sessions (want %d), session cookie %v", i+1, n, stored, thief.SessionCookie() != "")
			}
		}
	}
	t.Run("same replica, memory store", func(t *testing.T) {
		e := testenv.New(t, testenv.Options{IdPMiddleware: testenv.AcceptCodeTwice})
		replay(t, e, func(cb string) string { return cb })
		if !strings.Contains(e.Logs.String(), `"reason":"state_used"`) {
			t.Error("no login_failure log with reason state_used")
		}
	})
	t.Run("another replica, redis store", func(t *testing.T) {
		redistest.Require(t, redistest.Addr)
		e := testenv.New(t, testenv.Options{IdPMiddleware: testenv.AcceptCodeTwice, YAML: fmt.Sprintf(
			"session:\n  store: redis\n  redis:\n    url: redis://%s/0\n    key_prefix: %q\n", redistest.Addr, redistest.KeyPrefix(t, redistest.Addr))})
		e.RunGateway()
		rep := e.Replica()
		replay(t, e, func(cb string) string { return strings.Replace(cb, e.URL, rep.URL, 1) })
		replay(t, e, func(cb string) string { return cb })
	})
	t.Run("redis down when the state is consumed", func(t *testing.T) {
		srv := redistest.Start(t)
		e := testenv.New(t, testenv.Options{IdPMiddleware: testenv.AcceptCodeTwice, YAML: fmt.Sprintf(
			"session:\n  store: redis\n  redis:\n    url: %s\n    timeout: 200ms\n", srv.URL)})
		b := browser(e)
		cb, _ := startAndAuthorize(t, e, b, "/x", alice())
		srv.Kill()
		r := b.Get(cb, "Accept", "text/html")
		if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Session store unavailable") {
			t.Errorf("callback with Redis down: status %d, want 503 \"Session store unavailable\"; body %.300s", r.StatusCode, r.Body)
		}
		if n := e.Grants("authorization_code"); n != 0 {
			t.Errorf("the code went to the token endpoint (%d calls) though the state could not be consumed", n)
		}
	})
}

// --- ID and logout tokens as bearer tokens -----------------------------------

// bearerOtherTokenKinds: the provider signs ID tokens and logout tokens
// with its access-token keys, and their aud may name the API. Neither is
// an access token: a logout token (typ logout+jwt, or an events claim)
// and an ID token (nonce, at_hash, c_hash, Keycloak's typ "ID") are
// refused as bearer credentials. Access tokens, RFC 9068 typed or not,
// and Keycloak's (which carried the nonce before version 25, marked typ
// "Bearer") pass.
func bearerOtherTokenKinds(t *testing.T) {
	tap := &tokenTap{}
	e := testenv.New(t, testenv.Options{IdPMiddleware: tap.middleware, YAML: "allow: {any_user: true}\nbearer:\n  enabled: true\n  audiences: [api]\n"})
	kid := providerKid(t, e)
	// A real ID token from the provider, whose aud also names the API
	// (providers that let a client request several audiences do this).
	browser(e).Login(&testenv.TokenUser{Sub: "alice", Email: "alice@example.com", Verified: new(true), Mutate: func(c map[string]any) {
		c["aud"] = []string{e.IdP.ClientID, "api"}
		c["azp"] = e.IdP.ClientID
	}}, "/")
	idToken := tap.lastIDToken()
	if idToken == "" || jwtClaims(idToken)["nonce"] == nil {
		t.Fatalf("no ID token with a nonce from the login")
	}
	sessionsBefore := e.Gateway.Store.Len()
	claims := func(mut func(c map[string]any)) map[string]any {
		now := e.Clock.Now()
		c := map[string]any{"iss": e.IdP.Issuer(), "aud": []string{"api"}, "sub": "alice",
			"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": fmt.Sprint("j", now.UnixNano())}
		if mut != nil {
			mut(c)
		}
		return c
	}
	sign := func(typ string, c map[string]any) string {
		h := map[string]any{"alg": "RS256", "kid": kid}
		if typ != "" {
			h["typ"] = typ
		}
		return makeJWT(h, c, rs256(e.IdP.Keypair.PrivateKey))
	}
	events := func(c map[string]any) {
		c["sid"] = "sid-a"
		c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}
	}
	call := func(token string) *testenv.Response {
		return browser(e).Do(newRequest(t, "GET", e.URL+"/reports", nil, "Authorization", "Bearer "+token, "Accept", "application/json"))
	}
	for _, tc := range []struct{ name, token string }{
		{"the user's real ID token, aud naming the API", idToken},
		{"logout token (typ logout+jwt)", sign("logout+jwt", claims(events))},
		{"logout token typed application/logout+jwt", sign("application/logout+jwt", claims(events))},
		{"logout token typed JWT (events claim)", sign("JWT", claims(events))},
		{"logout token without typ (events claim)", sign("", claims(events))},
		{"security event token (secevent+jwt)", sign("secevent+jwt", claims(nil))},
		{"ID token: nonce", sign("JWT", claims(func(c map[string]any) { c["nonce"] = "n" }))},
		{"ID token: at_hash", sign("JWT", claims(func(c map[string]any) { c["at_hash"] = "x" }))},
		{"ID token: c_hash", sign("", claims(func(c map[string]any) { c["c_hash"] = "x" }))},
		{"ID token: Keycloak typ ID", sign("JWT", claims(func(c map[string]any) { c["typ"] = "ID" }))},
		{"refresh token: Keycloak typ Refresh", sign("JWT", claims(func(c map[string]any) { c["typ"] = "Refresh" }))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(tc.token)
			if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) ||
				!strings.Contains(r.Header.Get("WWW-Authenticate"), "not an access token") {
				t.Errorf("status %d WWW-Authenticate %q; want 401 invalid_token saying it is not an access token", r.StatusCode, r.Header.Get("WWW-Authenticate"))
			}
			if n := e.Gateway.Store.Len(); n != sessionsBefore {
				t.Errorf("store holds %d sessions, want %d", n, sessionsBefore)
			}
		})
	}
	for _, tc := range []struct{ name, token string }{
		{"access token, typ at+jwt (RFC 9068)", sign("at+jwt", claims(func(c map[string]any) { c["client_id"] = "svc" }))},
		{"access token, typ application/at+jwt", sign("application/at+jwt", claims(nil))},
		{"access token, typ JWT", sign("JWT", claims(nil))},
		{"access token, at+jwt with a nonce", sign("at+jwt", claims(func(c map[string]any) { c["nonce"] = "n" }))},
		{"Keycloak < 25 access token (typ Bearer, nonce)", sign("JWT", claims(func(c map[string]any) { c["typ"] = "Bearer"; c["nonce"] = "n" }))},
	} {
		t.Run("control: "+tc.name, func(t *testing.T) {
			if r := call(tc.token); r.StatusCode != http.StatusOK {
				t.Errorf("status %d (%s), want 200", r.StatusCode, r.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("bearer.require_at_jwt", func(t *testing.T) {
		strict := testenv.New(t, testenv.Options{YAML: "allow: {any_user: true}\nbearer:\n  enabled: true\n  audiences: [api]\n  require_at_jwt: true\n"})
		kid := providerKid(t, strict)
		now := strict.Clock.Now()
		c := map[string]any{"iss": strict.IdP.Issuer(), "aud": []string{"api"}, "sub": "svc", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		for typ, want := range map[string]int{"at+jwt": 200, "application/AT+JWT": 200, "JWT": 401, "": 401} {
			h := map[string]any{"alg": "RS256", "kid": kid}
			if typ != "" {
				h["typ"] = typ
			}
			r := browser(strict).Do(newRequest(t, "GET", strict.URL+"/reports", nil,
				"Authorization", "Bearer "+makeJWT(h, c, rs256(strict.IdP.Keypair.PrivateKey)), "Accept", "application/json"))
			if r.StatusCode != want {
				t.Errorf("typ %q: status %d (%s), want %d", typ, r.StatusCode, r.Header.Get("WWW-Authenticate"), want)
			}
		}
	})
}

// --- back-channel logout naming two users --------------------------------------

// backchannelMixedClaims: a logout token with the sid of bob's session and
// the sub of alice ends nobody's session (with both claims, both must
// match); one naming bob's sid and sub ends his. On the memory store and
// on Redis, where the check and the deletion are one step.
func backchannelMixedClaims(t *testing.T) {
	run := func(t *testing.T, e *testenv.Env) {
		login := func(sub, sid string) *testenv.Browser {
			b := browser(e)
			b.Login(&testenv.TokenUser{Sub: sub, Email: sub + "@example.com", Verified: new(true),
				Mutate: func(c map[string]any) { c["sid"] = sid }}, "/")
			return b
		}
		alice, bob := login("alice", "sid-a"), login("bob", "sid-b")
		post := func(sub, sid string) int {
			now := e.Clock.Now()
			tok, err := e.IdP.Keypair.SignJWT(jwt.MapClaims{"iss": e.IdP.Issuer(), "aud": e.IdP.ClientID, "iat": now.Unix(),
				"exp": now.Add(2 * time.Minute).Unix(), "jti": sub + sid + fmt.Sprint(now.UnixNano()), "sub": sub, "sid": sid,
				"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
			if err != nil {
				t.Fatal(err)
			}
			return browser(e).Do(newRequest(t, "POST", e.URL+"/_gatehouse/backchannel-logout",
				strings.NewReader(url.Values{"logout_token": {tok}}.Encode()), "Content-Type", "application/x-www-form-urlencoded")).StatusCode
		}
		signedIn := func(b *testenv.Browser) bool { return b.Get("/_gatehouse/whoami").StatusCode == http.StatusOK }
		if s := post("alice", "sid-b"); s != http.StatusOK {
			t.Fatalf("logout token with bob's sid and alice's sub: status %d, want 200 (valid, names nobody)", s)
		}
		if !signedIn(bob) || !signedIn(alice) {
			t.Errorf("bob's sid with alice's sub: bob signed in %v, alice %v; want both", signedIn(bob), signedIn(alice))
		}
		if s := post("bob", "sid-b"); s != http.StatusOK || signedIn(bob) || !signedIn(alice) {
			t.Errorf("control, bob's sid and sub: status %d, bob signed in %v, alice %v; want 200, bob out, alice in", s, signedIn(bob), signedIn(alice))
		}
	}
	t.Run("memory", func(t *testing.T) { run(t, testenv.New(t, testenv.Options{})) })
	t.Run("redis", func(t *testing.T) {
		redistest.Require(t, redistest.Addr)
		e := testenv.New(t, testenv.Options{YAML: fmt.Sprintf("session:\n  store: redis\n  redis:\n    url: redis://%s/0\n    key_prefix: %q\n",
			redistest.Addr, redistest.KeyPrefix(t, redistest.Addr))})
		e.RunGateway()
		run(t, e)
	})
}
