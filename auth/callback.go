package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/httpfield"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Clock skew tolerated on iat: an ID token issued in the future by more
// than this, or longer ago than LoginTTL plus this, is refused (OIDC Core
// §3.1.3.7 (10)).
const iatSkew = 2 * time.Minute

var oauthErrorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// handleCallback finishes a login: it matches the state against the login
// cookie, exchanges the code with the PKCE verifier, verifies the ID token,
// creates a new session with a fresh ID and returns the browser to the
// page it first asked for.
func (a *Authenticator) handleCallback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")
	list := a.readPending(r)
	p, rest, found := takePending(list, state)
	if found {
		// The state is single-use whatever happens next: a replayed
		// callback finds nothing in this browser's cookie (RFC 9700
		// §4.7.1); one with a saved copy of the cookie is stopped by
		// consumeState below.
		if err := a.writePending(w, r, rest); err != nil {
			return err
		}
	}
	retry := &web.Link{Text: "Sign in again", URL: StartPath + "?rd=" + urlQueryEscape(p.Return)}
	if !found {
		retry.URL = StartPath + "?rd=%2F"
	} else {
		retry.URL += stepUpQuery(p)
	}

	if code := q.Get("error"); code != "" {
		return a.providerError(code, q.Get("error_description"), found, retry)
	}
	switch {
	case state == "" || q.Get("code") == "":
		return &web.Error{Status: http.StatusBadRequest, Code: "bad_callback", Title: "Incomplete sign-in response",
			Detail: "The sign-in response has no state or code. Start the sign-in again.", Link: retry}
	case len(list) == 0:
		return &web.Error{Status: http.StatusBadRequest, Code: "no_login_cookie", Title: "Sign-in expired",
			Detail: "This sign-in was not started in this browser, or it took too long. Start the sign-in again.", Link: retry, Err: errNoLoginCookie}
	case !found:
		return &web.Error{Status: http.StatusBadRequest, Code: "state_mismatch", Title: "Sign-in link already used or not yours",
			Detail: "This sign-in response does not belong to a sign-in started in this browser, or it was used already. Start the sign-in again.", Link: retry}
	case a.expired(p):
		return &web.Error{Status: http.StatusBadRequest, Code: "login_expired", Title: "Sign-in expired",
			Detail: fmt.Sprintf("The sign-in took longer than %s. Start it again.", LoginTTL), Link: retry}
	}

	if err := a.consumeState(r, p, retry); err != nil {
		return err
	}
	s, err := a.redeem(r.Context(), q.Get("code"), p, retry)
	if err != nil {
		return err
	}
	if err := a.checkStepUp(p, s, retry); err != nil {
		return err
	}
	if err := a.checkACR(p, s, retry); err != nil {
		return err
	}
	s.ClientIP, s.UserAgent = clientIP(r), clean(truncate(r.UserAgent(), 256))
	// A user whom no route allows gets no session at all (DESIGN,
	// invariant 1): the store holds only sessions that can be used, so
	// refused users cannot push allowed ones out of it. A session the
	// browser already has is left as it is.
	if a.admits == nil || !a.admits(s) {
		a.log.Info("login refused: no route allows this user", "event", "login_denied", "request_id", web.RequestID(r),
			"sub", s.Subject, "user", s.User, "email", s.Email)
		return a.notAllowed(r, s)
	}
	// A fresh ID at every login; the session from before it, if any, is
	// gone (no fixation: OWASP session management, R3/R4).
	a.endCurrentSession(w, r)
	dev := a.noteDevice(r, s)
	if err := a.store.Create(r.Context(), s); err != nil {
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Session store unavailable",
			Detail: "gatehouse could not save your session. Try again in a moment.", Link: retry, Err: err}
	}
	c, err := a.SessionCookie(s.ID)
	if err != nil {
		return err
	}
	http.SetCookie(w, c)
	a.offerAtLogin(w, r, s)
	a.log.Info("login", "event", "login", "request_id", web.RequestID(r), "sub", s.Subject, "user", s.User, "email", s.Email, "session", s.ID.LogID())
	a.finishDevice(w, r, s, dev)
	if p.Form != "" && a.replay != nil {
		if done, err := a.replayHeld(w, r, s, p); done {
			return err
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, a.redirects.Safe(p.Return), http.StatusFound)
	return nil
}

// notAllowed is the 403 page of a login that no route's policy allows.
// No session exists, so instead of gatehouse's sign-out form it links to
// the identity provider's sign-out (without id_token_hint: the ID token
// never goes to the browser), for the user to sign in with another
// account.
func (a *Authenticator) notAllowed(r *http.Request, s *sessions.Session) error {
	link := &web.Link{Text: "Sign out at the identity provider", URL: a.afterLogout(r, &sessions.Session{})}
	if link.URL == SignedOutPath {
		link = &web.Link{Text: "Sign in again", URL: StartPath + "?rd=%2F"}
	}
	return &web.Error{Status: http.StatusForbidden, Code: "not_allowed", Title: "You do not have access",
		Detail: fmt.Sprintf("You signed in as %s, and this account may not use any application behind gatehouse, so no session was started. "+
			"Below is what gatehouse received about you from the identity provider; access depends on it. "+
			"Sign out at your identity provider to use another account, or ask your administrator for access.", whoText(s)),
		Link: link, Identity: seenIdentity(s)}
}

// consumeState records in the session store (shared by the replicas on
// one Redis) that the login's state is used, before the code goes to the token
// endpoint: a callback replayed with a saved copy of the login cookie, at
// this replica or another, is refused without a token call, so even a
// provider that accepts a code twice cannot give it a second session
// (RFC 9700 §4.7.1, §4.5.3). The store keeps only a hash of the state,
// apart from the sessions. A store that cannot answer stops the login
// (fail closed).
func (a *Authenticator) consumeState(r *http.Request, p pendingLogin, retry *web.Link) error {
	first, err := a.store.ConsumeState(r.Context(), p.State, usedStateTTL)
	switch {
	case errors.Is(err, sessions.ErrTooManyLogins):
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "too_many_logins", Title: "Too many sign-ins right now",
			Detail: "gatehouse is finishing more sign-ins than it can keep track of. Wait a few minutes and sign in again; if you are already signed in, your session is unaffected.",
			Link:   retry, Err: err}
	case err != nil:
		return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Session store unavailable",
			Detail: "gatehouse could not check this sign-in with its session store. Try again in a moment.", Link: retry,
			Err: fmt.Errorf("consume login state: %w", err)}
	case !first:
		return &web.Error{Status: http.StatusBadRequest, Code: "state_used", Title: "Sign-in link already used or not yours",
			Detail: "This sign-in response was used already. Start the sign-in again.", Link: retry}
	}
	return nil
}

// retrieveError describes a token endpoint's refusal without its body: a
// provider may echo the code or a token there, and logs must not hold
// them.
func retrieveError(re *oauth2.RetrieveError) error {
	code := re.ErrorCode
	if !oauthErrorCode.MatchString(code) {
		code = "(none)"
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	return fmt.Errorf("token endpoint answered %d, error %s", status, code)
}

// providerError turns an error response from the identity provider (RFC
// 6749 §4.1.2.1) into a page. Only the error code is shown, and only when
// it looks like one: the description is attacker-controlled text, read
// only to pick the configuration key to name. Anyone can send a browser
// to the callback with an error, so only a response to a login this
// browser started (found) may be called a misconfiguration.
func (a *Authenticator) providerError(code, desc string, found bool, retry *web.Link) error {
	if !oauthErrorCode.MatchString(code) {
		code = "invalid"
	}
	if found {
		if m := a.authorizeRefusal(code, desc); m != nil {
			return m
		}
	}
	e := &web.Error{Status: http.StatusBadRequest, Code: "idp_error", Link: retry,
		Title:  "The identity provider refused the sign-in",
		Detail: fmt.Sprintf("The identity provider answered %q. Start the sign-in again; if it keeps failing, ask your administrator.", code),
		Err:    fmt.Errorf("authorization error %q (state matched: %v)", code, found)}
	switch code {
	case "access_denied":
		e.Status = http.StatusForbidden
		e.Title = "Sign-in cancelled"
		e.Detail = "The sign-in was cancelled, or the identity provider did not let your account use this service. " +
			"Sign in again if you cancelled it; if you need access, ask your administrator to give your account access to this service at the identity provider."
	case "login_required", "interaction_required", "consent_required", "account_selection_required":
		e.Title = "Sign in again"
		e.Detail = "The identity provider needs you to sign in (or to confirm) before it lets you in. Start the sign-in again and follow the identity provider's steps."
	case "server_error", "temporarily_unavailable":
		e.Status = http.StatusServiceUnavailable
		e.Title = "The sign-in service is unavailable"
		e.Detail = "The identity provider could not complete the sign-in right now. Wait a moment and sign in again."
	}
	return e
}

// redeem exchanges the code and verifies the ID token, returning the new
// (unsaved) session.
func (a *Authenticator) redeem(ctx context.Context, code string, p pendingLogin, retry *web.Link) (*sessions.Session, error) {
	d, err := a.idp.get(ctx)
	if err != nil {
		return nil, idpUnavailable(err, p.Return)
	}
	ctx = a.idp.ctx(ctx)
	tok, err := d.oauth2.Exchange(ctx, code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			if m := a.tokenRefusal(re); m != nil {
				return nil, m
			}
			return nil, &web.Error{Status: http.StatusBadRequest, Code: "code_rejected", Title: "Sign-in could not be completed",
				Detail: "The identity provider did not accept the sign-in code; it may have expired or been used already. Start the sign-in again.",
				Link:   retry, Err: retrieveError(re)}
		}
		if errors.As(err, &re) {
			err = retrieveError(re)
		}
		return nil, idpUnavailable(fmt.Errorf("exchange authorization code: %w", err), p.Return)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &web.Error{Status: http.StatusBadGateway, Code: "no_id_token", Title: "Sign-in could not be completed",
			Detail: "The identity provider returned no ID token. Ask your administrator to check that the openid scope is allowed for this client.",
			Link:   retry, Err: errors.New("token response without id_token")}
	}
	verifier, keys := d.verifierFor(false)
	idt, err := a.verifyIDToken(ctx, verifier, raw, p.Nonce, tok.AccessToken)
	if keys.fetchErr != nil {
		return nil, idpUnavailable(keys.fetchErr, p.Return)
	}
	if err != nil {
		if m := a.idTokenMismatch(ctx, d, raw, err); m != nil {
			return nil, m
		}
		return nil, &web.Error{Status: http.StatusBadRequest, Code: "id_token_invalid", Title: "Sign-in could not be completed",
			Detail: "The identity token failed gatehouse's checks. Start the sign-in again; if it keeps failing, ask your administrator to check gatehouse's log.",
			Link:   retry, Err: err}
	}
	s, err := a.sessionFromToken(idt, raw, tok)
	if err != nil {
		return nil, &web.Error{Status: http.StatusForbidden, Code: "email_unverified", Title: "Email address not verified",
			Detail: "Your identity provider says your email address is not verified. Verify it there, then sign in again.",
			Link:   retry, Err: err}
	}
	return s, nil
}

// verifyIDToken runs every check OIDC Core §3.1.3.7 asks of a client.
// go-oidc's Verify covers the signature (with an asymmetric algorithm
// only), iss, aud and exp; the rest, which it leaves to the caller, is
// checked here.
func (a *Authenticator) verifyIDToken(ctx context.Context, verifier *oidc.IDTokenVerifier, raw, nonce, accessToken string) (*oidc.IDToken, error) {
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verify id token: %w", err)
	}
	// (11) The nonce must be there and equal the one this browser sent
	// (also the defence against code injection, RFC 9700 §4.5.3.2).
	if !equalStrings(idt.Nonce, nonce) {
		return nil, errors.New("id token nonce does not match the login's nonce")
	}
	// (10) iat must be present and plausible.
	now := a.now()
	switch {
	case idt.IssuedAt.IsZero():
		return nil, errors.New("id token has no iat")
	case idt.IssuedAt.After(now.Add(iatSkew)):
		return nil, fmt.Errorf("id token iat %s is in the future", idt.IssuedAt.UTC().Format(time.RFC3339))
	case idt.IssuedAt.Before(now.Add(-LoginTTL - iatSkew)):
		return nil, fmt.Errorf("id token iat %s is too old", idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if idt.Subject == "" {
		return nil, errors.New("id token has no sub")
	}
	// (4)/(5) azp: when present it must be this client; with several
	// audiences it must be present.
	var extra struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&extra); err != nil {
		return nil, fmt.Errorf("read id token claims: %w", err)
	}
	if extra.AZP != "" && extra.AZP != a.cfg.OIDC.ClientID {
		return nil, fmt.Errorf("id token azp %q is not this client", extra.AZP)
	}
	if len(idt.Audience) > 1 && extra.AZP == "" {
		return nil, errors.New("id token has several audiences and no azp")
	}
	// at_hash, when present, binds the access token to the ID token.
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return nil, fmt.Errorf("id token at_hash: %w", err)
		}
	}
	return idt, nil
}

// sessionFromToken builds a new session from a verified ID token.
func (a *Authenticator) sessionFromToken(idt *oidc.IDToken, raw string, tok *oauth2.Token) (*sessions.Session, error) {
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("read id token claims: %w", err)
	}
	s := &sessions.Session{
		ID:           sessions.NewID(),
		Issuer:       idt.Issuer,
		IDToken:      raw,
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		Created:      a.now(),
		AuthTime:     authTimeClaim(claims),
		ACR:          clean(claimString(claims, "acr")),
	}
	if err := a.setIdentity(s, idt.Subject, claims); err != nil {
		return nil, err
	}
	a.setTokenTimes(s, tok)
	return s, nil
}

// clientIP is the client's address: the address the trusted proxy in
// front saw, which it appended last to X-Forwarded-For (gatehouse keeps
// that header only from trusted proxies; entries further left are the
// client's own claims), else the peer.
func clientIP(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		var ip string // the last item, empty or not
		for item, i, ok := httpfield.NextListItem(xff, 0, httpfield.UnicodeSpace); ok; item, i, ok = httpfield.NextListItem(xff, i, httpfield.UnicodeSpace) {
			ip = item
		}
		if ip != "" {
			return truncate(ip, 64)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// equalStrings compares secrets in constant time.
func equalStrings(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
