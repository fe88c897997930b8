package auth

import (
	"crypto/hmac"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// maxFormBytes bounds the body of gatehouse's own form posts.
const maxFormBytes = 8 << 10

// handleLogoutPage answers GET /_gatehouse/logout with a confirmation
// page. A GET never signs out: a cross-site <img src=".../logout"> must
// not end the session.
func (a *Authenticator) handleLogoutPage(w http.ResponseWriter, r *http.Request) error {
	s, err := a.Session(r)
	if err != nil {
		a.renderSignedOut(w)
		return nil
	}
	web.RenderPage(w, web.Page{
		Status: http.StatusOK, Title: "Sign out?",
		Detail: "You are signed in as " + s.DisplayName() + ". Sign out of gatehouse on this browser?",
		Form:   a.logoutForm(s),
	}, a.formOrigins()...)
	return nil
}

// handleLogout answers POST /_gatehouse/logout: it checks that the post
// comes from gatehouse's own sign-out form (Origin, when sent, is the
// external origin, and the CSRF token matches the session), deletes the
// session on the server, clears the cookies and site data, and sends the
// browser to the identity provider's end_session_endpoint when it has one
// (OIDC RP-Initiated Logout 1.0).
func (a *Authenticator) handleLogout(w http.ResponseWriter, r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && !strings.EqualFold(o, a.origin) && !a.sameHostOrigin(r, o) {
		return &web.Error{Status: http.StatusForbidden, Code: "cross_site_logout", Title: "Sign-out refused",
			Detail: "The sign-out request came from another site. Use the sign-out button on this site.",
			Link:   &web.Link{Text: "Sign out", URL: LogoutPath}}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return &web.Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Sign-out form unreadable",
			Detail: "Use the sign-out button on this site.", Link: &web.Link{Text: "Sign out", URL: LogoutPath}, Err: err}
	}
	s, err := a.Session(r)
	if err != nil {
		// Nothing to end on the server (already signed out or expired):
		// still clear the browser's cookies.
		a.clearAll(w)
		a.renderSignedOut(w)
		return nil
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(a.csrfToken(s.ID))) {
		return &web.Error{Status: http.StatusForbidden, Code: "csrf", Title: "Sign-out not confirmed",
			Detail: "The sign-out form was not gatehouse's own. Confirm below to sign out.", Form: a.logoutForm(s)}
	}
	if err := a.store.Delete(r.Context(), s.ID); err != nil {
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Sign-out failed",
			Detail: "gatehouse could not end your session. Try again in a moment.", Form: a.logoutForm(s), Err: err}
	}
	a.log.Info("logout", "event", "logout", "reason", "user", "request_id", web.RequestID(r), "sub", s.Subject, "user", s.User, "session", s.ID.LogID())
	a.obs.Logout("user")
	a.clearAll(w)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, a.afterLogout(r, s), http.StatusSeeOther)
	return nil
}

// sameHostOrigin accepts an Origin naming the host the request came to,
// for sign-out forms on other hosts of a multi-host setup.
func (a *Authenticator) sameHostOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Scheme == a.cfg.External.Scheme && strings.EqualFold(u.Host, r.Host)
}

// clearAll clears gatehouse's cookies and tells the browser to drop
// cached pages and storage of this origin (Clear-Site-Data), so the back
// button does not show the app after sign-out. "cookies" is left out: it
// would clear cookies of every sibling subdomain, signing the user out of
// other sites; gatehouse's own cookies are cleared one by one.
func (a *Authenticator) clearAll(w http.ResponseWriter) {
	a.clearSessionCookie(w)
	a.clearCookie(w, a.login.Name(), "/")
	a.clearCookie(w, a.legacyLogin, legacyLoginPath)
	w.Header().Set("Clear-Site-Data", `"cache", "storage"`)
}

// afterLogout is where the browser goes after a sign-out: the identity
// provider's end_session_endpoint when it has one and logout_at_idp is on,
// else gatehouse's signed-out page.
func (a *Authenticator) afterLogout(r *http.Request, s *sessions.Session) string {
	d, err := a.idp.get(r.Context())
	if err != nil || d.endSession == "" || a.cfg.OIDC.LogoutAtIdP == nil || !*a.cfg.OIDC.LogoutAtIdP {
		return SignedOutPath
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return SignedOutPath
	}
	q := u.Query()
	if s.IDToken != "" {
		q.Set("id_token_hint", s.IDToken)
	}
	q.Set("client_id", a.cfg.OIDC.ClientID)
	if a.cfg.OIDC.PostLogoutRedirectURL != "" {
		q.Set("post_logout_redirect_uri", a.cfg.OIDC.PostLogoutRedirectURL)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func (a *Authenticator) renderSignedOut(w http.ResponseWriter) {
	web.RenderPage(w, web.Page{
		Status: http.StatusOK, Title: "You are signed out",
		Detail: "Your gatehouse session has ended on this browser.",
		Link:   &web.Link{Text: "Sign in again", URL: StartPath + "?rd=%2F"},
	})
}

// handleSignedOut is where the identity provider returns the browser
// after its own logout.
func (a *Authenticator) handleSignedOut(w http.ResponseWriter, r *http.Request) error {
	a.renderSignedOut(w)
	return nil
}
