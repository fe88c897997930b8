package auth

import (
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
)

// Register adds the login, callback, logout and whoami endpoints to mux.
func (a *Authenticator) Register(mux *http.ServeMux) {
	mux.Handle("GET "+StartPath, web.Adapt(a.log, a.handleStart))
	mux.Handle("GET "+CallbackPath, web.Adapt(a.log, a.handleCallback))
	mux.Handle("GET "+LogoutPath, web.Adapt(a.log, a.handleLogoutPage, a.origin))
	mux.Handle("POST "+LogoutPath, web.Adapt(a.log, a.handleLogout, a.origin))
	mux.Handle("GET "+SignedOutPath, web.Adapt(a.log, a.handleSignedOut))
	mux.Handle("GET "+WhoamiPath, web.Adapt(a.log, a.handleWhoami))
	mux.HandleFunc("POST "+BackchannelLogoutPath, a.handleBackchannelLogout)
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
}

// handleWhoami answers the current identity as JSON, or 401.
func (a *Authenticator) handleWhoami(w http.ResponseWriter, r *http.Request) error {
	s, err := a.Session(r)
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
	})
	return nil
}
