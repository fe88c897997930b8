package devidp

import (
	"net/http"
	"net/url"
	"slices"
)

// handleLogout implements RP-initiated logout (OpenID Connect RP-Initiated
// Logout 1.0). The provider keeps no browser session, so there is nothing
// to end; it validates the request, then redirects to a registered
// post_logout_redirect_uri or shows a signed-out page.
func (p *Provider) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	params := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := parsePostForm(w, r); err != nil {
			p.renderError(w, http.StatusBadRequest, "The sign-out request could not be read.")
			return
		}
		params = r.PostForm
	}
	for _, name := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state"} {
		if _, err := single(params, name); err != nil {
			p.renderError(w, http.StatusBadRequest, "Invalid sign-out request: "+err.Error()+".")
			return
		}
	}
	hint := params.Get("id_token_hint")
	clientID := params.Get("client_id")
	target := params.Get("post_logout_redirect_uri")
	state := params.Get("state")

	if clientID != "" && clientID != p.clientID {
		p.renderError(w, http.StatusBadRequest, "Invalid sign-out request: unknown client_id.")
		return
	}
	sub := ""
	if hint != "" {
		// The hint must be an ID token we issued; expiry does not matter.
		claims, err := p.verifyJWT(hint)
		if err != nil || claims["iss"] != p.issuer || !audienceContains(claims["aud"], p.clientID) {
			p.log.Info("devidp: rejected id_token_hint", "error", err)
			p.renderError(w, http.StatusBadRequest, "Invalid sign-out request: the id_token_hint was not issued by this provider.")
			return
		}
		sub, _ = claims["sub"].(string)
	}
	p.log.Info("devidp: user signed out", "sub", sub)
	if target != "" && slices.Contains(p.logoutURIs, target) {
		p.redirectTo(w, r, target, url.Values{}, state)
		return
	}
	if target != "" {
		p.log.Info("devidp: ignored unregistered post_logout_redirect_uri", "uri", target)
	}
	p.renderSignedOut(w)
}

// audienceContains reports whether an aud claim (string or array) names id.
func audienceContains(aud any, id string) bool {
	switch a := aud.(type) {
	case string:
		return a == id
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && s == id {
				return true
			}
		}
	}
	return false
}
