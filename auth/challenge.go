package auth

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/internal/web"
)

// LoginURL is the URL that starts a login and returns to target (a path
// on the external origin or an allowed absolute URL).
func (a *Authenticator) LoginURL(target string) string {
	return a.origin + StartPath + "?rd=" + url.QueryEscape(target)
}

// returnTarget is where a request should come back to after login: its
// path and query on the external origin, or its absolute URL when it came
// in on another host.
func (a *Authenticator) returnTarget(r *http.Request) string {
	uri := r.URL.RequestURI()
	if r.Host == "" || strings.EqualFold(r.Host, a.cfg.External.Host) {
		return uri
	}
	return a.cfg.External.Scheme + "://" + strings.ToLower(r.Host) + uri
}

// IsNavigation reports whether a request is a browser loading a page, which
// may be redirected to the login: GET or HEAD, and Sec-Fetch-Mode:
// navigate, or, from browsers that send no fetch metadata, an Accept
// header naming text/html. XHR, fetch and API clients get 401 instead,
// because a redirect to an identity provider is useless to them.
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return web.WantsHTML(r)
}

// Challenge answers a request that has no live session: a browser
// navigation is redirected (302) to the login, which returns to the page
// asked for; any other request gets 401 with a JSON body naming the login
// URL. It creates no server-side state. A session cookie that did not
// lead to a session is cleared.
func (a *Authenticator) Challenge(w http.ResponseWriter, r *http.Request) {
	login := a.LoginURL(a.returnTarget(r))
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if a.HasSessionCookie(r) {
		a.clearSessionCookie(w)
	}
	if IsNavigation(r) {
		h.Set("Location", login)
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("WWW-Authenticate", `Gatehouse realm="gatehouse", login_url="`+login+`"`)
	web.WriteJSON(w, http.StatusUnauthorized, map[string]string{
		"error":     "unauthenticated",
		"message":   "Sign in first: open login_url in a browser.",
		"login_url": login,
	})
}
