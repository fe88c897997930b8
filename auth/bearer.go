package auth

import (
	"context"
	"encoding/base64"
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
// that sends the same token many times is verified once. Owner: the
// Authenticator, one per configuration (a reload starts empty). Key: the
// raw token. Value: the session built from it, served while the token's
// exp (its AccessExpiry) has not passed. Bounded by maxBearerCache; a
// full cache is emptied.
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
// exp, iat, an aud in bearer.audiences, and that it is an access token
// at all (notAccessToken): the provider signs ID and logout tokens with
// the same keys, and their aud may name an API too.
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
	idt, err := d.bearer.Verify(a.idp.ctx(ctx), raw)
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
	if desc := notAccessToken(raw, claims); desc != "" {
		return nil, &BearerError{Description: desc}
	}
	if a.cfg.BearerRequireATJWT && !typedATJWT(raw) {
		return nil, &BearerError{Description: "the token is not typed at+jwt, which bearer.require_at_jwt demands (RFC 9068)"}
	}
	// auth_time (RFC 9068 §2.2.1), when the token has it, is what a
	// route's max_auth_age judges; without it the sign-in time is unknown.
	s = &sessions.Session{ID: sessions.NewID(), Issuer: idt.Issuer, Created: now, AccessExpiry: idt.Expiry,
		AuthTime: authTimeClaim(claims), ACR: clean(claimString(claims, "acr"))}
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

// notAccessToken tells, for a verified JWT, why it is not an access token
// ("" when nothing says so). The provider signs its ID tokens and logout
// tokens with the keys it signs access tokens with, so a valid signature
// and an aud in bearer.audiences do not make a token a credential for the
// API: a logout token posted to gatehouse, or an ID token handed to a
// browser app, would otherwise be replayed as one. The rules:
//
//   - an explicitly typed JWT (header typ "<kind>+jwt", RFC 8725 §3.11,
//     with or without "application/") must be "at+jwt", the access token
//     type of RFC 9068 §2.1: "logout+jwt" (Back-Channel Logout 1.0 §2.4)
//     and "secevent+jwt" (RFC 8417) are refused. typ "JWT" or none says
//     nothing, so the claims decide;
//   - an "events" claim marks a logout or security event token (BCL §2.4,
//     RFC 8417): refused;
//   - ID tokens: "at_hash" and "c_hash" exist only in ID tokens (OIDC Core
//     §3.1.3.6, §3.3.2.11); a "nonce" claim marks one (OIDC Core §2)
//     unless the token says it is an access token (typ at+jwt, or
//     Keycloak's typ claim "Bearer": Keycloak before 25 copied the nonce
//     into access tokens); Keycloak's typ claim "ID", "Logout" or
//     "Refresh" names the other kinds. All refused.
//
// aud equal to gatehouse's client ID is not a rule: with Microsoft Entra
// ID an API registered as the same application gets access tokens with
// that aud. Do not list gatehouse's client ID in bearer.audiences unless
// that is the case: an ID token without nonce or hashes would pass.
func notAccessToken(raw string, claims map[string]json.RawMessage) string {
	typ := strings.TrimPrefix(strings.ToLower(jwtHeaderType(raw)), "application/")
	if strings.HasSuffix(typ, "+jwt") && typ != "at+jwt" {
		return fmt.Sprintf("the token is typed %q, not an access token (at+jwt)", typ)
	}
	if _, ok := claims["events"]; ok {
		return "the token is a logout or security event token (events), not an access token"
	}
	if _, ok := claims["at_hash"]; ok {
		return "the token is an ID token (at_hash), not an access token"
	}
	if _, ok := claims["c_hash"]; ok {
		return "the token is an ID token (c_hash), not an access token"
	}
	kind := strings.ToLower(claimString(claims, "typ"))
	switch kind {
	case "id", "logout", "refresh":
		return fmt.Sprintf("the token is typed %q (typ claim), not an access token", claimString(claims, "typ"))
	}
	if _, ok := claims["nonce"]; ok && typ != "at+jwt" && kind != "bearer" {
		return "the token is an ID token (nonce), not an access token"
	}
	return ""
}

// typedATJWT reports whether a verified token's header types it as an
// RFC 9068 access token: typ at+jwt, or application/at+jwt, in any case.
func typedATJWT(raw string) bool {
	return strings.TrimPrefix(strings.ToLower(jwtHeaderType(raw)), "application/") == "at+jwt"
}

// jwtHeaderType returns the typ of a compact JWS's protected header, or ""
// when it has none or does not decode. Call it only on a verified token:
// the header is covered by the signature.
func jwtHeaderType(raw string) string {
	h, _, ok := strings.Cut(raw, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(h, "="))
	if err != nil {
		return ""
	}
	var hdr struct {
		Typ string `json:"typ"`
	}
	if json.Unmarshal(b, &hdr) != nil {
		return ""
	}
	return hdr.Typ
}
