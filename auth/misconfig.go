package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/web"
)

// A login can fail for two kinds of reasons, and the page must say whose
// fault it is. The user's: a code that expired or was used, a sign-in
// started in another browser or left too long, a denial at the provider;
// the page says what to do (sign in again, ask for access). The
// operator's: gatehouse and the identity provider disagree about the
// client (secret, ID, issuer, redirect URI, grants); signing in again
// cannot help, so the page says the service is misconfigured and the log
// says, at ERROR, which configuration key to fix.

// ReasonMisconfigured is the login_failure reason (and the JSON error
// code) of a failure only the operator can fix.
const ReasonMisconfigured = "misconfigured"

// misconfiguration is the cause of a failure only the operator can fix:
// the configuration key to check and how. Neither holds a secret nor a
// provider's error body.
type misconfiguration struct {
	key string // e.g. "oidc.client_secret"
	fix string // what to check or change
	err error  // what was seen
}

func (m *misconfiguration) Error() string {
	return fmt.Sprintf("%s: %s (%v)", m.key, m.fix, m.err)
}

func (m *misconfiguration) Unwrap() error { return m.err }

// misconfigured is the page of a failure only the operator can fix. It is
// a 500: gatehouse's own configuration (or the client registration it
// must match) is at fault, not the provider's answer, which was a valid
// refusal; a monitor counting 5xx sees it. It offers no "sign in again",
// which would only loop.
func misconfigured(key, fix string, err error) *web.Error {
	return &web.Error{Status: http.StatusInternalServerError, Code: ReasonMisconfigured,
		Title: "Sign-in is misconfigured",
		Detail: "gatehouse and the identity provider do not agree on how this service signs people in, so nobody can sign in right now. " +
			"This is not something you can fix by trying again: tell your administrator, with the request ID below.",
		Err: &misconfiguration{key: key, fix: fix, err: err}}
}

// logMisconfigured writes the ERROR line of a failure only the operator
// can fix, naming the configuration key, and reports whether err was one.
func (a *Authenticator) logMisconfigured(r *http.Request, err error) bool {
	var m *misconfiguration
	if !errors.As(err, &m) {
		return false
	}
	a.log.Error("login failed: gatehouse is misconfigured; fix "+m.key, "event", "login_failure", "reason", ReasonMisconfigured,
		"key", m.key, "fix", m.fix, "request_id", web.RequestID(r), "err", m.err.Error())
	return true
}

// tokenRefusal sorts a token endpoint's refusal (RFC 6749 §5.2) of the
// code exchange: nil when the user can recover by signing in again (an
// expired or used code: invalid_grant), else the misconfiguration. The
// provider's error_description is read only to pick which key to name,
// never logged: providers echo the code, and some the client secret.
func (a *Authenticator) tokenRefusal(re *oauth2.RetrieveError) *web.Error {
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	desc := strings.ToLower(re.ErrorDescription)
	seen := retrieveError(re)
	switch re.ErrorCode {
	case "invalid_grant":
		return nil
	case "invalid_client":
		return misconfigured("oidc.client_secret", "the identity provider refused gatehouse's client credentials: check oidc.client_secret (and oidc.client_id) against the client registered at the provider", seen)
	case "unauthorized_client", "unsupported_grant_type":
		return misconfigured("oidc.client_id", fmt.Sprintf("the identity provider does not allow client %.100q the authorization code grant: enable it in the client's registration, or check oidc.client_id", a.cfg.OIDC.ClientID), seen)
	case "invalid_scope":
		return misconfigured("oidc.scopes", "the identity provider refused the scopes gatehouse asks for: check oidc.scopes against what the client may request", seen)
	case "invalid_request":
		if strings.Contains(desc, "redirect") {
			return a.redirectMismatch(seen)
		}
		if strings.Contains(desc, "client") || strings.Contains(desc, "secret") || strings.Contains(desc, "authenticat") || strings.Contains(desc, "credential") {
			return misconfigured("oidc.client_secret", "the identity provider could not authenticate gatehouse as its client: check oidc.client_secret and oidc.client_id, and the client's authentication method at the provider", seen)
		}
		return nil
	}
	if status == http.StatusUnauthorized {
		return misconfigured("oidc.client_secret", "the token endpoint answered 401: check oidc.client_secret (and oidc.client_id) against the client registered at the provider", seen)
	}
	return nil
}

// redirectMismatch is the misconfiguration of a redirect URI the provider
// does not know.
func (a *Authenticator) redirectMismatch(seen error) *web.Error {
	return misconfigured("external_url", fmt.Sprintf("the identity provider refused the redirect URI %.200q: register it for the client at the provider, or fix external_url", a.origin+CallbackPath), seen)
}

// authorizeRefusal sorts an error the provider sent back to the callback
// (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6) after a login this browser
// started: nil when the user can act on it, else the misconfiguration.
func (a *Authenticator) authorizeRefusal(code, desc string) *web.Error {
	seen := fmt.Errorf("authorization endpoint answered error %s", code)
	switch code {
	case "unauthorized_client", "unsupported_response_type", "invalid_client":
		return misconfigured("oidc.client_id", fmt.Sprintf("the identity provider does not let client %.100q sign users in with the authorization code flow: check oidc.client_id and the client's registration at the provider", a.cfg.OIDC.ClientID), seen)
	case "invalid_scope":
		return misconfigured("oidc.scopes", "the identity provider refused the scopes gatehouse asks for: check oidc.scopes against what the client may request", seen)
	case "invalid_request":
		if strings.Contains(strings.ToLower(desc), "redirect") {
			return a.redirectMismatch(seen)
		}
		return misconfigured("oidc.client_id", "the identity provider refused gatehouse's authorization request: compare gatehouse's oidc section with the client registered at the provider", seen)
	}
	return nil
}

// idTokenMismatch explains an ID token that gatehouse's verifier refused
// but that the provider really signed (its keys, an asymmetric algorithm)
// for another issuer or audience than gatehouse is configured with: the
// configuration, not the user nor an attacker, is at fault, since the
// token came from the provider's own token endpoint. A token not signed
// by the provider's keys is not explained this way. It returns nil when
// the refusal has another cause.
func (a *Authenticator) idTokenMismatch(ctx context.Context, d *discovered, raw string, cause error) *web.Error {
	idt, err := d.signedOnly.Verify(ctx, raw)
	if err != nil {
		return nil
	}
	switch {
	case idt.Issuer != a.idp.issuer:
		return misconfigured("oidc.issuer", fmt.Sprintf("the identity provider signs ID tokens with issuer %.200q, but oidc.issuer is %.200q: set oidc.issuer to the provider's issuer exactly (a trailing slash counts), or fix the provider's public hostname", idt.Issuer, a.idp.issuer), cause)
	case !slices.Contains(idt.Audience, a.cfg.OIDC.ClientID):
		aud := idt.Audience[:min(len(idt.Audience), 5)]
		return misconfigured("oidc.client_id", fmt.Sprintf("the identity provider issued the ID token for audience %.200q, which does not include oidc.client_id %.100q: set oidc.client_id to this client's ID at the provider", aud, a.cfg.OIDC.ClientID), cause)
	}
	return nil
}

// discoveryMismatch is the misconfiguration behind a failed discovery,
// or nil: the discovery document names another issuer than oidc.issuer
// (often only a trailing slash), which no retry will cure.
func discoveryMismatch(err error) *web.Error {
	var m *oidc.IssuerMismatchError
	if !errors.As(err, &m) {
		return nil
	}
	return misconfigured("oidc.issuer", fmt.Sprintf("the identity provider's discovery document names issuer %.200q, but oidc.issuer is %.200q: set oidc.issuer to exactly the provider's issuer (a trailing slash counts)", m.Discovered, m.Provided), m)
}
