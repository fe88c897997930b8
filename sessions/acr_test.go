package sessions

import (
	"testing"
	"time"
)

// TestACRAndNewDevice_Kept checks that the acr of the login and the
// pending new-device notice survive the Redis codec and Clone, and that a
// value stored without them (an earlier version) opens with no acr and no
// notice pending.
func TestACRAndNewDevice_Kept(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	roundTrip := func(t *testing.T, s *Session) *Session {
		t.Helper()
		d := lookupDigest(s.ID)
		raw, err := sealValue(d, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := openValue(s.ID, d, raw)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	s := &Session{ID: NewID(), Subject: "alice", Created: at, ACR: "mfa", NewDevice: true}
	if got := roundTrip(t, s); got.ACR != "mfa" || !got.NewDevice {
		t.Errorf("redis codec: ACR %q NewDevice %v, want mfa true", got.ACR, got.NewDevice)
	}
	if c := s.Clone(); c.ACR != "mfa" || !c.NewDevice {
		t.Errorf("Clone: ACR %q NewDevice %v, want mfa true", c.ACR, c.NewDevice)
	}
	old := &Session{ID: NewID(), Subject: "bob", Created: at}
	if got := roundTrip(t, old); got.ACR != "" || got.NewDevice {
		t.Errorf("a session stored without them opens with ACR %q NewDevice %v, want empty and false", got.ACR, got.NewDevice)
	}
}
