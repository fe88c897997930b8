package devidp

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// supportedScopes returns the scopes the provider understands.
func supportedScopes() []string {
	return []string{"openid", "email", "profile", "groups", "offline_access"}
}

// grantedScopes parses a space-delimited scope parameter and returns the
// supported scopes it names, de-duplicated, in request order. Unknown scopes
// are dropped, as RFC 6749 §3.3 allows.
func grantedScopes(raw string) []string {
	supported := supportedScopes()
	var out []string
	for _, s := range strings.Fields(raw) {
		if slices.Contains(supported, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// userClaims returns the claims about u that scopes release.
func userClaims(u User, scopes []string) map[string]any {
	c := map[string]any{"sub": u.Subject}
	if slices.Contains(scopes, "email") {
		c["email"] = u.Email
		c["email_verified"] = u.EmailVerified
	}
	if slices.Contains(scopes, "profile") {
		c["name"] = u.Name
		c["preferred_username"] = u.PreferredUsername
	}
	if slices.Contains(scopes, "groups") {
		groups := slices.Clone(u.Groups)
		if groups == nil {
			groups = []string{}
		}
		c["groups"] = groups
	}
	return c
}

// randomToken returns 32 random bytes, base64url-encoded without padding.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return base64.RawURLEncoding.EncodeToString(b)
}

// single returns the value of parameter name, which must not be repeated
// (RFC 6749 §3.1 and §3.2). A missing parameter yields "".
func single(v url.Values, name string) (string, error) {
	switch vals := v[name]; len(vals) {
	case 0:
		return "", nil
	case 1:
		return vals[0], nil
	default:
		return "", fmt.Errorf("parameter %s is repeated", name)
	}
}

// writeJSON writes v as an uncacheable JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// parsePostForm parses a form body of at most maxBodyBytes.
func parsePostForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("parse form: %w", err)
	}
	return nil
}
