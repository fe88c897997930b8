package sessions

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// schedulingSlack is what a deadline may be late by on a loaded CI machine
// running -race (seen: 700ms on two busy CPUs; 1ms when idle).
const schedulingSlack = time.Second

// TestRedis_Outage kills a redis-server the test owns in the middle of
// the test and starts it again on the same port. While it is down, a Get
// that needs Redis fails with ErrUnavailable within the timeout; cached
// sessions fail closed with stale_for 0 and keep serving for stale_for
// otherwise; the cache is purged. Once it is back the stores recover by
// themselves: new sessions work, old ones are gone (the server kept
// nothing). No goroutine outlives Close.
func TestRedis_Outage(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := redistest.Start(t)
	rt := newRedisTest(t, srv.Addr)
	clock := newFakeClock()
	const staleFor = 5 * time.Second
	strictCfg, staleCfg, writerCfg := rt.storeConfig(), rt.storeConfig(), rt.storeConfig()
	staleCfg.StaleFor = staleFor
	writerCfg.LocalCache = nil
	strict := rt.newStore(t, clock, strictCfg)
	stale := rt.newStore(t, clock, staleCfg)
	writer := rt.newStore(t, clock, writerCfg)

	hot := strict.create(t, "alice", "sid-a")
	if _, err := stale.Get(t.Context(), hot.ID); err != nil {
		t.Fatal(err)
	}
	cold := writer.create(t, "bob", "sid-b") // in no cache
	if !strict.cached(hot.ID) || !stale.cached(hot.ID) || strict.cached(cold.ID) {
		t.Fatal("setup: hot must be cached by both replicas, cold by neither")
	}

	srv.Kill()
	t.Log("redis-server killed")

	// A session in no cache: Redis is needed, and it fails fast.
	start := time.Now()
	_, err := strict.Get(t.Context(), cold.ID)
	took := time.Since(start)
	if !isUnavailable(err) {
		t.Fatalf("Get(uncached) with Redis down: error = %v, want ErrUnavailable", err)
	}
	if took > strict.timeout+schedulingSlack {
		t.Errorf("Get(uncached) took %v, want at most the %v timeout", took, strict.timeout)
	}
	t.Logf("Get(uncached) failed after %v: %v", took, err)
	for name, op := range map[string]func() error{
		"Create":    func() error { return strict.Create(t.Context(), &Session{ID: NewID(), Created: clock.Now()}) },
		"Delete":    func() error { return strict.Delete(t.Context(), cold.ID) },
		"Replace":   func() error { return strict.Replace(t.Context(), &Session{ID: cold.ID}) },
		"DeleteBy*": func() error { _, err := strict.DeleteBySubject(t.Context(), "bob"); return err },
	} {
		if err := op(); !isUnavailable(err) {
			t.Errorf("%s with Redis down: error = %v, want ErrUnavailable", name, err)
		}
	}

	// stale_for 0: cached sessions fail closed once the failure is seen,
	// and the cache is purged.
	lat := redistest.WaitFor(t, "the strict replica to refuse its cached session", 5*time.Second, func() bool {
		_, err := strict.Get(t.Context(), hot.ID)
		return isUnavailable(err)
	})
	t.Logf("strict replica failed closed %v after the kill", lat)
	if n := strict.cache.len(); n != 0 {
		t.Errorf("strict replica's cache holds %d sessions with Redis down, want 0", n)
	}

	// stale_for 5s: cached sessions keep serving until 5s after the
	// failure was first seen (on the store's clock), then fail closed.
	redistest.WaitFor(t, "the stale replica to see the failure", 5*time.Second, func() bool { return !stale.live.Load() })
	if got, err := stale.Get(t.Context(), hot.ID); err != nil || got.ID != hot.ID {
		t.Fatalf("stale replica: Get(cached) with Redis down = %v, %v; want the session", got, err)
	}
	if _, err := stale.Get(t.Context(), cold.ID); !isUnavailable(err) {
		t.Errorf("stale replica: Get(uncached) = %v, want ErrUnavailable", err)
	}
	clock.Advance(staleFor - time.Millisecond)
	if _, err := stale.Get(t.Context(), hot.ID); err != nil {
		t.Errorf("stale replica: Get(cached) 1ms before stale_for ends = %v", err)
	}
	clock.Advance(time.Millisecond)
	if _, err := stale.Get(t.Context(), hot.ID); !isUnavailable(err) {
		t.Errorf("stale replica: Get(cached) once stale_for has passed = %v, want ErrUnavailable", err)
	}
	redistest.WaitFor(t, "the stale replica to purge its cache", 5*time.Second, func() bool { return stale.cache.len() == 0 })

	// Back: the stores recover without a restart.
	srv.Start()
	t.Log("redis-server restarted")
	var fresh *Session
	lat = redistest.WaitFor(t, "a new session to work", 10*time.Second, func() bool {
		fresh = &Session{ID: NewID(), Subject: "carol", Created: clock.Now()}
		return strict.Create(t.Context(), fresh) == nil
	})
	t.Logf("Create worked again %v after the restart", lat)
	for name, ts := range map[string]*redisTestStore{"strict": strict, "stale": stale, "writer": writer} {
		redistest.WaitFor(t, name+" replica to recover", 10*time.Second, func() bool {
			_, err := ts.Get(t.Context(), fresh.ID)
			return err == nil && (ts.cache == nil || ts.live.Load())
		})
		for _, old := range []*Session{hot, cold} {
			if _, err := ts.Get(t.Context(), old.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s replica: Get(session from before the restart) = %v, want ErrNotFound", name, err)
			}
		}
	}
	if _, err := strict.Get(t.Context(), fresh.ID); err != nil || !strict.cached(fresh.ID) {
		t.Errorf("strict replica after recovery: Get = %v, cached %t; want the session, cached", err, strict.cached(fresh.ID))
	}

	for _, ts := range []*redisTestStore{strict, stale, writer} {
		if err := ts.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	rt.admin.Close()
	checkNoGoroutineLeak(t, base)
}

// TestRedis_Timeout points a store at a server that accepts connections
// but never answers: every call returns ErrUnavailable within the timeout.
func TestRedis_Timeout(t *testing.T) {
	base := runtime.NumGoroutine()
	ln := newSilentServer(t)
	rt := &redisTest{addr: ln, prefix: "gatehouse-test-silent:"}
	cfg := rt.storeConfig()
	cfg.LocalCache = nil
	ts := rt.newStore(t, newFakeClock(), cfg)
	for name, op := range map[string]func() error{
		"Get":    func() error { _, err := ts.Get(t.Context(), NewID()); return err },
		"Create": func() error { return ts.Create(t.Context(), &Session{ID: NewID(), Created: t0}) },
		"Delete": func() error { return ts.Delete(t.Context(), NewID()) },
	} {
		start := time.Now()
		err := op()
		took := time.Since(start)
		if !isUnavailable(err) {
			t.Errorf("%s against a silent server: error = %v, want ErrUnavailable", name, err)
		}
		if took > ts.timeout+schedulingSlack {
			t.Errorf("%s took %v, want about the %v timeout", name, took, ts.timeout)
		}
		t.Logf("%s gave up after %v", name, took)
	}
	if n := ts.Len(); n != 0 {
		t.Errorf("Len against a silent server = %d, want 0", n)
	}
	ts.Close()
	checkNoGoroutineLeak(t, base+1) // the silent server's accept loop
}
