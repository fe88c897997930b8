package sessions

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// TestRedis_CacheLeaseInStall: a replica whose Redis stalls (SIGSTOP: no
// error, only silence) stops serving its cached sessions within the
// one-second revocation bound, since it cannot hear invalidations; once
// Redis resumes it serves and caches again.
func TestRedis_CacheLeaseInStall(t *testing.T) {
	srv := redistest.Start(t)
	rt := newRedisTest(t, srv.Addr)
	clock := newFakeClock()
	a := rt.newStore(t, clock, rt.storeConfig())
	s := a.create(t, "alice", "")
	if !a.cached(s.ID) {
		t.Fatal("setup: the session is not cached")
	}
	srv.Pause()
	t.Cleanup(srv.Resume)
	paused := time.Now()
	var err error
	var served time.Duration
	redistest.WaitFor(t, "the cached session to stop serving", 3*time.Second, func() bool {
		_, err = a.Get(t.Context(), s.ID)
		if err == nil {
			served = time.Since(paused) // an upper bound
		}
		return err != nil
	})
	if !isUnavailable(err) {
		t.Fatalf("Get(cached) with Redis stalled = %v, want ErrUnavailable", err)
	}
	t.Logf("the cached session served for %v into the stall", served)
	if served > time.Second {
		t.Errorf("the cached session served %v into the stall, past the 1s revocation bound", served)
	}
	srv.Resume()
	redistest.WaitFor(t, "the store to serve again", 10*time.Second, func() bool {
		_, err := a.Get(t.Context(), s.ID)
		return err == nil && a.cached(s.ID)
	})
}
