package sessions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// TestRedis_RevocationAcrossReplicas measures how long a replica that has
// a session in its local cache keeps serving it after another replica
// revoked it. The requirement is under a second.
func TestRedis_RevocationAcrossReplicas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		revoke func(ctx context.Context, a *redisTestStore, s *Session) error
	}{
		{"Delete", func(ctx context.Context, a *redisTestStore, s *Session) error { return a.Delete(ctx, s.ID) }},
		{"DeleteByIdPSession", func(ctx context.Context, a *redisTestStore, s *Session) error {
			_, err := a.DeleteByIdPSession(ctx, s.IdPSessionID)
			return err
		}},
		{"DeleteBySubject", func(ctx context.Context, a *redisTestStore, s *Session) error {
			_, err := a.DeleteBySubject(ctx, s.Subject)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := replicas(t)
			s := a.create(t, "alice", "sid-1")
			if _, err := b.Get(t.Context(), s.ID); err != nil {
				t.Fatal(err)
			}
			if !b.cached(s.ID) {
				t.Fatal("b does not cache the session: the test would not show invalidation")
			}
			if err := tc.revoke(t.Context(), a, s); err != nil {
				t.Fatal(err)
			}
			lat := redistest.WaitFor(t, "b to refuse the revoked session", time.Second, func() bool {
				_, err := b.Get(t.Context(), s.ID)
				return errors.Is(err, ErrNotFound)
			})
			t.Logf("%s on a refused on b after %v", tc.name, lat)
		})
	}
}

// TestRedis_SubscriptionDropPurgesCache cuts one replica's invalidation
// connection (CLIENT KILL) and revokes a session it caches behind its
// back, as if the invalidation had been lost: once subscribed again, the
// replica has purged its cache and refuses the session.
func TestRedis_SubscriptionDropPurgesCache(t *testing.T) {
	rt := newRedisTest(t, redistest.Addr)
	clock := newFakeClock()
	a := rt.newStore(t, clock, rt.storeConfig())
	cfg := rt.storeConfig()
	cfg.URL += "?client_name=" + rt.prefix[:len(rt.prefix)-1] + "-b"
	b := rt.newStore(t, clock, cfg)

	revoked, kept := a.create(t, "alice", ""), a.create(t, "bob", "")
	for _, s := range []*Session{revoked, kept} {
		if _, err := b.Get(t.Context(), s.ID); err != nil {
			t.Fatal(err)
		}
	}
	ups := b.ups.Load()
	clients := rt.admin.ClientList(t.Context()).Val()
	var killed int
	for line := range strings.SplitSeq(clients, "\n") {
		if strings.Contains(line, "name="+rt.prefix[:len(rt.prefix)-1]+"-b ") && strings.Contains(line, "cmd=subscribe") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := rt.admin.Do(t.Context(), "client", "kill", "id", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("found %d subscribed connections of b, want 1:\n%s", killed, clients)
	}
	rt.admin.Del(t.Context(), a.sessionKey(lookupDigest(revoked.ID))) // no invalidation published
	lat := redistest.WaitFor(t, "b to subscribe again", 5*time.Second, func() bool { return b.ups.Load() > ups })
	t.Logf("b subscribed again %v after its connection was killed", lat)
	if n := b.cache.len(); n != 0 {
		t.Errorf("b's cache holds %d sessions after the reconnection, want 0", n)
	}
	if _, err := b.Get(t.Context(), revoked.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("b: Get(revoked while disconnected) = %v, want ErrNotFound", err)
	}
	if _, err := b.Get(t.Context(), kept.ID); err != nil {
		t.Errorf("b: Get(kept session) = %v", err)
	}
}

// TestRedis_Concurrent hammers two replicas from 8 goroutines on a shared
// pool of session IDs, moving the clock so that sessions also expire,
// then ends every session and checks that no key is left. Run it with
// -race.
func TestRedis_Concurrent(t *testing.T) {
	const (
		workers  = 8
		opsEach  = 400
		slots    = 32
		subjects = 8
		sids     = 8
	)
	a, b := replicas(t)
	var poolMu sync.Mutex
	pool := make([]ID, slots)
	var created []ID
	for i := range pool {
		pool[i] = NewID()
	}
	subjectOf := func(slot int) string { return fmt.Sprint("sub-", slot%subjects) }
	var wg sync.WaitGroup
	for w := range workers {
		ts := []*redisTestStore{a, b}[w%2]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			ctx := t.Context()
			for range opsEach {
				slot := rng.IntN(slots)
				poolMu.Lock()
				id := pool[slot]
				poolMu.Unlock()
				sid := fmt.Sprint("sid-", rng.IntN(sids))
				var err error
				switch op := rng.IntN(1000); {
				case op < 250:
					s := &Session{ID: NewID(), Subject: subjectOf(slot), IdPSessionID: sid, Created: ts.clock.Now()}
					if err = ts.Create(ctx, s); err == nil {
						poolMu.Lock()
						pool[slot] = s.ID
						created = append(created, s.ID)
						poolMu.Unlock()
					}
				case op < 600:
					var s *Session
					s, err = ts.Get(ctx, id)
					if err == nil && s.ID != id {
						t.Errorf("Get(%v) returned session %v", id, s.ID)
					}
				case op < 800:
					err = ts.Replace(ctx, &Session{ID: id, Subject: subjectOf(slot), IdPSessionID: sid, AccessToken: "refreshed"})
				case op < 956:
					err = ts.Delete(ctx, id)
				case op < 970:
					_, err = ts.DeleteBySubject(ctx, subjectOf(rng.IntN(subjects)))
				case op < 985:
					_, err = ts.DeleteByIdPSession(ctx, sid)
				default: // about 8 hours in all: sessions go idle, and some reach their absolute limit
					ts.clock.Advance(10 * time.Minute)
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExpired) {
					t.Errorf("unexpected error %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("ended: %d idle, %d absolute; %d sessions stored", a.ends.count("idle")+b.ends.count("idle"),
		a.ends.count("absolute")+b.ends.count("absolute"), a.Len())
	checkRedisIndexes(t, a, false)
	if a.ends.count("idle")+b.ends.count("idle") == 0 {
		t.Error("no session ended idle: the test no longer covers that path")
	}

	// Both replicas agree on every session once invalidations are in.
	for _, id := range created {
		redistest.WaitFor(t, "the replicas to agree", time.Second, func() bool {
			_, errA := a.Get(t.Context(), id)
			_, errB := b.Get(t.Context(), id)
			return (errA == nil) == (errB == nil)
		})
	}
	for i := range subjects {
		if _, err := a.DeleteBySubject(t.Context(), fmt.Sprint("sub-", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range sids {
		if _, err := b.DeleteByIdPSession(t.Context(), fmt.Sprint("sid-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if keys := a.rt.keys(t); len(keys) != 0 {
		t.Errorf("%d keys left after ending every session: %v", len(keys), keys)
	}
}

// TestRedis_RecoversAfterCommandFailure: a command that fails (a timeout,
// say) while the subscription stays up makes the cache incoherent; Run
// checks the subscription with a ping and makes it coherent again, empty.
func TestRedis_RecoversAfterCommandFailure(t *testing.T) {
	a, _ := replicas(t)
	s := a.create(t, "alice", "")
	if !a.cached(s.ID) {
		t.Fatal("setup: the session is not cached")
	}
	ups := a.ups.Load()
	a.sawFailure()
	if a.live.Load() || a.cache.len() != 0 {
		t.Fatalf("after a failure: live %t, %d cached; want false, 0 (stale_for 0)", a.live.Load(), a.cache.len())
	}
	lat := redistest.WaitFor(t, "the cache to be coherent again", 5*time.Second, func() bool { return a.ups.Load() > ups })
	t.Logf("coherent again %v after the failure", lat)
	if _, err := a.Get(t.Context(), s.ID); err != nil || !a.cached(s.ID) {
		t.Errorf("Get after recovery = %v, cached %t; want the session, cached", err, a.cached(s.ID))
	}
}

// TestRedis_CacheNeedsRun: without Run nothing is cached, since nobody
// would hear invalidations; every Get reads Redis.
func TestRedis_CacheNeedsRun(t *testing.T) {
	rt := newRedisTest(t, redistest.Addr)
	clock := newFakeClock()
	a := rt.newStore(t, clock, rt.storeConfig())
	client, err := newRedisClient(rt.storeConfig())
	if err != nil {
		t.Fatal(err)
	}
	idle, err := NewRedis(client, rt.storeConfig(), Options{IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	s := a.create(t, "alice", "")
	if _, err := idle.Get(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}
	if n := idle.LocalLen(); n != 0 {
		t.Errorf("a store whose Run is not running caches %d sessions, want 0", n)
	}
	if err := a.Delete(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete elsewhere = %v, want ErrNotFound", err)
	}
}
