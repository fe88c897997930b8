package sessions

import (
	"testing"
	"time"
)

// TestAuthTime_Kept checks that the time of the last sign-in at the
// provider survives the Redis codec and Clone, and that a value stored
// without it (an earlier version) opens with it unknown (zero), which
// step-up routes treat as too old.
func TestAuthTime_Kept(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	s := &Session{ID: NewID(), Subject: "alice", Created: at.Add(time.Minute), AuthTime: at}
	d := lookupDigest(s.ID)
	raw, err := sealValue(d, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := openValue(s.ID, d, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AuthTime.Equal(at) {
		t.Errorf("redis codec: AuthTime = %v, want %v", got.AuthTime, at)
	}
	if c := s.Clone(); !c.AuthTime.Equal(at) {
		t.Errorf("Clone: AuthTime = %v, want %v", c.AuthTime, at)
	}

	old := &Session{ID: NewID(), Subject: "bob", Created: at}
	d = lookupDigest(old.ID)
	raw, err = sealValue(d, old, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = openValue(old.ID, d, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AuthTime.IsZero() {
		t.Errorf("a session stored without auth_time opens with %v, want zero (unknown)", got.AuthTime)
	}
}
