package auth

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/sessions"
)

// TestRefreshes_BackoffAndSweep: failures back off 10s, 20s, 40s... up to
// 5m; a success holds the refreshed session for the floor; stale entries
// are swept, so the state holds only sessions that refreshed or failed
// lately.
func TestRefreshes_BackoffAndSweep(t *testing.T) {
	var r refreshes
	now := time.Unix(1_000_000, 0)
	s := &sessions.Session{ID: sessions.NewID()}
	var waits []time.Duration
	for range 8 {
		f, started, _ := r.begin(s, now)
		if f == nil || !started {
			t.Fatalf("no refresh started at %v", now)
		}
		if again, _, _ := r.begin(s, now); again != f {
			t.Fatal("a second refresh started while one runs")
		}
		d := r.end(s.ID, now, false, nil)
		waits = append(waits, d)
		if f, _, _ := r.begin(s, now.Add(d-time.Nanosecond)); f != nil {
			t.Fatalf("refresh started within the %v back-off", d)
		}
		now = now.Add(d)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second,
		5 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("back-offs %v, want %v", waits, want)
		}
	}

	ns := s.Clone()
	r.begin(s, now)
	r.end(s.ID, now, true, ns)
	if f, _, fresh := r.begin(s, now.Add(5*time.Second)); f != nil || fresh != ns {
		t.Errorf("within the floor after a success: flight %v, fresh %v; want the refreshed session", f, fresh)
	}

	for range 1000 {
		o := &sessions.Session{ID: sessions.NewID()}
		r.begin(o, now)
		r.end(o.ID, now, false, nil)
	}
	r.begin(&sessions.Session{ID: sessions.NewID()}, now.Add(refreshFloor+refreshBackoffMax+time.Second))
	if n := len(r.m); n != 1 {
		t.Errorf("entries after the back-offs passed: %d, want 1 (the running refresh)", n)
	}
}
