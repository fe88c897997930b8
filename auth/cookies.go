package auth

import (
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/httpfield"
	"github.com/gatehouse/gatehouse/sessions"
)

// SessionCookieName is the session cookie's name: __Host-<name> when the
// external URL is https (Secure, Path=/, no Domain: a sibling subdomain
// cannot set or shadow it), __Secure-<name> when it is shared with
// subdomains (cookie.domain), else <name>.
func (a *Authenticator) SessionCookieName() string {
	switch {
	case a.secure && a.cfg.Cookie.Domain == "":
		return "__Host-" + a.cfg.Cookie.Name
	case a.secure:
		return "__Secure-" + a.cfg.Cookie.Name
	}
	return a.cfg.Cookie.Name
}

// LoginCookieName is the pending-login cookie's name: __Host-<name>_login
// when the external URL is https, whether or not cookie.domain is set
// (Secure, Path=/, no Domain: only this host can set it, so a sibling
// subdomain cannot plant its own login state and sign the browser in as
// someone else, login CSRF), else <name>_login, also with Path=/.
func (a *Authenticator) LoginCookieName() string {
	if a.secure {
		return "__Host-" + a.cfg.Cookie.Name + "_login"
	}
	return a.cfg.Cookie.Name + "_login"
}

// legacyLoginPath is where gatehouse used to scope the login cookie, as
// __Secure-<name>_login on https. Such a cookie, still in a browser from
// before, is never read as login state, only cleared.
const legacyLoginPath = Prefix

// legacyLoginCookieName is the name the login cookie had at
// legacyLoginPath: __Secure-<name>_login on https, <name>_login on http.
func (a *Authenticator) legacyLoginCookieName() string {
	if a.secure {
		return "__Secure-" + a.cfg.Cookie.Name + "_login"
	}
	return a.cfg.Cookie.Name + "_login"
}

// nextCookie finds the next "name=value" pair with exactly name in a
// Cookie header line, and returns its value and the rest of the line. It
// does not allocate. The line is read by httpfield.NextCookie, as the
// proxy reads it when it takes gatehouse's cookies out.
func nextCookie(line, name string) (value, rest string, found bool) {
	for p, i, ok := httpfield.NextCookie(line, 0); ok; p, i, ok = httpfield.NextCookie(line, i) {
		if p.HasValue && p.Name == name {
			return p.Value, line[i:], true
		}
	}
	return "", "", false
}

// HasSessionCookie reports whether the request carries a cookie with the
// session cookie's name, valid or not.
func (a *Authenticator) HasSessionCookie(r *http.Request) bool {
	for _, line := range r.Header["Cookie"] {
		if _, _, found := nextCookie(line, a.cookie.Name()); found {
			return true
		}
	}
	return false
}

// IsOwnCookie reports whether a cookie name is one of gatehouse's, so the
// proxy can keep it from the upstream (an upstream that saw the session
// cookie could replay it).
func (a *Authenticator) IsOwnCookie(name string) bool {
	return name == a.cookie.Name() || name == a.login.Name() || name == a.legacyLogin || name == a.device.Name() ||
		(a.dbsc != nil && name == a.dbsc.bound.Name())
}

// SessionCookie returns the cookie that carries the session ID: the ID
// sealed with the current cookie key, HttpOnly, SameSite=Lax, Path=/,
// Secure with the __Host- prefix on https, living as long as the session's
// absolute lifetime. With cookie.persistent false it has no Max-Age or
// Expires, so the browser drops it when it closes (unless the browser
// restores its previous session, which keeps such cookies too); the
// store's idle and absolute limits hold either way. Tools and load tests
// that create sessions through the store use it too.
func (a *Authenticator) SessionCookie(id sessions.ID) (*http.Cookie, error) {
	v, err := a.cookie.SealID(id)
	if err != nil {
		return nil, err
	}
	maxAge := int(a.cfg.Session.AbsoluteTimeout / time.Second)
	if p := a.cfg.Cookie.Persistent; p != nil && !*p {
		maxAge = 0 // no Max-Age, no Expires: a browser-session cookie
	}
	return a.newCookie(a.cookie.Name(), v, "/", a.cfg.Cookie.Domain, maxAge), nil
}

// clearSessionCookie removes the session cookie from the browser.
func (a *Authenticator) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, a.newCookie(a.cookie.Name(), "", "/", a.cfg.Cookie.Domain, -1))
}

// setCookie sets a host-only gatehouse cookie living maxAge.
func (a *Authenticator) setCookie(w http.ResponseWriter, name, value, path string, maxAge time.Duration) {
	http.SetCookie(w, a.newCookie(name, value, path, "", int(maxAge/time.Second)))
}

// clearCookie removes a host-only cookie from the browser (empty value,
// Max-Age=0).
func (a *Authenticator) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, a.newCookie(name, "", path, "", -1))
}

// newCookie is the one builder of gatehouse's cookies, with the
// attributes invariant 8 requires: HttpOnly, SameSite=Lax, and Secure
// when the external URL is https. maxAge is in seconds, as in
// http.Cookie: 0 sets no Max-Age (a browser-session cookie), negative
// deletes the cookie. domain is empty for a host-only cookie; only the
// session cookie may be shared with subdomains (cookie.domain).
func (a *Authenticator) newCookie(name, value, path, domain string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: path, Domain: domain, MaxAge: maxAge,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	}
}
