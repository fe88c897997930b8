package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/sessions"
)

// Claims: what gatehouse reads of a verified token's claims (ID tokens
// at login and refresh, access tokens from machine clients) and keeps in
// the session, cleaned and bounded.

// Limits on what a session keeps from the ID token.
const (
	maxGroups     = 1000
	maxClaimBytes = 1024
)

// errUnverifiedEmail refuses a login whose email the provider says it has
// not verified.
var errUnverifiedEmail = errors.New("email_verified is false")

// setIdentity fills the identity fields of s from verified claims: at
// login, at a refresh that brings a new ID token, and for bearer tokens.
// It refuses an email the provider says is not verified, unless the
// operator allows those.
func (a *Authenticator) setIdentity(s *sessions.Session, sub string, claims map[string]json.RawMessage) error {
	s.Subject = clean(sub)
	s.Name = clean(claimString(claims, "name"))
	s.PreferredUsername = clean(claimString(claims, "preferred_username"))
	s.IdPSessionID = claimString(claims, "sid")
	s.Groups = claimStrings(claims, a.cfg.OIDC.GroupsClaim)
	s.Claims = policyClaims(claims, a.cfg.ClaimNames)
	s.Email = ""
	email := clean(claimString(claims, "email"))
	verified, present := claimBool(claims, "email_verified")
	s.EmailVerified = verified
	switch {
	case email == "":
	case verified || a.cfg.OIDC.InsecureAllowUnverifiedEmail:
		s.Email = email
	case present:
		return errUnverifiedEmail
	default:
		// No email_verified claim (Microsoft Entra ID, for one): the email
		// is not trusted, so it neither passes email rules nor reaches the
		// upstream. Use groups, or set insecure_allow_unverified_email.
	}
	s.User = s.Subject
	if c := a.cfg.OIDC.UserClaim; c != "sub" {
		if c == "email" {
			s.User = s.Email
		} else {
			s.User = clean(claimString(claims, c))
		}
		if s.User == "" {
			s.User = s.Subject
		}
	}
	return nil
}

// claimString returns a string (or number) claim, or "".
func claimString(claims map[string]json.RawMessage, name string) string {
	raw, ok := claims[name]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// claimBool returns a boolean claim; providers such as Amazon Cognito send
// "true" as a string.
func claimBool(claims map[string]json.RawMessage, name string) (value, present bool) {
	raw, ok := claims[name]
	if !ok {
		return false, false
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.EqualFold(s, "true"), true
	}
	return false, true
}

// claimStrings returns a claim holding an array of strings or one string,
// cleaned and bounded; other elements are skipped.
func claimStrings(claims map[string]json.RawMessage, name string) []string {
	raw, ok := claims[name]
	if !ok {
		return nil
	}
	var list []any
	if json.Unmarshal(raw, &list) != nil {
		if s := claimString(claims, name); s != "" {
			return []string{clean(s)}
		}
		return nil
	}
	out := make([]string, 0, min(len(list), maxGroups))
	for _, v := range list {
		if s, ok := v.(string); ok && s != "" && len(out) < maxGroups {
			if c := clean(s); c != "" && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// policyClaims keeps the claims named (dotted paths reach into objects:
// realm_access.roles), as strings.
func policyClaims(claims map[string]json.RawMessage, names []string) map[string][]string {
	if len(names) == 0 {
		return nil
	}
	out := map[string][]string{}
	for _, name := range names {
		raw, ok := lookupClaim(claims, name)
		if !ok {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		var vals []string
		add := func(x any) {
			switch x := x.(type) {
			case string:
				vals = append(vals, clean(x))
			case float64, bool:
				vals = append(vals, fmt.Sprint(x))
			}
		}
		if list, ok := v.([]any); ok {
			for _, x := range list[:min(len(list), maxGroups)] {
				add(x)
			}
		} else {
			add(v)
		}
		if len(vals) > 0 {
			out[name] = vals
		}
	}
	return out
}

// lookupClaim finds a claim by name, or by dotted path into nested
// objects when no claim has the whole name.
func lookupClaim(claims map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if raw, ok := claims[name]; ok {
		return raw, true
	}
	first, rest, ok := strings.Cut(name, ".")
	if !ok {
		return nil, false
	}
	raw, ok := claims[first]
	if !ok {
		return nil, false
	}
	var inner map[string]json.RawMessage
	if json.Unmarshal(raw, &inner) != nil {
		return nil, false
	}
	return lookupClaim(inner, rest)
}

// clean makes a claim value safe for an HTTP header and a log line: it
// drops control characters and bounds the length.
func clean(s string) string {
	if len(s) > maxClaimBytes {
		s = s[:maxClaimBytes]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < ' ' || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return strings.ToValidUTF8(s, "")
}
