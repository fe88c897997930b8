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
// revoked). The session has been deleted; the request is unauthenticated
// (Refresh returns it with the kind ErrNoSession).
var ErrRefreshRejected = errors.New("identity provider rejected the token refresh")

// ErrRefreshFailed means a session's access token expired while the
// identity provider could not refresh it (down, 5xx, invalid_request...).
// The session has been deleted; the request is unauthenticated (kind
// ErrNoSession) and the user signs in again.
var ErrRefreshFailed = errors.New("access token expired and the identity provider could not refresh it")

// Refresh timing. When tokens are issued (setTokenTimes) gatehouse
// chooses when to refresh them: session.refresh_before before they
// expire, or after half their lifetime when that comes later, and never
// sooner than refreshFloor. Whatever the provider's token lifetime, a
// session is thus refreshed at most once per refreshFloor, and one
// refresh per session runs at a time on a replica. A failed refresh is
// retried after a back-off doubling from refreshFloor to
// refreshBackoffMax; meanwhile the session serves with its current
// tokens until they expire, then ends (ErrRefreshFailed).
const (
	refreshFloor      = 10 * time.Second
	refreshBackoffMax = 5 * time.Minute
	// maxTokenLifetime caps the lifetime a provider may claim for its
	// tokens: a longer one is a unit slip (expires_in in milliseconds) or
	// a token nobody should keep, and is logged and clamped.
	maxTokenLifetime = 24 * time.Hour
	// refreshTimeout bounds one refresh, whatever the request that
	// triggered it does meanwhile.
	refreshTimeout = 15 * time.Second
)

// setTokenTimes sets s.AccessExpiry and s.RefreshAt from a token
// response, on gatehouse's clock: now plus expires_in, rather than
// x/oauth2's Expiry, which it computes from the wall clock. Both stay
// zero when the provider gave no lifetime (no refresh then). A lifetime
// beyond maxTokenLifetime is clamped and logged: once per token issue
// (login or refresh), never per request.
func (a *Authenticator) setTokenTimes(s *sessions.Session, tok *oauth2.Token) {
	now := a.now()
	s.AccessExpiry, s.RefreshAt = time.Time{}, time.Time{}
	var life time.Duration
	switch {
	case tok.ExpiresIn > int64(maxTokenLifetime/time.Second):
		life = maxTokenLifetime + time.Second // clamped below; seconds this large overflow a Duration
	case tok.ExpiresIn > 0:
		life = time.Duration(tok.ExpiresIn) * time.Second
	case !tok.Expiry.IsZero():
		life = max(time.Until(tok.Expiry), 0)
	default:
		return
	}
	if life > maxTokenLifetime {
		a.log.Warn("identity provider issued tokens with an implausible lifetime; gatehouse treats them as expiring sooner (check that the provider sends expires_in in seconds)",
			"event", "token_lifetime_clamped", "sub", s.Subject, "session", s.ID.LogID(), "expires_in", tok.ExpiresIn, "clamped_to", maxTokenLifetime)
		life = maxTokenLifetime
	}
	s.AccessExpiry = now.Add(life)
	s.RefreshAt = s.AccessExpiry.Add(-min(a.cfg.Session.RefreshBefore, life/2))
	if floor := now.Add(refreshFloor); s.RefreshAt.Before(floor) {
		s.RefreshAt = floor
	}
}

// refreshAt is when s is due for a refresh.
func (a *Authenticator) refreshAt(s *sessions.Session) time.Time {
	if !s.RefreshAt.IsZero() {
		return s.RefreshAt
	}
	return s.AccessExpiry.Add(-a.cfg.Session.RefreshBefore) // stored by an earlier version
}

// refreshes is one replica's refresh state per session, shared by the
// authenticators of successive configurations: the refresh in flight, the
// back-off after failures, and for refreshFloor after a success the
// refreshed session (a request that read the old one from the store just
// before uses it instead of refreshing again). Entries are swept once
// they are stale, so it holds only sessions that refreshed or failed
// within refreshBackoffMax. Nothing of it is on the path of a session
// that is not due.
type refreshes struct {
	mu    sync.Mutex
	m     map[sessions.ID]*refreshState
	swept time.Time
}

type refreshState struct {
	flight   *flight // nil when no refresh runs
	failures int     // consecutive failed attempts
	next     time.Time
	fresh    *sessions.Session // the refreshed session, until next
}

type flight struct {
	done chan struct{}
	s    *sessions.Session
	err  error
}

// begin returns the refresh of s to wait for, starting one (started)
// unless a back-off or a recent success says not yet; then it returns
// nil, and the refreshed session when there is one.
func (r *refreshes) begin(s *sessions.Session, now time.Time) (f *flight, started bool, fresh *sessions.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[sessions.ID]*refreshState{}
	}
	r.sweep(now)
	st := r.m[s.ID]
	switch {
	case st == nil:
		st = &refreshState{}
		r.m[s.ID] = st
	case st.flight != nil:
		return st.flight, false, nil
	case now.Before(st.next):
		return nil, false, st.fresh
	}
	st.fresh = nil
	st.flight = &flight{done: make(chan struct{})}
	return st.flight, true, nil
}

// end records the outcome of a refresh: ok, with the refreshed session
// (nil when the session ended), or a failure to back off from.
func (r *refreshes) end(id sessions.ID, now time.Time, ok bool, fresh *sessions.Session) (retryIn time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.m[id]
	if st == nil {
		return 0
	}
	st.flight = nil
	switch {
	case ok && fresh == nil:
		delete(r.m, id)
	case ok:
		st.failures, st.fresh, st.next = 0, fresh, now.Add(refreshFloor)
	default:
		st.failures++
		retryIn = min(refreshFloor<<min(st.failures-1, 16), refreshBackoffMax)
		st.next = now.Add(retryIn)
	}
	return retryIn
}

// sweep drops entries that no longer hold anything: no refresh running,
// and their back-off (or recent success) long past. It runs at most once
// per refreshFloor.
func (r *refreshes) sweep(now time.Time) {
	if now.Sub(r.swept) < refreshFloor {
		return
	}
	r.swept = now
	for id, st := range r.m {
		if st.flight == nil && now.After(st.next.Add(refreshBackoffMax)) {
			delete(r.m, id)
		}
	}
}

// Refresh returns the session a request should use: s itself, or, when s
// holds a refresh token and is due (its RefreshAt passed), s with fresh
// tokens and claims. It refreshes once per session even under concurrent
// requests, and at most once per refreshFloor. A refresh never extends
// the session's limits.
//
// It returns ErrRefreshRejected (and has deleted the session) when the
// provider answers invalid_grant. When the provider cannot refresh (down,
// 5xx, invalid_request...) the old session keeps serving until its
// access token expires, the failure is logged, and the next attempt
// waits a back-off; once the token has expired and no refresh succeeded,
// it returns ErrRefreshFailed (and has deleted the session).
func (a *Authenticator) Refresh(ctx context.Context, s *sessions.Session) (*sessions.Session, error) {
	if s.RefreshToken == "" || s.AccessExpiry.IsZero() {
		return s, nil
	}
	now := a.now()
	if now.Before(a.refreshAt(s)) {
		return s, nil
	}
	f, started, fresh := a.refreshes.begin(s, now)
	if f == nil {
		switch {
		case fresh != nil:
			return fresh, nil
		case now.Before(s.AccessExpiry):
			return s, nil // backing off after a failure
		}
		return a.endRefresh(ctx, s, "refresh_failed", ErrRefreshFailed)
	}
	if started {
		go func() {
			// Detached from the request: one client going away must not
			// fail the refresh the others wait for.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
			defer cancel()
			f.s, f.err = a.refresh(rctx, s)
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
		a.obs.Refresh("error")
		now := a.now()
		if !now.Before(s.AccessExpiry) {
			return a.endRefresh(ctx, s, "refresh_failed", fmt.Errorf("%w: %w", ErrRefreshFailed, err))
		}
		retry := a.refreshes.end(s.ID, now, false, nil)
		a.log.Warn("token refresh failed; the session keeps its current tokens until they expire", "event", "refresh", "result", "error",
			"sub", s.Subject, "session", s.ID.LogID(), "retry_in", retry, "access_expiry", s.AccessExpiry.UTC().Format(time.RFC3339), "err", err)
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
			return a.endRefresh(ctx, s, "refresh_rejected", fmt.Errorf("%w: %s", ErrRefreshRejected, re.ErrorCode))
		}
		if errors.As(err, &re) {
			err = retrieveError(re)
		}
		return keep(fmt.Errorf("refresh tokens: %w", err))
	}
	ns := s.Clone()
	ns.AccessToken = tok.AccessToken
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
			return a.endRefresh(ctx, s, "refresh_rejected", fmt.Errorf("%w: refreshed id token is for sub %q of %q", ErrRefreshRejected, idt.Subject, idt.Issuer))
		}
		var claims map[string]json.RawMessage
		if err := idt.Claims(&claims); err != nil {
			return keep(err)
		}
		if err := a.setIdentity(ns, idt.Subject, claims); err != nil {
			return a.endRefresh(ctx, s, "refresh_rejected", fmt.Errorf("%w: %w", ErrRefreshRejected, err))
		}
		if ns.IdPSessionID == "" {
			ns.IdPSessionID = s.IdPSessionID // refreshed tokens may omit sid
		}
		ns.IDToken = raw
	}
	a.setTokenTimes(ns, tok)
	if err := a.store.Replace(ctx, ns); err != nil {
		// Logged out meanwhile (ErrNotFound: no session), or the store
		// failed (ErrUnavailable: a 503, never a login).
		a.refreshes.end(s.ID, a.now(), true, nil)
		err = fmt.Errorf("store refreshed session: %w", err)
		if isNotThere(err) {
			err = noSession(err)
		}
		return nil, err
	}
	a.refreshes.end(s.ID, a.now(), true, ns)
	a.obs.Refresh("success")
	a.log.Info("session refreshed", "event", "refresh", "result", "success", "sub", ns.Subject, "session", ns.ID.LogID(),
		"access_expiry", ns.AccessExpiry.UTC().Format(time.RFC3339))
	return ns, nil
}

// endRefresh deletes a session whose refresh the provider rejected
// (reason refresh_rejected) or whose tokens expired while no refresh
// succeeded (refresh_failed). When the store cannot delete it, the error
// wraps the store's failure too, so the request gets a 503 rather than a
// login that pretends the session is gone.
func (a *Authenticator) endRefresh(ctx context.Context, s *sessions.Session, reason string, cause error) (*sessions.Session, error) {
	a.refreshes.end(s.ID, a.now(), true, nil)
	if err := a.store.Delete(ctx, s.ID); err != nil {
		a.log.Warn("the session's refresh ended it, but it could not be deleted", "event", "session_end", "reason", reason,
			"sub", s.Subject, "session", s.ID.LogID(), "retrying", errors.Is(err, sessions.ErrRetrying), "err", err)
		if reason == "refresh_rejected" {
			a.obs.Refresh("rejected")
		}
		// Still no session, unless the store could not answer: then
		// the session is not known to be gone (noSession keeps that kind).
		return nil, noSession(fmt.Errorf("%w; delete the session: %w", cause, err))
	}
	if reason == "refresh_rejected" {
		a.obs.Refresh("rejected")
	}
	a.obs.Logout(reason)
	a.log.Info("session ended", "event", "session_end", "reason", reason, "sub", s.Subject, "session", s.ID.LogID(), "err", cause)
	return nil, noSession(cause)
}
