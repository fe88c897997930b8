package auth

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Register adds the login, callback, logout and whoami endpoints to mux.
func (a *Authenticator) Register(mux *http.ServeMux) {
	mux.Handle("GET "+StartPath, a.pages.Adapt(a.log, func(w http.ResponseWriter, r *http.Request) error {
		err := a.handleStart(w, r)
		a.logMisconfigured(r, err)
		return err
	}))
	mux.Handle("GET "+CallbackPath, a.pages.Adapt(a.log, func(w http.ResponseWriter, r *http.Request) error {
		err := a.handleCallback(w, r)
		var e *web.Error
		switch {
		case err == nil:
			a.obs.Login(true, "")
		case errors.As(err, &e):
			a.obs.Login(false, e.Code)
			if a.logMisconfigured(r, err) {
				break
			}
			a.log.Info("login failed", "event", "login_failure", "reason", e.Code, "request_id", web.RequestID(r))
		default:
			a.obs.Login(false, "internal_error")
		}
		return err
	}))
	mux.Handle("GET "+LogoutPath, a.withForms(a.handleLogoutPage))
	mux.Handle("POST "+LogoutPath, a.withForms(a.handleLogout))
	mux.Handle("GET "+SignedOutPath, a.pages.Adapt(a.log, a.handleSignedOut))
	mux.Handle("GET "+WhoamiPath, a.pages.Adapt(a.log, a.handleWhoami))
	if a.selfService() {
		mux.Handle("GET "+SessionsPath, a.withForms(a.handleMySessions))
		mux.Handle("POST "+SessionsPath, a.withForms(a.handleEndMySessions))
	}
	mux.HandleFunc("POST "+BackchannelLogoutPath, a.handleBackchannelLogout)
	a.registerBinding(mux)
}

// withForms adapts a handler whose error pages may carry the sign-out form.
func (a *Authenticator) withForms(h web.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.pages.Fail(w, r, a.log, err, a.formOrigins()...)
		}
	})
}

// formOrigins are where gatehouse's sign-out form may lead: its own origin,
// and the identity provider's end_session_endpoint it redirects to. A
// browser applies the page's form-action policy to that redirect too.
func (a *Authenticator) formOrigins() []string {
	origins := []string{a.origin}
	if d := a.idp.d.Load(); d != nil && d.endSession != "" {
		if u, err := url.Parse(d.endSession); err == nil && u.Host != "" {
			origins = append(origins, u.Scheme+"://"+u.Host)
		}
	}
	return origins
}

// Identity is what /_gatehouse/whoami tells about the current user. It
// never holds a token.
type Identity struct {
	Subject           string    `json:"sub"`
	User              string    `json:"user"`
	Email             string    `json:"email,omitempty"`
	EmailVerified     bool      `json:"email_verified"`
	Name              string    `json:"name,omitempty"`
	PreferredUsername string    `json:"preferred_username,omitempty"`
	Groups            []string  `json:"groups"`
	Created           time.Time `json:"session_created"`
	IdleExpires       time.Time `json:"idle_expires"`
	AbsoluteExpires   time.Time `json:"absolute_expires"`
	// SessionsURL is the page where the user sees and ends their
	// sessions; empty when session.self_service is off.
	SessionsURL string `json:"sessions_url,omitempty"`
}

// handleWhoami answers the current identity as JSON, or 401.
func (a *Authenticator) handleWhoami(w http.ResponseWriter, r *http.Request) error {
	s, err := a.Session(r)
	if errors.Is(err, sessions.ErrUnavailable) {
		w.Header().Set("Retry-After", retryAfter)
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Session store unavailable",
			Detail: "gatehouse cannot check your session right now. Try again in a moment.", Err: err}
	}
	if err != nil && !IsNoSession(err) {
		return err
	}
	if err != nil {
		web.WriteJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthenticated", "message": "Not signed in.", "login_url": a.LoginURL("/"),
		})
		return nil
	}
	groups := s.Groups
	if groups == nil {
		groups = []string{}
	}
	web.WriteJSON(w, http.StatusOK, Identity{
		Subject: s.Subject, User: s.User, Email: s.Email, EmailVerified: s.EmailVerified,
		Name: s.Name, PreferredUsername: s.PreferredUsername, Groups: groups,
		Created:         s.Created.UTC(),
		IdleExpires:     s.LastSeen().Add(a.cfg.Session.IdleTimeout).UTC(),
		AbsoluteExpires: s.Created.Add(a.cfg.Session.AbsoluteTimeout).UTC(),
		SessionsURL:     a.SessionsURL(),
	})
	return nil
}
