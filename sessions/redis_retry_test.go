package sessions

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// retryLog records what a store says about its retried revocations: the
// log and the outcomes it reports for the metric.
type retryLog struct {
	mu       sync.Mutex
	logs     strings.Builder
	outcomes map[string]int
}

func (l *retryLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logs.Write(p)
}

func (l *retryLog) outcome(o string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.outcomes == nil {
		l.outcomes = map[string]int{}
	}
	l.outcomes[o]++
}

func (l *retryLog) count(o string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outcomes[o]
}

func (l *retryLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logs.String()
}

// newRetryStore is a store on rt without a local cache or Run: only its
// revocations and their retries are under test. It is closed when the
// test ends, if the test has not closed it.
func newRetryStore(t *testing.T, rt *redisTest, clock *fakeClock) (*Redis, *retryLog) {
	t.Helper()
	cfg := rt.storeConfig()
	cfg.LocalCache = nil
	client, err := newRedisClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rl := &retryLog{}
	r, err := NewRedis(client, cfg, Options{
		IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute, TouchInterval: testTouch, Now: clock.Now,
		Logger:            slog.New(slog.NewJSONHandler(rl, nil)),
		OnRevocationRetry: rl.outcome,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, rl
}

// TestRedis_RevocationRetried: a Delete while Redis is down fails with
// ErrUnavailable and ErrRetrying, logs a WARN, and once Redis is back
// (restarted with its data, so the session is there again) the store
// deletes the session by itself, logs it and reports "success".
// Deleting the same session again while the first waits queues nothing
// more.
func TestRedis_RevocationRetried(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := redistest.Start(t)
	rt := newRedisTest(t, srv.Addr)
	clock := newFakeClock()
	r, rl := newRetryStore(t, rt, clock)
	s := &Session{ID: NewID(), Subject: "alice", IdPSessionID: "sid-a", Created: clock.Now()}
	if err := r.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	srv.Save()
	srv.Kill()

	for range 2 {
		err := r.Delete(t.Context(), s.ID)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrRetrying) {
			t.Fatalf("Delete with Redis down = %v, want ErrUnavailable and ErrRetrying", err)
		}
	}
	if n := pendingRetries(r); n != 1 {
		t.Errorf("%d revocations pending after two Deletes of one session, want 1", n)
	}
	if !hasLine(rl.String(), `"level":"WARN"`, "revocation failed; retrying in the background", `"op":"delete session"`) {
		t.Errorf("no WARN for the queued retry:\n%s", rl.String())
	}

	redistest.WaitFor(t, "a retry to fail while Redis is down", 5*time.Second, func() bool { return rl.count(RetryError) > 0 })
	srv.Start() // with the session, as saved
	key := r.sessionKey(lookupDigest(s.ID))
	lat := redistest.WaitFor(t, "the retry to delete the session", 15*time.Second, func() bool {
		n, err := rt.admin.Exists(t.Context(), key).Result()
		return err == nil && n == 0
	})
	t.Logf("the retry deleted the session %v after the restart", lat)
	redistest.WaitFor(t, "the retry to report success", 5*time.Second, func() bool { return rl.count(RetrySuccess) == 1 })
	if !hasLine(rl.String(), `"level":"INFO"`, "revocation done after retrying", `"sessions":1`) {
		t.Errorf("no INFO line for the retried revocation:\n%s", rl.String())
	}
	if _, err := r.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after the retried Delete = %v, want ErrNotFound", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rt.admin.Close()
	checkNoGoroutineLeak(t, base)
}

// TestRedis_RevocationRetryBounds: retries stop after their time bound
// with an ERROR and "gave_up"; a full queue refuses more ("dropped", and
// no ErrRetrying, so nobody is told it is being retried); and Close ends
// the worker, reporting what was left ("abandoned"), with no goroutine
// left behind.
func TestRedis_RevocationRetryBounds(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := redistest.Start(t)
	rt := newRedisTest(t, srv.Addr)
	clock := newFakeClock()
	r, rl := newRetryStore(t, rt, clock)
	srv.Kill()

	t.Run("gives up", func(t *testing.T) {
		r.retries.mu.Lock()
		r.retries.maxFor, r.retries.minBackoff, r.retries.maxBackoff = 300*time.Millisecond, 20*time.Millisecond, 50*time.Millisecond
		r.retries.mu.Unlock()
		if err := r.Delete(t.Context(), NewID()); !errors.Is(err, ErrRetrying) {
			t.Fatalf("Delete with Redis down = %v, want ErrRetrying", err)
		}
		lat := redistest.WaitFor(t, "the retry to give up", 5*time.Second, func() bool { return rl.count(RetryGaveUp) == 1 })
		t.Logf("gave up %v after the first failure", lat)
		if !hasLine(rl.String(), `"level":"ERROR"`, "revocation abandoned after retrying", `"outcome":"gave_up"`) {
			t.Errorf("no ERROR line when giving up:\n%s", rl.String())
		}
		if n := pendingRetries(r); n != 0 {
			t.Errorf("%d revocations pending after giving up, want 0", n)
		}
	})

	t.Run("bounded queue", func(t *testing.T) {
		r.retries.mu.Lock()
		r.retries.max, r.retries.maxFor = 2, time.Hour
		r.retries.mu.Unlock()
		for i := range 3 {
			_, err := r.DeleteBySubject(t.Context(), "user-"+string(rune('a'+i)))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("DeleteBySubject %d with Redis down = %v, want ErrUnavailable", i, err)
			}
			if queued := errors.Is(err, ErrRetrying); queued != (i < 2) {
				t.Errorf("DeleteBySubject %d: ErrRetrying %t, want %t (queue of 2)", i, queued, i < 2)
			}
		}
		if rl.count(RetryDropped) != 1 || !hasLine(rl.String(), `"level":"ERROR"`, `"outcome":"dropped"`, "the retry queue is full") {
			t.Errorf("dropped %d, want 1 with an ERROR line:\n%s", rl.count(RetryDropped), rl.String())
		}
	})

	t.Run("close abandons", func(t *testing.T) {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if n := rl.count(RetryAbandoned); n != 2 {
			t.Errorf("abandoned %d revocations at Close, want 2", n)
		}
		if err := r.Delete(context.Background(), NewID()); errors.Is(err, ErrRetrying) {
			t.Errorf("Delete after Close = %v: a closed store retries nothing", err)
		}
	})
	rt.admin.Close()
	checkNoGoroutineLeak(t, base)
}

// pendingRetries is how many revocations wait in r's retry queue.
func pendingRetries(r *Redis) int {
	r.retries.mu.Lock()
	defer r.retries.mu.Unlock()
	return len(r.retries.pending)
}
