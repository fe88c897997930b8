package auth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/web"
)

// pendingLogin is one login in flight: what the callback needs to check
// the identity provider's answer and to return the browser. It lives in
// the sealed login cookie, never in the session store, so unauthenticated
// requests create no server-side state (design invariant 1).
type pendingLogin struct {
	State    string `json:"s"`           // random, compared in constant time (RFC 9700 §4.7.1)
	Nonce    string `json:"n"`           // random, must come back in the ID token (OIDC Core §15.5.2)
	Verifier string `json:"v"`           // PKCE code verifier (RFC 7636, S256)
	Return   string `json:"r"`           // validated post-login target
	Created  int64  `json:"t"`           // unix seconds
	Form     string `json:"f,omitempty"` // held form's ID and key (heldRef), if any
	// MaxAge, when set, is a step-up login's max_age in seconds: the ID
	// token must show a sign-in that recent.
	MaxAge int64 `json:"m,omitempty"`
	// ACR, when set, is a step-up login's acr_values, space-separated:
	// the ID token's acr must be one of them.
	ACR string `json:"a,omitempty"`
}

// maxPendingLogins bounds the logins one browser may have in flight (one
// per tab that hit the login at once). Older ones are dropped; a cookie
// per login would pile up until the Cookie header is too large.
const maxPendingLogins = 3

// maxLoginCookies bounds the login cookies of one request that gatehouse
// tries to open.
const maxLoginCookies = 4

// readPending returns the pending logins in the request's login cookies;
// missing or unopenable ones yield none. Only cookies with the login
// cookie's exact name are read: on https that is __Host-<name>_login,
// which only this host can have set, never a __Secure- or differently
// cased one a sibling subdomain could plant (login CSRF). A request may
// carry two with the same name on http, where the one from before the
// move to Path=/ has the same name (Path=/_gatehouse/); their logins are
// taken together, so an old cookie does not hide the new one.
func (a *Authenticator) readPending(r *http.Request) []pendingLogin {
	var all []pendingLogin
	tried := 0
	name := a.login.Name()
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && tried < maxLoginCookies; {
			var v string
			var found bool
			v, rest, found = nextCookie(rest, name)
			if !found {
				break
			}
			tried++
			b, err := a.login.Open(v)
			if err != nil {
				continue
			}
			var list []pendingLogin
			if json.Unmarshal(b, &list) == nil {
				all = append(all, list...)
			}
		}
	}
	return all
}

// writePending stores the pending logins in the login cookie (Path=/),
// dropping the oldest until the cookie fits the browser's 4 KiB limit, or
// clears the cookie when none are left. A login cookie at the old path
// (legacyLoginPath) that the request carried is cleared as well.
func (a *Authenticator) writePending(w http.ResponseWriter, r *http.Request, list []pendingLogin) error {
	a.clearLegacyLogin(w, r)
	for len(list) > 0 {
		b, err := json.Marshal(list)
		if err != nil {
			return err
		}
		v, err := a.login.Seal(b)
		if err == nil && len(a.login.Name())+len(v) < 4000 {
			a.setCookie(w, a.login.Name(), v, "/", LoginTTL)
			return nil
		}
		list = list[:len(list)-1]
	}
	a.clearCookie(w, a.login.Name(), "/")
	return nil
}

// clearLegacyLogin clears the login cookie a browser may still hold from
// before it moved to Path=/: on https the __Secure- one, on http a
// second cookie with the login cookie's name.
func (a *Authenticator) clearLegacyLogin(w http.ResponseWriter, r *http.Request) {
	n := 0
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && n < 2; {
			var found bool
			_, rest, found = nextCookie(rest, a.legacyLogin)
			if !found {
				break
			}
			n++
		}
	}
	if (a.secure && n > 0) || n > 1 {
		a.clearCookie(w, a.legacyLogin, legacyLoginPath)
	}
}

func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// handleStart begins a login: it signs out any current session (a login
// never reuses a session from before it: no session fixation,
// GHSA-f24x-5g9q-753f), records state, nonce, PKCE verifier and the
// validated return target in the login cookie, and redirects to the
// identity provider's authorization endpoint.
func (a *Authenticator) handleStart(w http.ResponseWriter, r *http.Request) error {
	ret := a.redirects.Safe(r.URL.Query().Get("rd"))
	maxAge, err := stepUpParam(r.URL.Query())
	if err != nil {
		return err
	}
	acr, err := acrParam(r.URL.Query())
	if err != nil {
		return err
	}
	d, err := a.idp.get(r.Context())
	if err != nil {
		return idpUnavailable(err, ret)
	}
	a.endCurrentSession(w, r)
	p := pendingLogin{
		State:    randomString(),
		Nonce:    randomString(),
		Verifier: oauth2.GenerateVerifier(),
		Return:   ret,
		Created:  a.now().Unix(),
		MaxAge:   maxAge,
		ACR:      acr,
	}
	if err := a.writePending(w, r, a.withPending(r, p)); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, a.authURL(d, p), http.StatusFound)
	return nil
}

// withPending puts p before the request's pending logins, keeping at most
// maxPendingLogins.
func (a *Authenticator) withPending(r *http.Request, p pendingLogin) []pendingLogin {
	list := append([]pendingLogin{p}, a.readPending(r)...)
	if len(list) > maxPendingLogins {
		list = list[:maxPendingLogins]
	}
	return list
}

// authURL is the provider's authorization URL for the login p.
func (a *Authenticator) authURL(d *discovered, p pendingLogin) string {
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", p.Nonce), oauth2.S256ChallengeOption(p.Verifier)}
	if p.MaxAge > 0 {
		// A step-up: max_age asks for a sign-in that recent (OIDC Core
		// §3.1.2.1); prompt=login for providers that ignore max_age.
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(p.MaxAge, 10)),
			oauth2.SetAuthURLParam("prompt", "login"))
	}
	if p.ACR != "" {
		// Voluntary claim request (OIDC Core §3.1.2.1); the callback
		// checks the acr that comes back.
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", p.ACR))
	}
	return d.oauth2.AuthCodeURL(p.State, opts...)
}

// endCurrentSession deletes the request's session, if any, and clears its
// cookie.
func (a *Authenticator) endCurrentSession(w http.ResponseWriter, r *http.Request) {
	if id, ok := a.sessionID(r); ok {
		if err := a.store.Delete(r.Context(), id); err != nil {
			a.log.Warn("delete session", "session", id.LogID(), "err", err)
		}
	}
	if a.HasSessionCookie(r) {
		a.clearSessionCookie(w)
	}
}

// takePending removes and returns the pending login with the state.
func takePending(list []pendingLogin, state string) (pendingLogin, []pendingLogin, bool) {
	for i, p := range list {
		if equalStrings(p.State, state) {
			rest := append(append([]pendingLogin{}, list[:i]...), list[i+1:]...)
			return p, rest, true
		}
	}
	return pendingLogin{}, list, false
}

// idpUnavailable is the page of a provider gatehouse cannot use: down, or
// (discoveryMismatch) configured with another issuer than it has.
func idpUnavailable(err error, ret string) error {
	if m := discoveryMismatch(err); m != nil {
		return m
	}
	return &web.Error{
		Status: http.StatusServiceUnavailable, Code: "idp_unavailable",
		Title:  "The sign-in service is unavailable",
		Detail: "gatehouse cannot reach the identity provider right now. Wait a moment and try again; if you are already signed in, your session is unaffected.",
		Link:   &web.Link{Text: "Try again", URL: StartPath + "?rd=" + urlQueryEscape(ret)},
		Err:    err,
	}
}

// loginSkew is how far in the future a login's start time may be (another
// replica's clock ahead of this one's).
const loginSkew = time.Minute

func (a *Authenticator) expired(p pendingLogin) bool {
	return a.now().Sub(time.Unix(p.Created, 0)) > LoginTTL || time.Unix(p.Created, 0).After(a.now().Add(loginSkew))
}

// usedStateTTL is how long the store remembers a used state: as long as
// any replica may still accept it (LoginTTL from a start time up to
// loginSkew ahead of the clock that consumed it).
const usedStateTTL = LoginTTL + loginSkew

var errNoLoginCookie = errors.New("no login cookie")
