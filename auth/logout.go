package auth

import (
	"crypto/hmac"
	"errors"
	"fmt"
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
	switch {
	case err == nil:
	case errors.Is(err, sessions.ErrUnavailable):
		// The session may well be live: never say "signed out" here.
		id, _ := a.sessionID(r) // a cookie opened, or there would be no lookup to fail
		w.Header().Set("Retry-After", retryAfter)
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Session store unavailable",
			Detail: "gatehouse cannot check your session right now. You can try to sign out, or come back in a moment.",
			Form:   a.logoutFormFor(id, "Sign out"), Err: err}
	case IsNoSession(err):
		a.renderSignedOut(w)
		return nil
	default:
		return err
	}
	a.pages.Render(w, web.Page{
		Status: http.StatusOK, Title: "Sign out?",
		Detail: "You are signed in as " + s.DisplayName() + ". Sign out of gatehouse on this browser?",
		Form:   a.logoutForm(s),
		Link:   a.sessionsLink(),
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
	if err := a.parseOwnForm(w, r,
		&web.Error{Status: http.StatusForbidden, Code: "cross_site_logout", Title: "Sign-out refused",
			Detail: "The sign-out request came from another site. Use the sign-out button on this site.",
			Link:   &web.Link{Text: "Sign out", URL: LogoutPath}},
		&web.Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Sign-out form unreadable",
			Detail: "Use the sign-out button on this site.", Link: &web.Link{Text: "Sign out", URL: LogoutPath}}); err != nil {
		return err
	}
	s, err := a.Session(r)
	switch {
	case err == nil:
	case errors.Is(err, sessions.ErrUnavailable):
		// The store could not say whether the session lives: end it by
		// its ID, or fail honestly.
		return a.logoutUnchecked(w, r, err)
	case IsNoSession(err):
		// Nothing to end on the server (already signed out or expired):
		// still clear the browser's cookies.
		a.clearAll(w)
		a.renderSignedOut(w)
		return nil
	default:
		return err
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(a.csrfToken(s.ID))) {
		return &web.Error{Status: http.StatusForbidden, Code: "csrf", Title: "Sign-out not confirmed",
			Detail: "The sign-out form was not gatehouse's own. Confirm below to sign out.", Form: a.logoutForm(s)}
	}
	if err := a.store.Delete(r.Context(), s.ID); err != nil {
		return a.logoutFailed(w, s.ID, err)
	}
	a.log.Info("logout", "event", "logout", "reason", "user", "request_id", web.RequestID(r), "sub", s.Subject, "user", s.User, "session", s.ID.LogID())
	a.obs.Logout("user")
	a.clearAll(w)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, a.afterLogout(r, s), http.StatusSeeOther)
	return nil
}

// parseOwnForm reads the body of a post to one of gatehouse's own forms,
// bounded to maxFormBytes. A post whose Origin, when sent, is neither
// gatehouse's nor the request's host (cross-site request forgery; the
// CSRF token is checked by the caller as well) gets crossSite; a body
// that does not parse gets unreadable, with the cause.
func (a *Authenticator) parseOwnForm(w http.ResponseWriter, r *http.Request, crossSite, unreadable *web.Error) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" && !strings.EqualFold(o, a.origin) && !a.sameHostOrigin(r, o) {
		return crossSite
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		unreadable.Err = err
		return unreadable
	}
	return nil
}

// retryAfter is the Retry-After of the pages that ask to try again once
// the session store answers, in seconds.
const retryAfter = "2"

// logoutUnchecked signs out a request whose session the store could not
// read (lookupErr): it deletes the session named by the cookie the form's
// CSRF token is bound to, which proves the form is gatehouse's own. The
// browser is told it is signed out only once the store has deleted the
// session; otherwise it keeps its cookie, so that trying again can work.
// Without the session there is no ID token to hint the identity provider
// with, so the browser goes to gatehouse's signed-out page.
func (a *Authenticator) logoutUnchecked(w http.ResponseWriter, r *http.Request, lookupErr error) error {
	ids := a.sessionIDs(r)
	csrf := []byte(r.PostForm.Get("csrf"))
	var id sessions.ID
	found := false
	for _, c := range ids {
		if hmac.Equal(csrf, []byte(a.csrfToken(c))) {
			id, found = c, true
			break
		}
	}
	if !found {
		if len(ids) == 0 { // cannot happen: a lookup failed, so a cookie opened
			return lookupErr
		}
		return &web.Error{Status: http.StatusForbidden, Code: "csrf", Title: "Sign-out not confirmed",
			Detail: "The sign-out form was not gatehouse's own. Confirm below to sign out.", Form: a.logoutFormFor(ids[0], "Sign out")}
	}
	if err := a.store.Delete(r.Context(), id); err != nil {
		return a.logoutFailed(w, id, fmt.Errorf("%w (looking the session up: %w)", err, lookupErr))
	}
	a.log.Info("logout", "event", "logout", "reason", "user", "request_id", web.RequestID(r), "session", id.LogID(), "lookup_err", lookupErr)
	a.obs.Logout("user")
	a.clearAll(w)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, SignedOutPath, http.StatusSeeOther)
	return nil
}

// logoutFailed is the answer to a sign-out the store could not do: 503,
// the cookies kept, and a button to try again. The page says the store
// keeps trying only when it does (sessions.ErrRetrying).
func (a *Authenticator) logoutFailed(w http.ResponseWriter, id sessions.ID, err error) error {
	detail := "gatehouse could not reach its session store, so it cannot confirm that your session ended: you may still be signed in. Try again in a moment."
	if errors.Is(err, sessions.ErrRetrying) {
		detail = "gatehouse could not reach its session store, so it cannot confirm that your session ended: you may still be signed in. " +
			"gatehouse keeps trying in the background; to be sure, try again in a moment."
	}
	w.Header().Set("Retry-After", retryAfter)
	return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Sign-out failed",
		Detail: detail, Form: a.logoutFormFor(id, "Try signing out again"), Err: err}
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
	a.clearBoundCookie(w)
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
	a.pages.Render(w, web.Page{
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
