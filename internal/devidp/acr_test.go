package devidp

import (
	"net/url"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestACRValues: the ID token's acr is the first requested acr_values
// value the provider supports (mfa), else pwd, and a refresh keeps it.
func TestACRValues(t *testing.T) {
	for _, tc := range []struct{ name, requested, want string }{
		{"none asked", "", "pwd"},
		{"mfa asked", "mfa", "mfa"},
		{"unsupported first", "hwk mfa", "mfa"},
		{"only unsupported", "hwk", "pwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, "", nil)
			verifier := oauth2.GenerateVerifier()
			opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(testNonceValue)}
			if tc.requested != "" {
				opts = append(opts, oauth2.SetAuthURLParam("acr_values", tc.requested))
			}
			loc := e.submitLogin(e.conf.AuthCodeURL(testStateValue, opts...), url.Values{"user": {"alice"}})
			tok, err := e.conf.Exchange(e.ctx(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			acrOf := func(tok *oauth2.Token) string {
				idt, _, _ := e.verifyIDToken(tok)
				var c struct {
					ACR string `json:"acr"`
				}
				if err := idt.Claims(&c); err != nil {
					t.Fatal(err)
				}
				return c.ACR
			}
			if got := acrOf(tok); got != tc.want {
				t.Errorf("acr_values %q: acr %q, want %q", tc.requested, got, tc.want)
			}
			refreshed, err := e.conf.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if got := acrOf(refreshed); got != tc.want {
				t.Errorf("after refresh: acr %q, want %q", got, tc.want)
			}
		})
	}
}
