package sessions

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

const testLoginTTL = 10 * time.Minute

// consume calls ConsumeState and fails the test on an error.
func consume(t *testing.T, s Store, state string) bool {
	t.Helper()
	first, err := s.ConsumeState(t.Context(), state, testLoginTTL)
	if err != nil {
		t.Fatalf("ConsumeState(%q): %v", state, err)
	}
	return first
}

func TestMemory_ConsumeStateOnce(t *testing.T) {
	ts := newTestStore(t, 10)
	if !consume(t, ts, "state-a") {
		t.Fatal("first use of state-a: not first")
	}
	for i := range 3 {
		if consume(t, ts, "state-a") {
			t.Fatalf("use %d of state-a: first again, want a replay", i+2)
		}
	}
	if !consume(t, ts, "state-b") {
		t.Error("another state was refused")
	}
	ts.clock.Advance(testLoginTTL - time.Second)
	if consume(t, ts, "state-a") {
		t.Error("state-a first again before its ttl passed")
	}
	ts.clock.Advance(time.Second)
	if !consume(t, ts, "state-a") {
		t.Error("state-a still recorded after its ttl: the set would only grow")
	}
	for _, tc := range []struct {
		state string
		ttl   time.Duration
	}{{"", time.Minute}, {"x", 0}, {"x", -time.Second}} {
		if _, err := ts.ConsumeState(t.Context(), tc.state, tc.ttl); err == nil {
			t.Errorf("ConsumeState(%q, %s): no error", tc.state, tc.ttl)
		}
	}
}

// TestMemory_ConsumeStateBounded: the used-state set has its own bound.
// Full of live entries it refuses (ErrTooManyLogins) rather than forget a
// used state; expired entries make room; and however many states are
// consumed, no session is evicted (design invariant 1).
func TestMemory_ConsumeStateBounded(t *testing.T) {
	clock := newFakeClock()
	m, err := NewMemory(2, Options{IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute, Now: clock.Now, MaxUsedStates: 100})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testStore{Memory: m, clock: clock, ends: &endLog{}}
	alice, bob := ts.create(t, "alice", ""), ts.create(t, "bob", "")
	for i := range 100 {
		if !consume(t, m, fmt.Sprint("s", i)) {
			t.Fatalf("state %d not first", i)
		}
		clock.Advance(time.Second)
	}
	if _, err := m.ConsumeState(t.Context(), "one-too-many", testLoginTTL); !errors.Is(err, ErrTooManyLogins) {
		t.Fatalf("full set: err %v, want ErrTooManyLogins", err)
	}
	if consume(t, m, "s0") {
		t.Error("a full set forgot a used state")
	}
	for _, s := range []*Session{alice, bob} {
		if _, err := m.Get(t.Context(), s.ID); err != nil {
			t.Errorf("session of %s after 100 used states: %v", s.Subject, err)
		}
	}
	if m.Len() != 2 {
		t.Errorf("store holds %d sessions, want 2", m.Len())
	}
	// s<i> was used at second i and expires at second i+600; the clock
	// is at second 100, so at second 609 exactly s0..s9 have expired.
	clock.Advance(testLoginTTL - 91*time.Second)
	for i := range 10 {
		if !consume(t, m, fmt.Sprint("new", i)) {
			t.Fatalf("new state %d refused after old ones expired", i)
		}
	}
	if _, err := m.ConsumeState(t.Context(), "new10", testLoginTTL); !errors.Is(err, ErrTooManyLogins) {
		t.Errorf("full again: err %v, want ErrTooManyLogins", err)
	}
	if consume(t, m, "s10") {
		t.Error("s10 (not expired) forgotten")
	}
	if n := m.UsedStates(); n != 100 {
		t.Errorf("%d used states kept, want 100", n)
	}
	// The queue does not grow without bound either.
	for i := range 5000 {
		clock.Advance(testLoginTTL / 50)
		consume(t, m, fmt.Sprint("churn", i))
	}
	if n := len(m.states.queue); n > 2*100 {
		t.Errorf("queue holds %d entries for at most 100 live ones", n)
	}
}

func TestMemory_ConsumeStateConcurrent(t *testing.T) {
	ts := newTestStore(t, 10)
	for round := range 20 {
		var firsts atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if ok, err := ts.ConsumeState(t.Context(), fmt.Sprint("race", round), testLoginTTL); err == nil && ok {
					firsts.Add(1)
				}
			})
		}
		wg.Wait()
		if n := firsts.Load(); n != 1 {
			t.Fatalf("round %d: %d goroutines were first, want exactly 1", round, n)
		}
	}
}

func TestRedis_ConsumeStateOnceAcrossReplicas(t *testing.T) {
	a, b := replicas(t)
	state := "s3cret-state-value"
	if !consume(t, a, state) {
		t.Fatal("first use on A: not first")
	}
	if consume(t, b, state) {
		t.Error("replay on B: first, want a replay")
	}
	if consume(t, a, state) {
		t.Error("replay on A: first, want a replay")
	}
	keys := a.rt.keys(t)
	if len(keys) != 1 || keys[0] != a.stateKey(state) || !strings.HasPrefix(keys[0], a.rt.prefix+"state:") {
		t.Fatalf("keys %q, want only %s", keys, a.stateKey(state))
	}
	if strings.Contains(keys[0], state) {
		t.Errorf("key %q holds the raw state", keys[0])
	}
	if v, err := a.rt.admin.Get(t.Context(), keys[0]).Result(); err != nil || v != "1" {
		t.Errorf("value %q (%v), want 1", v, err)
	}
	pttl, err := a.rt.admin.PTTL(t.Context(), keys[0]).Result()
	if err != nil || pttl <= testLoginTTL-time.Minute || pttl > testLoginTTL {
		t.Errorf("PTTL %s (%v), want just under %s", pttl, err, testLoginTTL)
	}
	if n := a.Len(); n != 0 {
		t.Errorf("Len counts %d sessions: the state key is not a session", n)
	}

	// Two replicas racing on one state: exactly one is first.
	for round := range 10 {
		var firsts atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			st := a
			if i%2 == 1 {
				st = b
			}
			wg.Go(func() {
				if ok, err := st.ConsumeState(t.Context(), fmt.Sprint("race", round), testLoginTTL); err == nil && ok {
					firsts.Add(1)
				}
			})
		}
		wg.Wait()
		if n := firsts.Load(); n != 1 {
			t.Fatalf("round %d: %d callers were first, want exactly 1", round, n)
		}
	}
}

// TestRedis_ConsumeStateFailsClosed: a Redis that does not answer is an
// error wrapping ErrUnavailable, never "first".
func TestRedis_ConsumeStateFailsClosed(t *testing.T) {
	redistest.Require(t, redistest.Addr)
	rt := newRedisTest(t, redistest.Addr)
	cfg := rt.storeConfig()
	cfg.URL = "redis://" + newSilentServer(t) + "/0"
	cfg.LocalCache = nil
	cfg.Timeout = 100 * time.Millisecond
	ts := rt.newStore(t, newFakeClock(), cfg)
	first, err := ts.ConsumeState(t.Context(), "state", testLoginTTL)
	if first || !isUnavailable(err) {
		t.Fatalf("silent Redis: first %v, err %v; want false and ErrUnavailable", first, err)
	}
	closed := rt.newStore(t, newFakeClock(), rt.storeConfig())
	_ = closed.Close()
	if first, err := closed.ConsumeState(t.Context(), "state", testLoginTTL); first || !isUnavailable(err) {
		t.Fatalf("closed store: first %v, err %v; want false and ErrUnavailable", first, err)
	}
}

// TestStores_DeleteByIdPSessionOfSubject: a back-channel logout naming a
// sid and a sub ends only the sessions that have both.
func TestStores_DeleteByIdPSessionOfSubject(t *testing.T) {
	run := func(t *testing.T, st Store, create func(sub, sid string) *Session) {
		alice, bob, bob2 := create("alice", "sid-a"), create("bob", "sid-b"), create("bob", "sid-b")
		if n, err := st.DeleteByIdPSessionOfSubject(t.Context(), "sid-b", "alice"); n != 0 || err != nil {
			t.Fatalf("sid of bob, sub of alice: deleted %d (%v), want 0", n, err)
		}
		for _, s := range []*Session{alice, bob, bob2} {
			if _, err := st.Get(t.Context(), s.ID); err != nil {
				t.Fatalf("session of %s (%s) gone: %v", s.Subject, s.IdPSessionID, err)
			}
		}
		for _, args := range [][2]string{{"sid-b", ""}, {"", "bob"}, {"sid-x", "bob"}} {
			if n, err := st.DeleteByIdPSessionOfSubject(t.Context(), args[0], args[1]); n != 0 || err != nil {
				t.Errorf("%q: deleted %d (%v), want 0", args, n, err)
			}
		}
		if n, err := st.DeleteByIdPSessionOfSubject(t.Context(), "sid-b", "bob"); n != 2 || err != nil {
			t.Fatalf("sid and sub of bob: deleted %d (%v), want 2", n, err)
		}
		for _, s := range []*Session{bob, bob2} {
			if _, err := st.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("bob's session after the logout: %v, want ErrNotFound", err)
			}
		}
		if _, err := st.Get(t.Context(), alice.ID); err != nil {
			t.Errorf("alice's session: %v", err)
		}
		// The indexes forgot bob's sessions.
		if n, err := st.DeleteBySubject(t.Context(), "bob"); n != 0 || err != nil {
			t.Errorf("DeleteBySubject(bob) afterwards: %d (%v), want 0", n, err)
		}
	}
	t.Run("memory", func(t *testing.T) {
		ts := newTestStore(t, 10)
		run(t, ts, func(sub, sid string) *Session { return ts.create(t, sub, sid) })
		checkIndexes(t, ts.Memory)
	})
	t.Run("redis", func(t *testing.T) {
		a, b := replicas(t)
		run(t, a, func(sub, sid string) *Session { return a.create(t, sub, sid) })
		// A session B has cached is dropped there too.
		s := a.create(t, "carol", "sid-c")
		// (An invalidation still on its way from the deletions above may
		// keep B from caching at the first read.)
		redistest.WaitFor(t, "B to cache carol's session", 5*time.Second, func() bool {
			_, err := b.Get(t.Context(), s.ID)
			return err == nil && b.cached(s.ID)
		})
		if n, err := a.DeleteByIdPSessionOfSubject(t.Context(), "sid-c", "carol"); n != 1 || err != nil {
			t.Fatalf("carol: %d (%v)", n, err)
		}
		redistest.WaitFor(t, "B to drop carol's session", 5*time.Second, func() bool { return !b.cached(s.ID) })
		if _, err := b.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("carol on B: %v, want ErrNotFound", err)
		}
	})
}

// BenchmarkMemory_BytesPerUsedState fills the used-state set to
// DefaultMaxUsedStates and reports the heap each entry costs. Run it
// alone:
//
//	go test ./sessions -run=^$ -bench=BytesPerUsedState -benchtime=1x
func BenchmarkMemory_BytesPerUsedState(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := NewMemory(1, Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		for i := range DefaultMaxUsedStates {
			if ok, err := m.ConsumeState(b.Context(), fmt.Sprintf("state-%d-%s", i, strings.Repeat("x", 30)), testLoginTTL); !ok || err != nil {
				b.Fatalf("state %d: %v %v", i, ok, err)
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/DefaultMaxUsedStates, "heap-B/state")
		runtime.KeepAlive(m)
	}
}
