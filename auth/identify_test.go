package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/sessions"
)

// faultyStore is a real memory store whose Get or Delete can be made to
// fail as an unreachable Redis does (sessions.ErrUnavailable).
type faultyStore struct {
	sessions.Store
	getDown, deleteDown bool
}

func (f *faultyStore) Get(ctx context.Context, id sessions.ID) (*sessions.Session, error) {
	if f.getDown {
		return nil, fmt.Errorf("get session: %w", sessions.ErrUnavailable)
	}
	return f.Store.Get(ctx, id)
}

func (f *faultyStore) Delete(ctx context.Context, id sessions.ID) error {
	if f.deleteDown {
		return fmt.Errorf("delete session: %w", sessions.ErrUnavailable)
	}
	return f.Store.Delete(ctx, id)
}

// TestIdentify_ErrorKinds: every error of Identify is of exactly one
// kind, tested positively. A request without a session (no cookie, a
// session gone, one a failed refresh ended) is of kind ErrNoSession and
// keeps its cause; a store that cannot answer, even while ending a
// session whose refresh failed, is sessions.ErrUnavailable and never
// ErrNoSession, so nobody is sent to the login while their session may
// be live.
func TestIdentify_ErrorKinds(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		// setup returns the request's session (nil: no cookie) after
		// arranging the store.
		setup     func(t *testing.T, a *Authenticator, st *faultyStore) *sessions.Session
		noSession bool
		down      bool
		cause     error // also in the chain, when set
	}{
		{name: "no cookie", noSession: true,
			setup: func(*testing.T, *Authenticator, *faultyStore) *sessions.Session { return nil }},
		{name: "session gone", noSession: true, cause: sessions.ErrNotFound,
			setup: func(t *testing.T, a *Authenticator, st *faultyStore) *sessions.Session {
				return &sessions.Session{ID: sessions.NewID()} // never stored
			}},
		{name: "store down", down: true,
			setup: func(t *testing.T, a *Authenticator, st *faultyStore) *sessions.Session {
				s := stored(t, st, now)
				st.getDown = true
				return s
			}},
		{name: "refresh failed, session ended", noSession: true, cause: ErrRefreshFailed,
			setup: func(t *testing.T, a *Authenticator, st *faultyStore) *sessions.Session {
				return expiredTokens(t, a, st, now)
			}},
		{name: "refresh failed, store down while ending it", down: true, cause: ErrRefreshFailed,
			setup: func(t *testing.T, a *Authenticator, st *faultyStore) *sessions.Session {
				s := expiredTokens(t, a, st, now)
				st.deleteDown = true
				return s
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAuth(t, "https://app.example.com", "")
			st := &faultyStore{Store: a.store}
			a.store = st
			a.now = func() time.Time { return now }
			r := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
			if s := tc.setup(t, a, st); s != nil {
				c, err := a.SessionCookie(s.ID)
				if err != nil {
					t.Fatal(err)
				}
				r.AddCookie(c)
			}
			s, err := a.Identify(r)
			if s != nil || err == nil {
				t.Fatalf("Identify = %v, %v; want no session and an error", s, err)
			}
			if got := errors.Is(err, ErrNoSession); got != tc.noSession {
				t.Errorf("errors.Is(%q, ErrNoSession) = %v, want %v", err, got, tc.noSession)
			}
			if got := IsNoSession(err); got != tc.noSession {
				t.Errorf("IsNoSession(%q) = %v, want %v", err, got, tc.noSession)
			}
			if got := errors.Is(err, sessions.ErrUnavailable); got != tc.down {
				t.Errorf("errors.Is(%q, sessions.ErrUnavailable) = %v, want %v", err, got, tc.down)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("error %q lost its cause %q", err, tc.cause)
			}
		})
	}
}

// stored creates a live session in the store.
func stored(t *testing.T, st sessions.Store, now time.Time) *sessions.Session {
	t.Helper()
	s := &sessions.Session{ID: sessions.NewID(), Subject: "alice", Created: time.Now()}
	if err := st.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// expiredTokens stores a session whose access token expired while its
// refresh backs off after a failure: the next request ends it.
func expiredTokens(t *testing.T, a *Authenticator, st sessions.Store, now time.Time) *sessions.Session {
	t.Helper()
	s := stored(t, st, now)
	s.RefreshToken, s.AccessExpiry, s.RefreshAt = "rt", now.Add(-time.Second), now.Add(-time.Minute)
	if f, started, _ := a.refreshes.begin(s, now); f == nil || !started {
		t.Fatal("no refresh to fail")
	}
	a.refreshes.end(s.ID, now, false, nil)
	return s
}
