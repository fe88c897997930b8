package sessions

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// deviceKeyStore is what the device key tests need of a store.
type deviceKeyStore interface {
	Store
	Admin
}

// TestStore_DeviceKey: a session's device key and binding time survive the
// store (the Redis codec too, read by another replica), the admin listing
// says the session is bound, and a Replace without a key (a token refresh
// that read the session before it was bound) never unbinds it.
func TestStore_DeviceKey(t *testing.T) {
	const jwk = `{"crv":"P-256","kty":"EC","x":"x","y":"y"}`
	run := func(t *testing.T, a, b deviceKeyStore, now time.Time) {
		s := &Session{ID: NewID(), Subject: "alice", User: "alice", Created: now, AccessToken: "a1"}
		if err := a.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		stale := s.Clone() // a refresh's copy, from before the binding
		bound := s.Clone()
		bound.DeviceKey, bound.BoundAt = jwk, now.Add(time.Second)
		if err := a.Replace(t.Context(), bound); err != nil {
			t.Fatal(err)
		}
		stale.AccessToken = "a2"
		if err := a.Replace(t.Context(), stale); err != nil {
			t.Fatal(err)
		}
		got, err := b.Get(t.Context(), s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.DeviceKey != jwk || !got.BoundAt.Equal(now.Add(time.Second)) || got.AccessToken != "a2" {
			t.Errorf("stored: key %q bound at %v token %q; want the key kept and the new token", got.DeviceKey, got.BoundAt, got.AccessToken)
		}
		if c := got.Clone(); c.DeviceKey != jwk || !c.BoundAt.Equal(got.BoundAt) {
			t.Errorf("Clone drops the binding: %q %v", c.DeviceKey, c.BoundAt)
		}
		infos, err := b.ListBySubject(t.Context(), "alice")
		if err != nil || len(infos) != 1 || !infos[0].DeviceBound {
			t.Errorf("ListBySubject: %+v %v, want one bound session", infos, err)
		}
	}
	t.Run("memory", func(t *testing.T) {
		ts := newTestStore(t, 10)
		run(t, ts, ts, ts.clock.Now())
	})
	t.Run("redis", func(t *testing.T) {
		redistest.Require(t, redistest.Addr)
		a, b := replicas(t)
		run(t, a, b.withoutCache(t), a.clock.Now())
	})
}
