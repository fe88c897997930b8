package auth_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/sessions"
)

// loginHarness is an Authenticator for an external URL of the test's
// choosing (https included, which testenv's servers cannot be), with the
// real provider behind it. Requests go straight to its handlers, with the
// cookies a test chooses, as a browser on that origin would send them.
type loginHarness struct {
	t      *testing.T
	a      *auth.Authenticator
	mux    *http.ServeMux
	idp    *mockoidc.MockOIDC
	store  sessions.Store
	ext    string
	keys   [][]byte
	grants atomic.Int32 // authorization_code calls at the token endpoint
}

type harnessOptions struct {
	external, domain string
	store            sessions.Store // default: a memory store
	acceptCodeTwice  bool
}

func newLoginHarness(t *testing.T, o harnessOptions) *loginHarness {
	t.Helper()
	idp, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &loginHarness{t: t, idp: idp, ext: o.external, keys: [][]byte{[]byte(strings.Repeat("k", 32))}}
	_ = idp.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == mockoidc.TokenEndpoint {
				h.grants.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	})
	if o.acceptCodeTwice {
		_ = idp.AddMiddleware(testenv.AcceptCodeTwice)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Shutdown() })
	h.store = o.store
	if h.store == nil {
		h.store, _ = sessions.NewMemory(10, sessions.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour})
	}
	ext, _ := url.Parse(o.external)
	h.a, err = auth.New(auth.Config{
		External: ext,
		OIDC: config.OIDC{Issuer: idp.Issuer(), ClientID: idp.ClientID, ClientSecret: idp.ClientSecret,
			Scopes: []string{"openid", "email"}, Timeout: 5 * time.Second},
		Cookie:  config.Cookie{Name: "gatehouse", Domain: o.domain, Keys: h.keys},
		Session: config.Session{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour},
	}, auth.Options{Store: h.store, AnyPolicyAllows: func(*sessions.Session) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	h.mux = http.NewServeMux()
	h.a.Register(h.mux)
	return h
}

// get sends GET target (a path on the external origin, or a full URL) with
// a raw Cookie header.
func (h *loginHarness) get(target, cookie string) *httptest.ResponseRecorder {
	h.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = h.ext + target
	}
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	w := httptest.NewRecorder()
	h.mux.ServeHTTP(w, req)
	return w
}

// start begins a login and returns the login cookie it set and the
// provider's authorize URL.
func (h *loginHarness) start(cookie string) (*http.Cookie, string) {
	h.t.Helper()
	w := h.get(auth.StartPath+"?rd=/x", cookie)
	if w.Code != http.StatusFound {
		h.t.Fatalf("start: status %d %s", w.Code, w.Body)
	}
	return h.setCookie(w, h.a.LoginCookieName()), w.Header().Get("Location")
}

// authorize lets the provider sign sub in and returns the callback URL it
// sends the browser to.
func (h *loginHarness) authorize(authorizeURL, sub string) string {
	h.t.Helper()
	h.idp.QueueUser(&mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true})
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authorizeURL)
	if err != nil {
		h.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// setCookie returns the cookie named name that w sets, or nil.
func (h *loginHarness) setCookie(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// wantRefused checks a callback refused with status and code, with no
// token endpoint call and no session.
func (h *loginHarness) wantRefused(what string, w *httptest.ResponseRecorder, status int, code string, grantsBefore int32, sessionsBefore int) {
	h.t.Helper()
	if w.Code != status || !strings.Contains(w.Body.String(), `"error":"`+code+`"`) {
		h.t.Errorf("%s: status %d body %s; want %d %s", what, w.Code, w.Body, status, code)
	}
	if n := h.grants.Load(); n != grantsBefore {
		h.t.Errorf("%s: the token endpoint was called (%d calls, want %d)", what, n, grantsBefore)
	}
	if n := h.store.Len(); n != sessionsBefore {
		h.t.Errorf("%s: store holds %d sessions, want %d", what, n, sessionsBefore)
	}
	if c := h.setCookie(w, h.a.SessionCookieName()); c != nil && c.Value != "" {
		h.t.Errorf("%s: a session cookie was set", what)
	}
}

// TestLoginCookie_Attributes checks design invariant 8 for the login
// cookie: __Host- on https, with cookie.domain set too (host-only, so a
// sibling subdomain cannot plant one), Path=/, Secure, HttpOnly,
// SameSite=Lax; no prefix and not Secure on http (loopback development).
func TestLoginCookie_Attributes(t *testing.T) {
	for _, tc := range []struct {
		external, domain, name string
		secure                 bool
	}{
		{"https://app.example.com", "", "__Host-gatehouse_login", true},
		{"https://app.example.com", "example.com", "__Host-gatehouse_login", true},
		{"http://127.0.0.1:4180", "", "gatehouse_login", false},
	} {
		t.Run(tc.external+" domain="+tc.domain, func(t *testing.T) {
			h := newLoginHarness(t, harnessOptions{external: tc.external, domain: tc.domain})
			if got := h.a.LoginCookieName(); got != tc.name {
				t.Fatalf("LoginCookieName() = %q, want %q", got, tc.name)
			}
			w := h.get(auth.StartPath+"?rd=/x", "")
			c := h.setCookie(w, tc.name)
			if c == nil {
				t.Fatalf("start set no cookie %s; Set-Cookie %q", tc.name, w.Header().Values("Set-Cookie"))
			}
			if c.Path != "/" || c.Domain != "" || !c.HttpOnly || c.Secure != tc.secure ||
				c.SameSite != http.SameSiteLaxMode || c.MaxAge != int(auth.LoginTTL/time.Second) {
				t.Errorf("login cookie %+v: want Path=/, no Domain, HttpOnly, Secure=%v, SameSite=Lax, Max-Age=%d",
					c, tc.secure, int(auth.LoginTTL/time.Second))
			}
			for _, line := range w.Header().Values("Set-Cookie") {
				if strings.HasPrefix(line, tc.name+"=") && strings.Contains(strings.ToLower(line), "domain=") {
					t.Errorf("login cookie with a Domain: %q", line)
				}
			}
			if !h.a.IsOwnCookie(tc.name) {
				t.Errorf("IsOwnCookie(%q) = false: the upstream would receive it", tc.name)
			}
		})
	}
}

// TestLoginCookie_PlantedLoginState is the login CSRF: an attacker starts
// a login of its own, signs in at the provider, and makes the victim's
// browser open its callback URL with its login cookie planted. On https
// a sibling subdomain can plant a __Secure- cookie (even for
// Path=/_gatehouse/, where gatehouse used to keep it), never a __Host-
// one: so only the exact __Host- name is login state, and the victim is
// never signed in as the attacker.
func TestLoginCookie_PlantedLoginState(t *testing.T) {
	h := newLoginHarness(t, harnessOptions{external: "https://app.example.com", domain: "example.com"})
	loginCookie, az := h.start("")
	cb := h.authorize(az, "mallory")
	// The attacker's login state, sealed under the name it would have had
	// before (__Secure-gatehouse_login), as a sibling could plant it.
	legacy, err := sessions.NewCodec("__Secure-gatehouse_login", "login", h.keys, auth.LoginTTL)
	if err != nil {
		t.Fatal(err)
	}
	current, _ := sessions.NewCodec(h.a.LoginCookieName(), "login", h.keys, auth.LoginTTL)
	plain, err := current.Open(loginCookie.Value)
	if err != nil {
		t.Fatalf("open the attacker's own login cookie: %v", err)
	}
	legacyValue, err := legacy.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cookie string }{
		{"__Secure- name, old value", "__Secure-gatehouse_login=" + legacyValue},
		{"__Secure- name, current value", "__Secure-gatehouse_login=" + loginCookie.Value},
		{"case variant of __Host-", "__HOST-gatehouse_login=" + loginCookie.Value},
		{"no prefix", "gatehouse_login=" + loginCookie.Value},
		{"session cookie's name", "__Secure-gatehouse=" + loginCookie.Value},
	} {
		w := h.get(cb, tc.cookie)
		h.wantRefused(tc.name, w, http.StatusBadRequest, "no_login_cookie", 0, 0)
	}
	// Control: in the attacker's own browser, which holds the __Host-
	// cookie, the same callback signs in (else the refusals prove nothing).
	if w := h.get(cb, loginCookie.Name+"="+loginCookie.Value); w.Code != http.StatusFound || h.store.Len() != 1 {
		t.Errorf("the attacker's own callback: status %d, store %d; want 302 and a session", w.Code, h.store.Len())
	}
}

// TestLoginCookie_StaleCookiesDoNotBreakLogin: a browser may still hold
// the login cookie gatehouse set at Path=/_gatehouse/ before. It is
// ignored, and cleared; it never hides the current one. On http it has
// the same name as the current one and comes first in the Cookie header
// (browsers put longer paths first).
func TestLoginCookie_StaleCookiesDoNotBreakLogin(t *testing.T) {
	for _, tc := range []struct {
		external, stale string
		secure          bool
	}{
		{"https://app.example.com", "__Secure-gatehouse_login", true},
		{"http://127.0.0.1:4180", "gatehouse_login", false},
	} {
		t.Run(tc.external, func(t *testing.T) {
			h := newLoginHarness(t, harnessOptions{external: tc.external})
			// The stale cookie: a login started before the upgrade
			// (sealed under the old name), never finished.
			old, _ := h.start("")
			codec, _ := sessions.NewCodec(h.a.LoginCookieName(), "login", h.keys, auth.LoginTTL)
			plain, err := codec.Open(old.Value)
			if err != nil {
				t.Fatal(err)
			}
			oldCodec, _ := sessions.NewCodec(tc.stale, "login", h.keys, auth.LoginTTL)
			staleValue, _ := oldCodec.Seal(plain)
			stale := tc.stale + "=" + staleValue

			w := h.get(auth.StartPath+"?rd=/x", stale)
			cur := h.setCookie(w, h.a.LoginCookieName())
			if w.Code != http.StatusFound || cur == nil {
				t.Fatalf("start with a stale cookie: status %d, cookies %q", w.Code, w.Header().Values("Set-Cookie"))
			}
			cleared := false
			for _, line := range w.Header().Values("Set-Cookie") {
				if strings.HasPrefix(line, tc.stale+"=;") && strings.Contains(line, "Path=/_gatehouse/") && strings.Contains(line, "Max-Age=0") {
					cleared = true
				}
			}
			if tc.secure && !cleared {
				t.Errorf("the stale %s was not cleared: %q", tc.stale, w.Header().Values("Set-Cookie"))
			}
			cb := h.authorize(w.Header().Get("Location"), "alice")
			w = h.get(cb, stale+"; "+cur.Name+"="+cur.Value)
			if w.Code != http.StatusFound || w.Header().Get("Location") != "/x" {
				t.Fatalf("callback with the stale cookie first: status %d → %q, body %s; want 302 → /x", w.Code, w.Header().Get("Location"), w.Body)
			}
			if h.store.Len() != 1 {
				t.Errorf("store holds %d sessions, want 1", h.store.Len())
			}
		})
	}
}

// TestCallback_StateConsumedBeforeTokenCall: with a provider that accepts
// a code twice, a callback replayed with a saved copy of the login cookie
// is refused by gatehouse itself, before any token call, and makes no
// second session.
func TestCallback_StateConsumedBeforeTokenCall(t *testing.T) {
	h := newLoginHarness(t, harnessOptions{external: "https://app.example.com", acceptCodeTwice: true})
	saved, az := h.start("")
	cb := h.authorize(az, "alice")
	cookie := saved.Name + "=" + saved.Value
	if w := h.get(cb, cookie); w.Code != http.StatusFound || h.store.Len() != 1 || h.grants.Load() != 1 {
		t.Fatalf("first callback: status %d, store %d, token calls %d; want 302, 1, 1", w.Code, h.store.Len(), h.grants.Load())
	}
	for i := range 3 {
		w := h.get(cb, cookie)
		h.wantRefused("replay", w, http.StatusBadRequest, "state_used", 1, 1)
		if i == 0 && !strings.Contains(w.Body.String(), "already used") {
			t.Errorf("replay page does not say the sign-in was used: %s", w.Body)
		}
	}
}

// TestCallback_UsedStatesFull: the memory store's used-state set, full of
// live entries, refuses the login with a 503 before the token call,
// rather than forget a used state.
func TestCallback_UsedStatesFull(t *testing.T) {
	store, _ := sessions.NewMemory(10, sessions.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour, MaxUsedStates: 1})
	h := newLoginHarness(t, harnessOptions{external: "https://app.example.com", store: store})
	c1, az1 := h.start("")
	c2, az2 := h.start("")
	cb1, cb2 := h.authorize(az1, "alice"), h.authorize(az2, "bob")
	if w := h.get(cb1, c1.Name+"="+c1.Value); w.Code != http.StatusFound {
		t.Fatalf("first login: status %d %s", w.Code, w.Body)
	}
	w := h.get(cb2, c2.Name+"="+c2.Value)
	h.wantRefused("second login with the set full", w, http.StatusServiceUnavailable, "too_many_logins", 1, 1)
}

// failingStates is a memory store whose used-state record cannot be
// written, like a Redis that does not answer.
type failingStates struct{ *sessions.Memory }

func (failingStates) ConsumeState(context.Context, string, time.Duration) (bool, error) {
	return false, sessions.ErrUnavailable
}

// TestCallback_StoreDownAtConsume: a store that cannot record the state
// stops the login with a 503 (fail closed), before the token call.
func TestCallback_StoreDownAtConsume(t *testing.T) {
	mem, _ := sessions.NewMemory(10, sessions.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour})
	h := newLoginHarness(t, harnessOptions{external: "https://app.example.com", store: failingStates{mem}})
	c, az := h.start("")
	w := h.get(h.authorize(az, "alice"), c.Name+"="+c.Value)
	h.wantRefused("store down", w, http.StatusServiceUnavailable, "store_unavailable", 0, 0)
}
