package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// dbscClient is a browser that speaks Device Bound Session Credentials as
// Chromium was measured to: an ES256 key, proofs typed dbsc+jwt with the
// public key in the header at registration, r||s signatures.
type dbscClient struct {
	t   *testing.T
	b   *testenv.Browser
	key *ecdsa.PrivateKey
	id  string // session_identifier
}

func newDBSCClient(t *testing.T, b *testenv.Browser) *dbscClient {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dbscClient{t: t, b: b, key: key}
}

// proof signs challenge with key; withJWK puts the public key in the
// header (registration).
func proof(t testing.TB, key *ecdsa.PrivateKey, challenge string, withJWK bool) string {
	t.Helper()
	h := map[string]any{"alg": "ES256", "typ": "dbsc+jwt"}
	if withJWK {
		pub, err := key.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		h["jwk"] = map[string]string{"kty": "EC", "crv": "P-256",
			"x": base64.RawURLEncoding.EncodeToString(pub[1:33]), "y": base64.RawURLEncoding.EncodeToString(pub[33:])}
	}
	hb, _ := json.Marshal(h)
	pb, _ := json.Marshal(map[string]string{"jti": challenge})
	signed := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
	d := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// param reads a structured-header parameter (name="value") from v.
func param(v, name string) string {
	return between(v, name+`="`, `"`)
}

func (c *dbscClient) post(path string, header ...string) *testenv.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.b.Env().URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.b.Do(req)
}

// register answers a Secure-Session-Registration offer.
func (c *dbscClient) register(offer string) *testenv.Response {
	c.t.Helper()
	if !strings.HasPrefix(offer, "(ES256);") {
		c.t.Fatalf("registration offer %q", offer)
	}
	r := c.post(param(offer, "path"), "Secure-Session-Response", proof(c.t, c.key, param(offer, "challenge"), true))
	if r.StatusCode == http.StatusOK {
		var in struct {
			ID         string `json:"session_identifier"`
			RefreshURL string `json:"refresh_url"`
		}
		if err := json.Unmarshal([]byte(r.Body), &in); err != nil {
			c.t.Fatalf("registration answer %q: %v", r.Body, err)
		}
		c.id = in.ID
	}
	return r
}

// refresh does the refresh dance: ask, get a challenge, sign it.
func (c *dbscClient) refresh() *testenv.Response {
	c.t.Helper()
	r := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id)
	if r.StatusCode != http.StatusForbidden {
		return r
	}
	ch := r.Header.Get("Secure-Session-Challenge")
	if id := param(ch, "id"); id != c.id {
		c.t.Fatalf("challenge %q names session %q, want %q", ch, id, c.id)
	}
	return c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id,
		"Secure-Session-Response", proof(c.t, c.key, between(ch, `"`, `"`), false))
}

// bindEnv signs alice in over https with device binding (extra under
// session:) and binds her browser.
func bindEnv(t *testing.T, extra string) (*testenv.Env, *dbscClient) {
	t.Helper()
	e := testenv.New(t, testenv.Options{TLS: true, YAML: "session:\n" + extra})
	return e, bindBrowser(t, e)
}

// offers records the Secure-Session-Registration headers a browser
// receives, by path.
type offers struct {
	next http.RoundTripper
	got  map[string]string
}

func (o *offers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(r)
	if err == nil {
		if v := resp.Header.Get("Secure-Session-Registration"); v != "" {
			o.got[r.URL.Path] = v
		}
	}
	return resp, err
}

// loginOffers signs user in with b and returns the registration offers
// the browser received on the way, by path.
func loginOffers(t *testing.T, b *testenv.Browser, user, path string) map[string]string {
	t.Helper()
	o := &offers{next: b.Client.Transport, got: map[string]string{}}
	if o.next == nil {
		o.next = http.DefaultTransport
	}
	b.Client.Transport = o
	defer func() { b.Client.Transport = o.next }()
	if r := b.Login(testenv.User(user, user+"@example.com"), path); r.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s", r.StatusCode, r.Body)
	}
	return o.got
}

func bindBrowser(t *testing.T, e *testenv.Env) *dbscClient {
	t.Helper()
	b := e.NewBrowser()
	got := loginOffers(t, b, "alice", "/")
	offer := got["/_gatehouse/callback"]
	if offer == "" || len(got) != 1 {
		t.Fatalf("registration offers during login %v, want one, on the callback", got)
	}
	c := newDBSCClient(t, b)
	if r := c.register(offer); r.StatusCode != http.StatusOK || c.id == "" {
		t.Fatalf("register: %d %s", r.StatusCode, r.Body)
	}
	e.Advance(11 * time.Second) // past the settling time after binding
	return c
}

// steal copies the session and bound cookies of c into a fresh browser.
func steal(e *testenv.Env, c *dbscClient, withBound bool) *testenv.Browser {
	thief := e.NewBrowser()
	a := e.Gateway.Auth()
	thief.SetCookie(a.SessionCookieName(), c.b.Cookie(a.SessionCookieName()))
	if withBound {
		thief.SetCookie(a.BoundCookieName(), c.b.Cookie(a.BoundCookieName()))
	}
	return thief
}

func status(b *testenv.Browser, path string) int {
	return b.Get(path, "Accept", "text/html", "Sec-Fetch-Mode", "navigate").StatusCode
}

func TestDeviceBinding_RegisterRefreshTheft(t *testing.T) {
	e, c := bindEnv(t, "  device_binding_cookie_ttl: 5m\n")
	a := e.Gateway.Auth()
	if a.DeviceBinding() != "prefer" {
		t.Fatalf("default device_binding %q, want prefer", a.DeviceBinding())
	}
	r := c.b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("bound browser: %d", r.StatusCode)
	}
	if v := r.Header.Get("Secure-Session-Registration"); v != "" {
		t.Errorf("a bound session is offered binding again: %q", v)
	}
	if strings.Contains(e.LastRequest().Header.Get("Cookie"), a.BoundCookieName()) {
		t.Error("the upstream received the bound cookie")
	}
	// The session cookie alone no longer works, for gatehouse's own
	// pages either: the sessions page (which can sign the owner out
	// elsewhere) and whoami refuse it.
	alone := steal(e, c, false)
	for _, path := range []string{"/", "/_gatehouse/sessions", "/_gatehouse/whoami"} {
		if got := status(alone, path); got != http.StatusForbidden {
			t.Errorf("%s with the session cookie alone: %d, want 403", path, got)
		}
	}
	// Both cookies work until the bound cookie's server-side expiry.
	thief := steal(e, c, true)
	if got := status(thief, "/"); got != http.StatusOK {
		t.Fatalf("copied cookies before expiry: %d, want 200", got)
	}
	e.Advance(4 * time.Minute)
	if r := c.refresh(); r.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.StatusCode, r.Body)
	}
	e.Advance(2 * time.Minute) // past the first cookie's expiry, within the second's
	r = thief.Get("/", "Accept", "application/json")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.Body, "device_binding_stale") {
		t.Errorf("stale copied cookies: %d %s, want 403 device_binding_stale", r.StatusCode, r.Body)
	}
	if got := r.Header.Get("Secure-Session-Challenge"); param(got, "id") != c.id {
		t.Errorf("refusal's challenge %q, want one for %s", got, c.id)
	}
	if got := status(c.b, "/"); got != http.StatusOK {
		t.Errorf("real browser after refresh: %d, want 200", got)
	}
	for _, m := range []struct{ event, reason string }{{"bound", ""}, {"refresh", "success"}, {"violation", "stale"}, {"violation", "missing"}} {
		if v, _ := metricValue(t, e.Gateway, "gatehouse_device_binding_events_total", "event", m.event, "reason", m.reason); v < 1 {
			t.Errorf("gatehouse_device_binding_events_total{event=%q,reason=%q} = %v, want at least 1", m.event, m.reason, v)
		}
	}
	logs := e.Logs.String()
	for _, want := range []string{`"event":"device_bound"`, `"event":"device_binding_violation"`, `"reason":"stale"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	// The sessions page says the session is bound.
	if r := c.b.Get("/_gatehouse/sessions", "Accept", "text/html"); !strings.Contains(r.Body, "device-bound") {
		t.Errorf("sessions page does not show the binding:\n%s", r.Body)
	}
}

func TestDeviceBinding_ChallengesAreSingleUseAndBound(t *testing.T) {
	e := testenv.New(t, testenv.Options{TLS: true})
	b := e.NewBrowser()
	offer := loginOffers(t, b, "alice", "/")["/_gatehouse/callback"]
	c := newDBSCClient(t, b)
	signed := proof(t, c.key, param(offer, "challenge"), true)
	reg := func(p string) int {
		return c.post("/_gatehouse/dbsc/register", "Secure-Session-Response", p).StatusCode
	}
	// Another user's challenge does not bind alice's session.
	bobs := loginOffers(t, e.NewBrowser(), "bob", "/")["/_gatehouse/callback"]
	if got := reg(proof(t, c.key, param(bobs, "challenge"), true)); got != http.StatusBadRequest {
		t.Errorf("another session's challenge: %d, want 400", got)
	}
	if got := reg(proof(t, c.key, "made-up", true)); got != http.StatusBadRequest {
		t.Errorf("made-up challenge: %d, want 400", got)
	}
	if got := reg(signed); got != http.StatusOK {
		t.Fatalf("register: %d", got)
	}
	if got := reg(signed); got != http.StatusBadRequest {
		t.Errorf("replayed registration: %d, want 400", got)
	}
	// Another key cannot take the bound session over.
	thiefKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if got := reg(proof(t, thiefKey, "x", true)); got != http.StatusForbidden {
		t.Errorf("registration with another key for a bound session: %d, want 403", got)
	}
	c.id = strings.Repeat("0", 32)
	// A refresh for an id gatehouse does not have ends that browser session.
	r := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id)
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `"continue":false`) {
		t.Errorf("refresh of an unknown id: %d %s, want 200 continue false", r.StatusCode, r.Body)
	}
}

func TestDeviceBinding_RefreshProofs(t *testing.T) {
	_, c := bindEnv(t, "")
	ask := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id)
	ch := between(ask.Header.Get("Secure-Session-Challenge"), `"`, `"`)
	if ask.StatusCode != http.StatusForbidden || ch == "" {
		t.Fatalf("refresh without proof: %d %q", ask.StatusCode, ask.Header.Get("Secure-Session-Challenge"))
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name  string
		proof string
		want  int
	}{
		{"wrong key", proof(t, other, ch, false), http.StatusForbidden},
		{"wrong key with its jwk", proof(t, other, ch, true), http.StatusForbidden},
		{"wrong challenge", proof(t, c.key, "nope", false), http.StatusBadRequest},
		{"right", proof(t, c.key, ch, false), http.StatusOK},
		{"replayed", proof(t, c.key, ch, false), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id, "Secure-Session-Response", tc.proof)
			if r.StatusCode != tc.want {
				t.Errorf("status %d, want %d; %s", r.StatusCode, tc.want, r.Body)
			}
		})
	}
}

func TestDeviceBinding_SignOutEndsIt(t *testing.T) {
	e, c := bindEnv(t, "")
	thief := steal(e, c, true)
	page := c.b.Get("/_gatehouse/logout", "Accept", "text/html")
	csrf := between(page.Body, `name="csrf" value="`, `"`)
	if out := postForm(t, c.b, e.URL+"/_gatehouse/logout", "csrf="+csrf, e.URL); out.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d %s", out.StatusCode, out.Body)
	}
	if v := c.b.Cookie(e.Gateway.Auth().BoundCookieName()); v != "" {
		t.Error("sign-out left the bound cookie")
	}
	r := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id)
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `"continue":false`) || !strings.Contains(r.Body, c.id) {
		t.Errorf("refresh after sign-out: %d %s, want the browser session ended", r.StatusCode, r.Body)
	}
	if got := status(thief, "/"); got != http.StatusFound {
		t.Errorf("copied cookies after sign-out: %d, want 302 to the login", got)
	}
}

func TestDeviceBinding_ForwardAuth(t *testing.T) {
	e := testenv.New(t, testenv.Options{TLS: true, NoUpstream: true, YAML: "forward_auth:\n  mode: envoy\n"})
	c := newDBSCClient(t, e.NewBrowser())
	// A page load's forward-auth answer repeats the offer once the
	// callback's has had its time.
	other := e.NewBrowser()
	loginOffers(t, other, "bob", "/_gatehouse/start?rd=/_gatehouse/whoami")
	e.Advance(11 * time.Second)
	r := other.Get("/_gatehouse/auth/app", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusOK || r.Header.Get("Secure-Session-Registration") == "" {
		t.Errorf("forward-auth answer to a page load of an unbound session: %d, offer %q", r.StatusCode, r.Header.Get("Secure-Session-Registration"))
	}
	offer := loginOffers(t, c.b, "alice", "/_gatehouse/start?rd=/_gatehouse/whoami")["/_gatehouse/callback"]
	if r := c.register(offer); r.StatusCode != http.StatusOK {
		t.Fatalf("register: %d %s", r.StatusCode, r.Body)
	}
	e.Advance(11 * time.Second)
	if got := c.b.Get("/_gatehouse/auth/app").StatusCode; got != http.StatusOK {
		t.Errorf("forward-auth, bound browser: %d", got)
	}
	thief := steal(e, c, false)
	if got := thief.Get("/_gatehouse/auth/app").StatusCode; got != http.StatusForbidden {
		t.Errorf("forward-auth, session cookie alone: %d, want 403", got)
	}
	thief = steal(e, c, true)
	e.Advance(6 * time.Minute)
	if got := thief.Get("/_gatehouse/auth/app").StatusCode; got != http.StatusForbidden {
		t.Errorf("forward-auth, stale bound cookie: %d, want 403", got)
	}
}

func TestDeviceBinding_EndSessionOnViolation(t *testing.T) {
	e, c := bindEnv(t, "  device_binding_violation: end_session\n")
	thief := steal(e, c, true)
	// A missing bound cookie is refused but does not end the session (the
	// real browser may be between cookies).
	if got := status(steal(e, c, false), "/"); got != http.StatusForbidden {
		t.Fatalf("session cookie alone: %d, want 403", got)
	}
	if e.Gateway.Store.Len() != 1 {
		t.Fatal("a missing bound cookie ended the session")
	}
	e.Advance(6 * time.Minute)
	if got := status(thief, "/"); got != http.StatusForbidden {
		t.Fatalf("stale bound cookie: %d, want 403", got)
	}
	if n := e.Gateway.Store.Len(); n != 0 {
		t.Errorf("%d sessions left after a violation with end_session", n)
	}
	if got := status(c.b, "/"); got != http.StatusFound {
		t.Errorf("real browser after the session ended: %d, want 302 to the login", got)
	}
}

func TestDeviceBinding_Require(t *testing.T) {
	e := testenv.New(t, testenv.Options{TLS: true, YAML: "session:\n  device_binding: require\n  device_binding_grace: 30s\n"})
	b := e.NewBrowser()
	r := b.Login(testenv.User("alice", "alice@example.com"), "/")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("within the grace: %d", r.StatusCode)
	}
	if v := r.Header.Get("Secure-Session-Registration"); v != "" {
		t.Errorf("the page right after login repeats the callback's offer %q", v)
	}
	e.Advance(11 * time.Second)
	r = b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusOK || r.Header.Get("Secure-Session-Registration") == "" {
		t.Errorf("page load of an unbound session within the grace: %d, offer %q", r.StatusCode, r.Header.Get("Secure-Session-Registration"))
	}
	e.Advance(20 * time.Second)
	r = b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(r.Body, "bound to the browser") {
		t.Fatalf("unbound after the grace: %d %s", r.StatusCode, r.Body)
	}
	offer := r.Header.Get("Secure-Session-Registration")
	c := newDBSCClient(t, b)
	if r := c.register(offer); r.StatusCode != http.StatusOK {
		t.Fatalf("late registration from the refusal page: %d %s", r.StatusCode, r.Body)
	}
	if got := status(b, "/"); got != http.StatusOK {
		t.Errorf("bound after the grace: %d", got)
	}
}

func TestDeviceBinding_OffAndHTTP(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testenv.Options
	}{
		{"off", testenv.Options{TLS: true, YAML: "session:\n  device_binding: off\n"}},
		{"http external url", testenv.Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testenv.New(t, tc.opts)
			r := e.NewBrowser().Login(testenv.User("alice", "alice@example.com"), "/")
			if v := r.Header.Get("Secure-Session-Registration"); v != "" || e.Gateway.Auth().DeviceBinding() != "off" {
				t.Errorf("offer %q, mode %q", v, e.Gateway.Auth().DeviceBinding())
			}
		})
	}
}

// TestDeviceBinding_RedisReplicas: a session bound on replica A is bound on
// B too (the key travels in Redis): copied cookies are refused on B once
// stale, the session cookie alone at once, and a challenge used on A
// cannot be used again on B.
func TestDeviceBinding_RedisReplicas(t *testing.T) {
	redistest.Require(t, redistest.Addr)
	prefix := redistest.KeyPrefix(t, redistest.Addr)
	e := testenv.New(t, testenv.Options{TLS: true, YAML: fmt.Sprintf("session:\n  store: redis\n  redis:\n    url: redis://%s/0\n    key_prefix: %q\n", redistest.Addr, prefix)})
	e.RunGateway()
	rep := e.Replica()
	c := bindBrowser(t, e)
	onB := rep.Browser(c.b)
	if got := status(onB, "/"); got != http.StatusOK {
		t.Fatalf("bound browser on B: %d", got)
	}
	if got := status(rep.Browser(steal(e, c, false)), "/"); got != http.StatusForbidden {
		t.Errorf("session cookie alone on B: %d, want 403", got)
	}
	thief := rep.Browser(steal(e, c, true))
	if got := status(thief, "/"); got != http.StatusOK {
		t.Fatalf("copied cookies on B before expiry: %d", got)
	}
	// A refresh challenge from A, signed and used on A, is refused on B.
	ask := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id)
	signed := proof(t, c.key, between(ask.Header.Get("Secure-Session-Challenge"), `"`, `"`), false)
	if r := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id, "Secure-Session-Response", signed); r.StatusCode != http.StatusOK {
		t.Fatalf("refresh on A: %d %s", r.StatusCode, r.Body)
	}
	cb := &dbscClient{t: t, b: onB, key: c.key, id: c.id}
	if r := cb.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id, "Secure-Session-Response", signed); r.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed refresh proof on B: %d %s, want 400", r.StatusCode, r.Body)
	}
	e.Advance(6 * time.Minute)
	if got := status(thief, "/"); got != http.StatusForbidden {
		t.Errorf("stale copied cookies on B: %d, want 403", got)
	}
	if r := cb.refresh(); r.StatusCode != http.StatusOK {
		t.Fatalf("refresh on B: %d %s", r.StatusCode, r.Body)
	}
	if got := status(onB, "/"); got != http.StatusOK {
		t.Errorf("real browser on B after refreshing there: %d", got)
	}
}

// TestDeviceBinding_RequireSparesBearer: under require, a machine client
// with a bearer token is served as before; it never binds.
func TestDeviceBinding_RequireSparesBearer(t *testing.T) {
	e := testenv.New(t, testenv.Options{TLS: true, YAML: "session:\n  device_binding: require\n" +
		"bearer:\n  enabled: true\n  audiences: [api]\nallow:\n  groups: [robots]\n"})
	e.Advance(time.Hour) // far past any grace
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/reports", nil)
	req.Header.Set("Authorization", "Bearer "+bearerToken(t, e, e.IdP.Keypair, nil))
	if r := e.NewBrowser().Do(req); r.StatusCode != http.StatusOK {
		t.Errorf("bearer client under require: %d %s", r.StatusCode, r.Body)
	}
}

// TestDeviceBinding_WebSocketUpgrade: the upgrade request is checked like
// any other: the session cookie alone is refused before anything reaches
// the upstream.
func TestDeviceBinding_WebSocketUpgrade(t *testing.T) {
	e, c := bindEnv(t, "")
	upgrade := func(b *testenv.Browser) int {
		req, _ := http.NewRequest(http.MethodGet, e.URL+"/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Version", "13")
		return b.Do(req).StatusCode
	}
	before := len(e.Requests())
	if got := upgrade(steal(e, c, false)); got != http.StatusForbidden {
		t.Errorf("upgrade with the session cookie alone: %d, want 403", got)
	}
	if n := len(e.Requests()); n != before {
		t.Error("the refused upgrade reached the upstream")
	}
	if got := upgrade(c.b); got == http.StatusForbidden || len(e.Requests()) != before+1 {
		t.Errorf("upgrade from the bound browser: %d, upstream requests %d", got, len(e.Requests())-before)
	}
}

// TestDeviceBinding_AdminRevokeEndsIt: a session revoked by an
// administrator (or a back-channel logout: both delete it in the store)
// stops at once, and the browser's refresh is told to end its session.
func TestDeviceBinding_AdminRevokeEndsIt(t *testing.T) {
	e, c := bindEnv(t, "")
	infos, err := e.Gateway.Store.(sessions.Admin).ListBySubject(t.Context(), "alice")
	if err != nil || len(infos) != 1 || !infos[0].DeviceBound {
		t.Fatalf("sessions %+v %v, want one bound", infos, err)
	}
	if ok, err := e.Gateway.Store.(sessions.Admin).DeleteByHandle(t.Context(), infos[0].Handle); !ok || err != nil {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	if got := status(c.b, "/"); got != http.StatusFound {
		t.Errorf("bound browser after revoke: %d, want 302 to the login", got)
	}
	r := c.post("/_gatehouse/dbsc/refresh", "Sec-Secure-Session-Id", c.id)
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `"continue":false`) {
		t.Errorf("refresh after revoke: %d %s, want the browser session ended", r.StatusCode, r.Body)
	}
}

// crossSiteReturn marks the callback, and the page its redirect leads
// to, as a browser does when the identity provider is on another site:
// Sec-Fetch-Site: cross-site.
type crossSiteReturn struct {
	next  http.RoundTripper
	after bool // the callback was seen: its redirect is cross-site too
}

func (c *crossSiteReturn) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/_gatehouse/callback" || c.after {
		r = r.Clone(r.Context())
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		c.after = r.URL.Path == "/_gatehouse/callback"
	}
	return c.next.RoundTrip(r)
}

// TestDeviceBinding_CrossSiteSignIn: a sign-in that returns from an
// identity provider on another site gets no offer on the callback or on
// the page it lands on (Chromium would register without the SameSite=Lax
// session cookie, and fail); the next page load from this site offers
// at once, without the pause that guards the callback's own offer, and
// the browser binds with it.
func TestDeviceBinding_CrossSiteSignIn(t *testing.T) {
	e := testenv.New(t, testenv.Options{TLS: true, YAML: "session:\n  device_binding: prefer\n"})
	b := e.NewBrowser()
	next := b.Client.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	b.Client.Transport = &crossSiteReturn{next: next}
	got := loginOffers(t, b, "alice", "/")
	b.Client.Transport = next
	if len(got) != 0 {
		t.Fatalf("offers during a cross-site sign-in %v, want none", got)
	}
	r := b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site")
	if v := r.Header.Get("Secure-Session-Registration"); r.StatusCode != http.StatusOK || v != "" {
		t.Errorf("a cross-site page load: %d, offer %q; want 200 and no offer", r.StatusCode, v)
	}
	r = b.Get("/", "Accept", "text/html", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "same-origin")
	offer := r.Header.Get("Secure-Session-Registration")
	if r.StatusCode != http.StatusOK || offer == "" {
		t.Fatalf("the first same-site page load after a cross-site sign-in: %d, offer %q; want 200 and an offer", r.StatusCode, offer)
	}
	c := newDBSCClient(t, b)
	if r := c.register(offer); r.StatusCode != http.StatusOK || c.id == "" {
		t.Fatalf("register with the page's offer: %d %s", r.StatusCode, r.Body)
	}
}
