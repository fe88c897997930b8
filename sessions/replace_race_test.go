package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

const raceJWK = `{"crv":"P-256","kty":"EC","x":"race-x","y":"race-y"}`

// beforeWrite is a go-redis hook that runs fn once, while armed, just
// before its client sends the first pipeline that writes the key: after
// a Replace read the stored session, before it writes its own value.
type beforeWrite struct {
	key   string
	armed atomic.Bool
	fn    func(context.Context)
}

func (h *beforeWrite) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *beforeWrite) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *beforeWrite) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.writes(cmds) && h.armed.CompareAndSwap(true, false) {
			h.fn(ctx)
		}
		return next(ctx, cmds)
	}
}

// writes reports whether cmds hold a command other than a read that
// names the key.
func (h *beforeWrite) writes(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if n := c.Name(); n == "get" || n == "pexpiretime" {
			continue
		}
		for _, a := range c.Args()[1:] {
			if s, ok := a.(string); ok && s == h.key {
				return true
			}
		}
	}
	return false
}

// TestStore_ReplaceKeepsConcurrentBinding forces the interleaving of a
// token refresh with a device binding: replica a's Replace of a refreshed
// copy reads the session while it is unbound, replica b binds it, and
// only then does a write. The binding must survive, and so must the
// refresh's new token (it is retried on the bound value, not dropped).
// The memory store holds its shard lock across the whole Replace, so
// there the binding can only come before or after it.
func TestStore_ReplaceKeepsConcurrentBinding(t *testing.T) {
	check := func(t *testing.T, got *Session, bound time.Time) {
		t.Helper()
		if got.DeviceKey != raceJWK || !got.BoundAt.Equal(bound) {
			t.Errorf("after a refresh raced a binding: device key %q bound at %v; want %q bound at %v (the session came unbound)",
				got.DeviceKey, got.BoundAt, raceJWK, bound)
		}
		if got.AccessToken != "refreshed" {
			t.Errorf("after a refresh raced a binding: access token %q, want the refreshed one", got.AccessToken)
		}
	}
	t.Run("memory", func(t *testing.T) {
		ts := newTestStore(t, 10)
		s := &Session{ID: NewID(), Subject: "alice", Created: ts.clock.Now(), AccessToken: "a1"}
		if err := ts.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		stale, err := ts.Get(t.Context(), s.ID)
		if err != nil {
			t.Fatal(err)
		}
		refreshed := stale.Clone()
		bound := stale.Clone()
		bound.DeviceKey, bound.BoundAt = raceJWK, ts.clock.Now()
		if err := ts.Replace(t.Context(), bound); err != nil {
			t.Fatal(err)
		}
		refreshed.AccessToken = "refreshed"
		if err := ts.Replace(t.Context(), refreshed); err != nil {
			t.Fatal(err)
		}
		got, err := ts.Get(t.Context(), s.ID)
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, bound.BoundAt)
	})
	run := func(t *testing.T, a, b, reader *redisTestStore) {
		s := &Session{ID: NewID(), Subject: "alice", IdPSessionID: "sid-1", Created: a.clock.Now(), AccessToken: "a1"}
		if err := a.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		boundAt := a.clock.Now().Add(time.Second)
		hook := &beforeWrite{key: a.sessionKey(lookupDigest(s.ID)), fn: func(ctx context.Context) {
			c := s.Clone()
			c.DeviceKey, c.BoundAt = raceJWK, boundAt
			if err := b.Replace(ctx, c); err != nil {
				t.Errorf("bind through replica b: %v", err)
			}
		}}
		a.client.AddHook(hook)
		refreshed := s.Clone()
		refreshed.AccessToken = "refreshed"
		hook.armed.Store(true)
		if err := a.Replace(t.Context(), refreshed); err != nil {
			t.Fatalf("Replace on replica a: %v", err)
		}
		if hook.armed.Load() {
			t.Fatal("the binding never ran between Replace's read and its write: the test proves nothing")
		}
		got, err := reader.Get(t.Context(), s.ID)
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, boundAt)
		if refreshed.DeviceKey != raceJWK {
			t.Errorf("the Session Replace was given has device key %q, want the stored %q", refreshed.DeviceKey, raceJWK)
		}
		// Both replicas dropped what they cached before the binding.
		for name, ts := range map[string]*redisTestStore{"a": a, "b": b} {
			got, err := ts.Get(t.Context(), s.ID)
			if err != nil || got.DeviceKey != raceJWK {
				t.Errorf("replica %s serves device key %q (%v), want %q", name, got.DeviceKey, err, raceJWK)
			}
		}
	}
	t.Run("redis", func(t *testing.T) {
		redistest.Require(t, redistest.Addr)
		a, b := replicas(t)
		run(t, a, b, b.withoutCache(t))
	})
	t.Run("redis cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a three-node Redis Cluster; skipped with -short")
		}
		cl := redistest.StartCluster(t, 3, 0)
		rt := newRedisTest(t, cl.Addrs[0])
		cfg := rt.storeConfig()
		cfg.URL = ""
		cfg.Cluster.Addrs = cl.Addrs
		clock := newFakeClock()
		a, b := rt.newStore(t, clock, cfg), rt.newStore(t, clock, cfg)
		cfg.LocalCache = nil
		run(t, a, b, rt.newStore(t, clock, cfg))
	})
}

// TestStore_ReplaceBindingStress races, in each of a bounded number of
// rounds, one binding against several token refreshes and new-device
// clearings of the same session through two replicas (or one memory
// store), and checks that the session ends every round bound. Run it
// with -race.
func TestStore_ReplaceBindingStress(t *testing.T) {
	const rounds, writers, writes = 40, 4, 2
	stress := func(t *testing.T, stores []Store, reader Store, now time.Time) {
		for round := range rounds {
			s := &Session{ID: NewID(), Subject: "alice", Created: now, AccessToken: "a0", NewDevice: true}
			if err := stores[0].Create(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				c := s.Clone()
				c.DeviceKey, c.BoundAt = raceJWK, now
				if err := stores[1].Replace(t.Context(), c); err != nil {
					t.Errorf("round %d: bind: %v", round, err)
				}
			}()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					st := stores[w%len(stores)]
					for i := range writes {
						cur, err := st.Get(t.Context(), s.ID)
						if err != nil {
							t.Errorf("round %d: writer %d: Get: %v", round, w, err)
							return
						}
						c := cur.Clone()
						c.AccessToken = fmt.Sprintf("a%d-%d", w, i)
						c.NewDevice = false
						if err := st.Replace(t.Context(), c); err != nil {
							t.Errorf("round %d: writer %d: Replace: %v", round, w, err)
							return
						}
					}
				}()
			}
			close(start)
			wg.Wait()
			got, err := reader.Get(t.Context(), s.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.DeviceKey != raceJWK {
				t.Fatalf("round %d: the session came unbound (device key %q) after refreshes raced its binding", round, got.DeviceKey)
			}
		}
	}
	t.Run("memory", func(t *testing.T) {
		ts := newTestStore(t, 1000)
		stress(t, []Store{ts, ts}, ts, ts.clock.Now())
	})
	t.Run("redis", func(t *testing.T) {
		redistest.Require(t, redistest.Addr)
		a, b := replicas(t)
		stress(t, []Store{a, b}, b.withoutCache(t), a.clock.Now())
	})
}

// TestRedis_ReplaceAfterScriptFlush: a Redis that lost its script cache
// (a restart, a failover, SCRIPT FLUSH) still takes a Replace, which
// falls back from EVALSHA to EVAL and so caches the script again.
func TestRedis_ReplaceAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	rt := newRedisTest(t, srv.Addr)
	clock := newFakeClock()
	cfg := rt.storeConfig()
	cfg.URL = "redis://" + srv.Addr + "/0"
	ts := rt.newStore(t, clock, cfg)
	s := ts.create(t, "alice", "sid-1")
	for i := range 2 {
		if err := rt.admin.ScriptFlush(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		c := s.Clone()
		c.AccessToken = fmt.Sprintf("after flush %d", i)
		if err := ts.Replace(t.Context(), c); err != nil {
			t.Fatalf("Replace after SCRIPT FLUSH: %v", err)
		}
		cached, err := rt.admin.ScriptExists(t.Context(), replaceScript.Hash()).Result()
		if err != nil || len(cached) != 1 || !cached[0] {
			t.Fatalf("SCRIPT EXISTS after the Replace = %v, %v; want the Replace to have loaded its script with EVAL", cached, err)
		}
		got, err := ts.withoutCache(t).Get(t.Context(), s.ID)
		if err != nil || got.AccessToken != c.AccessToken {
			t.Fatalf("after the Replace: token %q (%v), want %q", got.AccessToken, err, c.AccessToken)
		}
	}
}

// TestRedis_ReplaceGivesUpUnderEndlessConflict: a Replace whose session
// is rewritten by another replica between each of its reads and swaps
// gives up after replaceTries with ErrUnavailable (never ErrNotFound,
// never a write over the other replica's value), so the caller answers
// 503 and the binding the other replica wrote stays.
func TestRedis_ReplaceGivesUpUnderEndlessConflict(t *testing.T) {
	redistest.Require(t, redistest.Addr)
	a, b := replicas(t)
	s := a.create(t, "alice", "sid-1")
	boundAt := a.clock.Now()
	var binds int
	hook := &beforeWrite{key: a.sessionKey(lookupDigest(s.ID))}
	hook.fn = func(ctx context.Context) {
		binds++
		c := s.Clone()
		c.DeviceKey, c.BoundAt = raceJWK, boundAt
		c.AccessToken = fmt.Sprintf("bound-%d", binds)
		if err := b.Replace(ctx, c); err != nil {
			t.Errorf("bind through replica b: %v", err)
		}
		hook.armed.Store(true) // and again before a's next swap
	}
	a.client.AddHook(hook)
	hook.armed.Store(true)
	c := s.Clone()
	c.AccessToken = "refreshed"
	err := a.Replace(t.Context(), c)
	hook.armed.Store(false)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace under endless conflict = %v; want an error wrapping ErrUnavailable", err)
	}
	if binds != replaceTries {
		t.Errorf("replica b wrote %d times before a's swaps; want one per try (%d)", binds, replaceTries)
	}
	got, err := b.withoutCache(t).Get(t.Context(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("bound-%d", binds); got.AccessToken != want || got.DeviceKey != raceJWK {
		t.Errorf("stored: token %q key %q; want b's last write (%q, bound)", got.AccessToken, got.DeviceKey, want)
	}
}
