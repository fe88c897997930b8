package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

func deriveKey(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// logoutForm is the sign-out button, with its CSRF token.
func (a *Authenticator) logoutForm(s *sessions.Session) *web.Form {
	return a.logoutFormFor(s.ID, "Sign out")
}

// logoutFormFor is the sign-out button for the session with the ID.
func (a *Authenticator) logoutFormFor(id sessions.ID, button string) *web.Form {
	return &web.Form{Action: a.origin + LogoutPath, Button: button, Fields: map[string]string{"csrf": a.csrfToken(id)}}
}

// csrfToken binds a sign-out form to the session it signs out.
func (a *Authenticator) csrfToken(id sessions.ID) string {
	m := hmac.New(sha256.New, a.csrfKey)
	m.Write(id[:])
	return fmt.Sprintf("%x", m.Sum(nil))
}
