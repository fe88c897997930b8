package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse/gatehouse/sessions"
)

// BearerError is a bearer token gatehouse refuses. It answers 401 with
// WWW-Authenticate: Bearer error="invalid_token" (RFC 6750 §3.1), never a
// login redirect: a machine client cannot log in.
type BearerError struct {
	Description string
	Err         error
}

func (e *BearerError) Error() string { return "invalid bearer token: " + e.Description }
func (e *BearerError) Unwrap() error { return e.Err }

// ErrNoBearer means the request carries no bearer token.
var ErrNoBearer = errors.New("no bearer token")

// bearerCache remembers verified tokens until they expire, so a client
// that sends the same token many times is verified once. Bounded; a full
// cache is emptied.
type bearerCache struct {
	mu sync.RWMutex
	m  map[string]*sessions.Session
}

const maxBearerCache = 10000

// BearerToken returns the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	t := strings.TrimSpace(h[7:])
	return t, t != ""
}

// BearerSession verifies the request's bearer token, a JWT from the
// identity provider, and returns a session built from its claims. The
// session is never stored: each request proves itself. Checks: the
// signature with the provider's keys (asymmetric algorithms only), iss,
// exp, iat, and an aud in bearer.audiences.
func (a *Authenticator) BearerSession(ctx context.Context, r *http.Request) (*sessions.Session, error) {
	raw, ok := BearerToken(r)
	if !ok {
		return nil, ErrNoBearer
	}
	now := a.now()
	a.bearers.mu.RLock()
	s, hit := a.bearers.m[raw]
	a.bearers.mu.RUnlock()
	if hit && now.Before(s.AccessExpiry) {
		return s, nil
	}
	if strings.Count(raw, ".") != 2 {
		return nil, &BearerError{Description: "not a JWT; opaque tokens are not accepted"}
	}
	d, err := a.idp.get(ctx)
	if err != nil {
		return nil, err
	}
	idt, err := d.bearer.Verify(untrusted(a.idp.ctx(ctx)), raw)
	if err != nil {
		var te *oidc.TokenExpiredError
		if errors.As(err, &te) {
			return nil, &BearerError{Description: "the token has expired", Err: err}
		}
		return nil, &BearerError{Description: "the token failed verification", Err: err}
	}
	if !slices.ContainsFunc(idt.Audience, func(aud string) bool { return slices.Contains(a.bearerAudiences, aud) }) {
		return nil, &BearerError{Description: "the token is not meant for this service (aud)", Err: fmt.Errorf("aud %q not in bearer.audiences", idt.Audience)}
	}
	switch {
	case idt.IssuedAt.After(now.Add(iatSkew)):
		return nil, &BearerError{Description: "the token's iat is in the future"}
	case idt.Subject == "":
		return nil, &BearerError{Description: "the token has no sub"}
	}
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return nil, &BearerError{Description: "unreadable claims", Err: err}
	}
	s = &sessions.Session{ID: sessions.NewID(), Issuer: idt.Issuer, Created: now, AccessExpiry: idt.Expiry}
	if err := a.setIdentity(s, idt.Subject, claims); err != nil {
		s.Email = "" // a machine token's unverified email is not trusted, but not fatal
	}
	s.SetLastSeen(now)
	a.bearers.mu.Lock()
	if a.bearers.m == nil || len(a.bearers.m) >= maxBearerCache {
		a.bearers.m = map[string]*sessions.Session{}
	}
	a.bearers.m[raw] = s
	a.bearers.mu.Unlock()
	return s, nil
}

// BearerEnabled reports whether bearer tokens are accepted.
func (a *Authenticator) BearerEnabled() bool { return len(a.bearerAudiences) > 0 }

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
