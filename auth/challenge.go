package auth

import (
	"encoding/json"
	"errors"
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
	if a.HasSessionCookie(r) {
		a.clearSessionCookie(w)
	}
	ChallengeTo(w, a.LoginURL(a.returnTarget(r)), IsNavigation(r))
}

// ChallengeTo answers a request without a session with the login URL: a
// 302 to it when redirect (a browser navigation), else 401 with
// WWW-Authenticate: Gatehouse and a JSON body naming it. It is the one
// writer of gatehouse's login challenge, for proxied requests (Challenge)
// and forward-auth answers alike, and is never cached (no-store).
func ChallengeTo(w http.ResponseWriter, login string, redirect bool) {
	h := w.Header()
	if h.Get("Cache-Control") != "no-store" { // forward-auth sets it first
		h.Set("Cache-Control", "no-store")
	}
	if redirect {
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

// BearerChallenge answers a refused bearer token (RFC 6750 §3).
func BearerChallenge(w http.ResponseWriter, err error) {
	desc := "invalid token"
	var be *BearerError
	if errors.As(err, &be) {
		desc = be.Description
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token", error_description="`+strings.ReplaceAll(desc, `"`, "'")+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_token", "error_description": desc})
}
