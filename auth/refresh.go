package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/sessions"
)

// ErrRefreshRejected means the identity provider refused to refresh a
// session's tokens (invalid_grant: the user was disabled or the grant
// revoked). The session has been deleted; the request is unauthenticated.
var ErrRefreshRejected = errors.New("identity provider rejected the token refresh")

// refreshRetry is how long a session waits before trying again after a
// refresh the provider could not answer (down, slow, 5xx), so an outage
// does not turn every request into a provider call.
const refreshRetry = 30 * time.Second

// refreshTimeout bounds one refresh, whatever the request that triggered
// it does meanwhile.
const refreshTimeout = 15 * time.Second

// flights runs at most one refresh per session at a time; concurrent
// requests of that session wait for its result.
type flights struct {
	mu sync.Mutex
	m  map[sessions.ID]*flight
}

type flight struct {
	done chan struct{}
	s    *sessions.Session
	err  error
}

// Refresh returns the session a request should use: s itself, or, when s
// holds a refresh token and its access token is within
// session.refresh_before of expiring, s with fresh tokens and claims. It
// refreshes once per session even under concurrent requests. A refresh
// never extends the session's limits.
//
// It returns ErrRefreshRejected (and has deleted the session) when the
// provider answers invalid_grant. When the provider cannot be reached the
// old session keeps serving (its tokens until they expire), the failure
// is logged, and the next attempt waits refreshRetry.
func (a *Authenticator) Refresh(ctx context.Context, s *sessions.Session) (*sessions.Session, error) {
	if s.RefreshToken == "" || s.AccessExpiry.IsZero() {
		return s, nil
	}
	now := a.now()
	if now.Before(s.AccessExpiry.Add(-a.cfg.Session.RefreshBefore)) {
		return s, nil
	}
	if next, ok := s.Derived(a.refreshKey); ok && now.Before(next.(time.Time)) {
		return s, nil
	}
	a.flights.mu.Lock()
	if a.flights.m == nil {
		a.flights.m = map[sessions.ID]*flight{}
	}
	f, running := a.flights.m[s.ID]
	if !running {
		f = &flight{done: make(chan struct{})}
		a.flights.m[s.ID] = f
	}
	a.flights.mu.Unlock()
	if !running {
		go func() {
			// Detached from the request: one client going away must not
			// fail the refresh the others wait for.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
			defer cancel()
			f.s, f.err = a.refresh(rctx, s)
			a.flights.mu.Lock()
			delete(a.flights.m, s.ID)
			a.flights.mu.Unlock()
			close(f.done)
		}()
	}
	select {
	case <-f.done:
		return f.s, f.err
	case <-ctx.Done():
		return s, nil
	}
}

// refresh calls the token endpoint and stores the refreshed session.
func (a *Authenticator) refresh(ctx context.Context, s *sessions.Session) (*sessions.Session, error) {
	keep := func(err error) (*sessions.Session, error) {
		a.log.Warn("token refresh failed; the session keeps its current tokens", "event", "refresh", "result", "error",
			"sub", s.Subject, "session", s.ID.LogID(), "retry_in", refreshRetry, "err", err)
		s.SetDerived(a.refreshKey, a.now().Add(refreshRetry))
		a.obs.Refresh("error")
		return s, nil
	}
	d, err := a.idp.get(ctx)
	if err != nil {
		return keep(err)
	}
	pctx := a.idp.ctx(ctx)
	tok, err := d.oauth2.TokenSource(pctx, &oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		// Only invalid_grant says the grant is gone. invalid_client and the
		// like are gatehouse's own misconfiguration: they must not sign
		// everyone out.
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return a.endRefresh(ctx, s, fmt.Errorf("%w: %s", ErrRefreshRejected, re.ErrorCode))
		}
		if errors.As(err, &re) {
			err = retrieveError(re)
		}
		return keep(fmt.Errorf("refresh tokens: %w", err))
	}
	ns := s.Clone()
	ns.AccessToken = tok.AccessToken
	ns.AccessExpiry = a.accessExpiry(tok)
	if tok.RefreshToken != "" {
		ns.RefreshToken = tok.RefreshToken // rotated
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := d.verifier.Verify(pctx, raw)
		if err != nil {
			return keep(fmt.Errorf("verify refreshed id token: %w", err))
		}
		// OIDC Core §12.2: the new ID token must be about the same user,
		// from the same issuer.
		if idt.Subject != s.Subject || idt.Issuer != s.Issuer {
			return a.endRefresh(ctx, s, fmt.Errorf("%w: refreshed id token is for sub %q of %q", ErrRefreshRejected, idt.Subject, idt.Issuer))
		}
		var claims map[string]json.RawMessage
		if err := idt.Claims(&claims); err != nil {
			return keep(err)
		}
		if err := a.setIdentity(ns, idt.Subject, claims); err != nil {
			return a.endRefresh(ctx, s, fmt.Errorf("%w: %w", ErrRefreshRejected, err))
		}
		if ns.IdPSessionID == "" {
			ns.IdPSessionID = s.IdPSessionID // refreshed tokens may omit sid
		}
		ns.IDToken = raw
	}
	if err := a.store.Replace(ctx, ns); err != nil {
		// Logged out meanwhile (ErrNotFound: no session), or the store
		// failed (ErrUnavailable: a 503, never a login).
		return nil, fmt.Errorf("store refreshed session: %w", err)
	}
	a.obs.Refresh("success")
	a.log.Info("session refreshed", "event", "refresh", "result", "success", "sub", ns.Subject, "session", ns.ID.LogID(),
		"access_expiry", ns.AccessExpiry.UTC().Format(time.RFC3339))
	return ns, nil
}

// endRefresh deletes a session whose refresh the provider rejected. When
// the store cannot delete it, the error wraps the store's failure too, so
// the request gets a 503 rather than a login that pretends the session
// is gone.
func (a *Authenticator) endRefresh(ctx context.Context, s *sessions.Session, cause error) (*sessions.Session, error) {
	if err := a.store.Delete(ctx, s.ID); err != nil {
		a.log.Warn("refresh rejected, but the session could not be deleted", "event", "session_end", "reason", "refresh_rejected",
			"sub", s.Subject, "session", s.ID.LogID(), "retrying", errors.Is(err, sessions.ErrRetrying), "err", err)
		a.obs.Refresh("rejected")
		return nil, fmt.Errorf("%w; delete the session: %w", cause, err)
	}
	a.obs.Refresh("rejected")
	a.obs.Logout("refresh_rejected")
	a.log.Info("session ended", "event", "session_end", "reason", "refresh_rejected", "sub", s.Subject, "session", s.ID.LogID(), "err", cause)
	return nil, cause
}
