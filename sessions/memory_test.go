package sessions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestMemory_CreateGet(t *testing.T) {
	ts := newTestStore(t, 10)
	s := ts.create(t, "alice", "sid-1")

	got, err := ts.Get(t.Context(), s.ID)
	if err != nil {
		t.Fatalf("Get(created ID): %v", err)
	}
	if got != s {
		t.Errorf("Get returned %p, want the stored session %p", got, s)
	}
	if got.Subject != "alice" || got.IdPSessionID != "sid-1" || got.AccessToken != "access-alice" {
		t.Errorf("Get = {Subject %q, IdPSessionID %q, AccessToken %q}, want alice, sid-1, access-alice",
			got.Subject, got.IdPSessionID, got.AccessToken)
	}
	if !got.LastSeen().Equal(s.Created) {
		t.Errorf("LastSeen after Create = %v, want Created %v", got.LastSeen(), s.Created)
	}
	if n := ts.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

func TestMemory_Delete(t *testing.T) {
	ts := newTestStore(t, 10)
	s := ts.create(t, "alice", "sid-1")
	other := ts.create(t, "bob", "sid-2")

	for i := range 2 { // deleting twice is fine
		if err := ts.Delete(t.Context(), s.ID); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := ts.Delete(t.Context(), NewID()); err != nil {
		t.Errorf("Delete(unknown ID): %v, want nil", err)
	}
	if _, err := ts.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: error = %v, want ErrNotFound", err)
	}
	if _, err := ts.Get(t.Context(), other.ID); err != nil {
		t.Errorf("Get(other session) after Delete: %v", err)
	}
	if n := ts.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
	if sids, subs := ts.IndexSizes(); sids != 1 || subs != 1 {
		t.Errorf("IndexSizes = %d, %d; want 1, 1", sids, subs)
	}
	if ends := ts.ends.all(); len(ends) != 0 {
		t.Errorf("OnEnd called for an explicit Delete: %v", ends)
	}
}

func TestMemory_IdleExpiry(t *testing.T) {
	tests := []struct {
		name    string
		after   time.Duration // since the last touch
		expired bool
	}{
		{"just created", 0, false},
		{"one ns before the limit", testIdle - time.Nanosecond, false},
		{"exactly at the limit", testIdle, true},
		{"long after the limit", testIdle + time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestStore(t, 10)
			s := ts.create(t, "alice", "sid-1")
			ts.clock.Advance(tt.after)

			got, err := ts.Get(t.Context(), s.ID)
			if !tt.expired {
				if err != nil || got != s {
					t.Fatalf("Get %v after Create = %v, %v; want the session, nil", tt.after, got, err)
				}
				return
			}
			var exp *ExpiredError
			if !errors.As(err, &exp) {
				t.Fatalf("Get %v after Create: error = %v (%T), want *ExpiredError", tt.after, err, err)
			}
			if got != nil {
				t.Errorf("Get returned session %v with the error, want nil", got.ID)
			}
			if exp.Limit != LimitIdle {
				t.Errorf("ExpiredError.Limit = %q, want %q", exp.Limit, LimitIdle)
			}
			if want := s.Created.Add(testIdle); !exp.At.Equal(want) {
				t.Errorf("ExpiredError.At = %v, want %v", exp.At, want)
			}
			if !errors.Is(err, ErrExpired) {
				t.Errorf("errors.Is(%v, ErrExpired) = false, want true", err)
			}
			if errors.Is(err, ErrNotFound) {
				t.Errorf("errors.Is(%v, ErrNotFound) = true, want false", err)
			}
			if n := ts.Len(); n != 0 {
				t.Errorf("Len after expiry = %d, want 0", n)
			}
			if _, err := ts.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Get: error = %v, want ErrNotFound", err)
			}
			if sids, subs := ts.IndexSizes(); sids != 0 || subs != 0 {
				t.Errorf("IndexSizes after expiry = %d, %d; want 0, 0", sids, subs)
			}
			if want := []ending{{s.ID, "idle"}}; !slices.Equal(ts.ends.all(), want) {
				t.Errorf("OnEnd calls = %v, want %v", ts.ends.all(), want)
			}
		})
	}
}

// TestMemory_IdleExtendedByActivity shows that a Get moves the idle limit:
// a session used just before its limit lives another idle period.
func TestMemory_IdleExtendedByActivity(t *testing.T) {
	ts := newTestStore(t, 10)
	s := ts.create(t, "alice", "")

	ts.clock.Advance(testIdle - time.Second)
	if _, err := ts.Get(t.Context(), s.ID); err != nil {
		t.Fatalf("Get 1s before the idle limit: %v", err)
	}
	touched := ts.clock.Now()
	if !s.LastSeen().Equal(touched) {
		t.Fatalf("LastSeen = %v, want %v", s.LastSeen(), touched)
	}

	ts.clock.Advance(testIdle - time.Nanosecond) // past the original limit
	if _, err := ts.Get(t.Context(), s.ID); err != nil {
		t.Fatalf("Get 1ns before the extended limit: %v", err)
	}
	ts.clock.Advance(testIdle)
	var exp *ExpiredError
	if _, err := ts.Get(t.Context(), s.ID); !errors.As(err, &exp) || exp.Limit != LimitIdle {
		t.Fatalf("Get after an idle period: error = %v, want idle *ExpiredError", err)
	}
}

// TestMemory_TouchThrottle shows that Get records activity at most once per
// TouchInterval.
func TestMemory_TouchThrottle(t *testing.T) {
	ts := newTestStore(t, 10) // TouchInterval 1s
	s := ts.create(t, "alice", "")
	get := func(step string) {
		t.Helper()
		if _, err := ts.Get(t.Context(), s.ID); err != nil {
			t.Fatalf("%s: Get: %v", step, err)
		}
	}

	ts.clock.Advance(testTouch - time.Nanosecond)
	get("1ns before the touch interval")
	if !s.LastSeen().Equal(s.Created) {
		t.Errorf("LastSeen after a Get within the interval = %v, want Created %v", s.LastSeen(), s.Created)
	}

	ts.clock.Advance(time.Nanosecond)
	get("first Get")
	first := ts.clock.Now()
	if !s.LastSeen().Equal(first) {
		t.Fatalf("LastSeen after the first Get = %v, want %v", s.LastSeen(), first)
	}

	ts.clock.Advance(500 * time.Millisecond)
	get("second Get, 500ms later")
	if !s.LastSeen().Equal(first) {
		t.Errorf("LastSeen after a second Get 500ms later = %v, want the first Get's %v", s.LastSeen(), first)
	}

	ts.clock.Advance(500 * time.Millisecond)
	get("third Get, a full interval after the first")
	if want := ts.clock.Now(); !s.LastSeen().Equal(want) {
		t.Errorf("LastSeen after a Get one interval later = %v, want %v", s.LastSeen(), want)
	}
}

// TestMemory_OnEnd shows which endings OnEnd reports, and that explicit
// deletions are not among them.
func TestMemory_OnEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, ts *testStore, s *Session)
		want string // "" for no call
	}{
		{"idle, found by Get", func(t *testing.T, ts *testStore, s *Session) {
			ts.clock.Advance(testIdle)
			ts.Get(t.Context(), s.ID)
		}, "idle"},
		{"idle, found by Sweep", func(t *testing.T, ts *testStore, s *Session) {
			ts.clock.Advance(testIdle)
			ts.Sweep()
		}, "idle"},
		{"absolute, found by Get", func(t *testing.T, ts *testStore, s *Session) {
			for range testAbsolute / (testIdle / 2) {
				ts.clock.Advance(testIdle / 2)
				ts.Get(t.Context(), s.ID)
			}
		}, "absolute"},
		{"absolute, found by Sweep", func(t *testing.T, ts *testStore, s *Session) {
			ts.clock.Advance(testAbsolute)
			ts.Sweep()
		}, "absolute"},
		{"evicted", func(t *testing.T, ts *testStore, s *Session) {
			for range 3 {
				ts.create(t, "filler", "")
			}
		}, "evicted"},
		{"Delete", func(t *testing.T, ts *testStore, s *Session) {
			ts.Delete(t.Context(), s.ID)
		}, ""},
		{"DeleteBySubject", func(t *testing.T, ts *testStore, s *Session) {
			ts.DeleteBySubject(t.Context(), s.Subject)
		}, ""},
		{"DeleteByIdPSession", func(t *testing.T, ts *testStore, s *Session) {
			ts.DeleteByIdPSession(t.Context(), s.IdPSessionID)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestStore(t, 3)
			s := ts.create(t, "alice", "sid-1")
			tt.end(t, ts, s)

			if storeContains(ts.Memory, s.ID) {
				t.Fatalf("session still stored after %s", tt.name)
			}
			var want []ending
			if tt.want != "" {
				want = []ending{{s.ID, tt.want}}
			}
			if got := ts.ends.all(); !slices.Equal(got, want) {
				t.Errorf("OnEnd calls = %v, want %v", got, want)
			}
		})
	}
}

// TestMemory_LRUEviction shows exact least-recently-used eviction in a
// small (single-shard) store.
func TestMemory_LRUEviction(t *testing.T) {
	tests := []struct {
		name    string
		use     func(t *testing.T, ts *testStore, a, b, c *Session)
		evicted string
	}{
		{"no use: oldest goes", func(*testing.T, *testStore, *Session, *Session, *Session) {}, "a"},
		{"Get a", func(t *testing.T, ts *testStore, a, b, c *Session) {
			if _, err := ts.Get(t.Context(), a.ID); err != nil {
				t.Fatal(err)
			}
		}, "b"},
		{"Get a, then b", func(t *testing.T, ts *testStore, a, b, c *Session) {
			ts.Get(t.Context(), a.ID)
			ts.Get(t.Context(), b.ID)
		}, "c"},
		{"Replace a", func(t *testing.T, ts *testStore, a, b, c *Session) {
			if err := ts.Replace(t.Context(), &Session{ID: a.ID, Subject: "a"}); err != nil {
				t.Fatal(err)
			}
		}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestStore(t, 3)
			if n := len(ts.shards); n != 1 {
				t.Fatalf("store of 3 has %d shards, want 1", n)
			}
			byName := map[string]*Session{}
			for _, name := range []string{"a", "b", "c"} {
				byName[name] = ts.create(t, name, "sid-"+name)
				ts.clock.Advance(time.Second)
			}
			tt.use(t, ts, byName["a"], byName["b"], byName["c"])
			byName["d"] = ts.create(t, "d", "sid-d")

			for name, s := range byName {
				if got, want := storeContains(ts.Memory, s.ID), name != tt.evicted; got != want {
					t.Errorf("session %s stored = %t, want %t", name, got, want)
				}
			}
			if want := []ending{{byName[tt.evicted].ID, "evicted"}}; !slices.Equal(ts.ends.all(), want) {
				t.Errorf("OnEnd calls = %v, want %v", ts.ends.all(), want)
			}
			if n, _ := ts.DeleteBySubject(t.Context(), tt.evicted); n != 0 {
				t.Errorf("DeleteBySubject(evicted %q) = %d, want 0: the index kept it", tt.evicted, n)
			}
			checkIndexes(t, ts.Memory)
		})
	}
}

func TestMemory_Shards(t *testing.T) {
	tests := []struct {
		max, shards int
	}{
		{1, 1},
		{3, 1},
		{2*minPerShard - 1, 1}, // below minPerShard*2: one shard, exact LRU
		{2 * minPerShard, 2},
		{1000, 4},
		{100000, maxShards},
		{10000000, maxShards},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.max), func(t *testing.T) {
			m, err := NewMemory(tt.max, Options{IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(m.shards); got != tt.shards {
				t.Errorf("NewMemory(%d) has %d shards, want %d", tt.max, got, tt.shards)
			}
		})
	}
}

// TestMemory_CapacityBound fills every shard past its share and checks
// that the store never holds more than maxSessions sessions, and that
// every session pushed out was reported as evicted.
//
// The IDs are aimed at the shards in turn, each shard getting two more
// than its fair share (maxSessions / shards), so every shard overflows and
// the bound is tested exactly, not by chance. The sizes that are not a
// multiple of the shard count are the interesting ones; 100000 is the
// default.
func TestMemory_CapacityBound(t *testing.T) {
	for _, max := range []int{3, 255, 256, 257, 1000, 1001, 1023, 100000} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			ts := newTestStore(t, max)
			shards := len(ts.shards)
			inserted := shards * (max/shards + 2)
			for i := range inserted {
				s := &Session{ID: idInShard(byte(i)), Subject: fmt.Sprint("sub-", i%50), Created: ts.clock.Now()}
				if err := ts.Create(t.Context(), s); err != nil {
					t.Fatal(err)
				}
			}
			n := ts.Len()
			if n > max {
				t.Errorf("Len = %d after %d inserts across %d shards, want at most maxSessions %d",
					n, inserted, len(ts.shards), max)
			}
			if n < max*9/10 {
				t.Errorf("Len = %d after %d inserts, want about maxSessions %d", n, inserted, max)
			}
			if got, want := ts.ends.count("evicted"), inserted-n; got != want {
				t.Errorf("OnEnd(evicted) called %d times, want inserted-Len = %d", got, want)
			}
			checkIndexes(t, ts.Memory)
		})
	}
}

// TestMemory_CapacityRandomIDs is the plain version of the capacity bound:
// random IDs, as the store sees them in production.
func TestMemory_CapacityRandomIDs(t *testing.T) {
	const max, inserted = 1000, 2000
	ts := newTestStore(t, max)
	if len(ts.shards) < 2 {
		t.Fatalf("store of %d has %d shard, want several", max, len(ts.shards))
	}
	for i := range inserted {
		ts.create(t, fmt.Sprint("sub-", i), fmt.Sprint("sid-", i))
	}
	n := ts.Len()
	if n > max {
		t.Errorf("Len = %d, want at most %d", n, max)
	}
	if got, want := ts.ends.count("evicted"), inserted-n; got != want {
		t.Errorf("OnEnd(evicted) called %d times, want inserted-Len = %d", got, want)
	}
	if sids, subs := ts.IndexSizes(); sids != n || subs != n {
		t.Errorf("IndexSizes = %d, %d; want Len %d each", sids, subs, n)
	}
}

func TestMemory_Replace(t *testing.T) {
	ts := newTestStore(t, 10)
	old := ts.create(t, "alice", "sid-1")
	old.RefreshToken = "refresh-1"
	ts.clock.Advance(10 * time.Minute)
	ts.clock.Advance(time.Minute)

	fresh := &Session{
		ID:           old.ID,
		Subject:      "alice",
		IdPSessionID: "sid-1",
		AccessToken:  "access-2",
		RefreshToken: "refresh-2",
		Created:      ts.clock.Now(), // a caller mistake Replace must not honour
	}
	if err := ts.Replace(t.Context(), fresh); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	got, err := ts.Get(t.Context(), old.ID)
	if err != nil {
		t.Fatalf("Get after Replace: %v", err)
	}
	if got.AccessToken != "access-2" || got.RefreshToken != "refresh-2" {
		t.Errorf("tokens after Replace = %q, %q; want access-2, refresh-2", got.AccessToken, got.RefreshToken)
	}
	if !got.Created.Equal(old.Created) {
		t.Errorf("Created after Replace = %v, want the stored %v", got.Created, old.Created)
	}
	if !fresh.Created.Equal(old.Created) {
		t.Errorf("Replace left the new session's Created at %v, want %v", fresh.Created, old.Created)
	}
	if n := ts.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
	checkIndexes(t, ts.Memory)

	t.Run("keeps last seen", func(t *testing.T) {
		ts := newTestStore(t, 10)
		old := ts.create(t, "alice", "")
		ts.clock.Advance(5 * time.Minute)
		ts.Get(t.Context(), old.ID)
		seen := old.LastSeen()
		ts.clock.Advance(5 * time.Minute)
		fresh := &Session{ID: old.ID, Subject: "alice"}
		fresh.SetLastSeen(ts.clock.Now()) // must be overwritten
		if err := ts.Replace(t.Context(), fresh); err != nil {
			t.Fatal(err)
		}
		if !fresh.LastSeen().Equal(seen) {
			t.Errorf("LastSeen after Replace = %v, want the stored %v", fresh.LastSeen(), seen)
		}
		// The idle limit still counts from the stored last-seen time.
		ts.clock.Advance(testIdle - 5*time.Minute)
		var exp *ExpiredError
		if _, err := ts.Get(t.Context(), old.ID); !errors.As(err, &exp) || exp.Limit != LimitIdle {
			t.Errorf("Get one idle period after the last touch: error = %v, want idle expiry", err)
		}
	})

	t.Run("missing session", func(t *testing.T) {
		ts := newTestStore(t, 10)
		ts.create(t, "alice", "sid-1")
		err := ts.Replace(t.Context(), &Session{ID: NewID(), Subject: "bob", IdPSessionID: "sid-2"})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Replace(unknown ID) error = %v, want ErrNotFound", err)
		}
		if n := ts.Len(); n != 1 {
			t.Errorf("Len = %d, want 1: Replace must not create", n)
		}
		if n, _ := ts.DeleteBySubject(t.Context(), "bob"); n != 0 {
			t.Errorf("failed Replace indexed its subject: DeleteBySubject(bob) = %d", n)
		}
		checkIndexes(t, ts.Memory)
	})

	t.Run("deleted session", func(t *testing.T) {
		ts := newTestStore(t, 10)
		s := ts.create(t, "alice", "sid-1")
		ts.Delete(t.Context(), s.ID)
		if err := ts.Replace(t.Context(), &Session{ID: s.ID, Subject: "alice"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Replace after Delete: error = %v, want ErrNotFound", err)
		}
	})

	t.Run("new sid and subject are indexed", func(t *testing.T) {
		ts := newTestStore(t, 10)
		s := ts.create(t, "alice", "sid-1")
		other := ts.create(t, "bob", "sid-1") // shares the old sid
		if err := ts.Replace(t.Context(), &Session{ID: s.ID, Subject: "alice2", IdPSessionID: "sid-2"}); err != nil {
			t.Fatal(err)
		}
		checkIndexes(t, ts.Memory)
		if n, _ := ts.DeleteByIdPSession(t.Context(), "sid-1"); n != 1 {
			t.Errorf("DeleteByIdPSession(old sid) = %d, want 1 (only the other session)", n)
		}
		if !storeContains(ts.Memory, s.ID) || storeContains(ts.Memory, other.ID) {
			t.Errorf("after DeleteByIdPSession(old sid): replaced stored %t (want true), other stored %t (want false)",
				storeContains(ts.Memory, s.ID), storeContains(ts.Memory, other.ID))
		}
		if n, _ := ts.DeleteBySubject(t.Context(), "alice"); n != 0 {
			t.Errorf("DeleteBySubject(old subject) = %d, want 0", n)
		}
		if n, _ := ts.DeleteByIdPSession(t.Context(), "sid-2"); n != 1 {
			t.Errorf("DeleteByIdPSession(new sid) = %d, want 1", n)
		}
		if ts.Len() != 0 {
			t.Errorf("Len = %d, want 0", ts.Len())
		}
		if sids, subs := ts.IndexSizes(); sids != 0 || subs != 0 {
			t.Errorf("IndexSizes = %d, %d; want 0, 0", sids, subs)
		}
	})
}

func TestMemory_DeleteByIndex(t *testing.T) {
	for _, tt := range deleteByIndexCases {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestStore(t, 10)
			ids := map[string]ID{}
			for _, sp := range deleteByIndexSessions {
				ids[sp.name] = ts.create(t, sp.sub, sp.sid).ID
			}
			n, err := tt.del(t.Context(), ts.Memory)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			if n != len(tt.want) {
				t.Errorf("removed count = %d, want %d", n, len(tt.want))
			}
			for _, sp := range deleteByIndexSessions {
				if got, want := storeContains(ts.Memory, ids[sp.name]), !slices.Contains(tt.want, sp.name); got != want {
					t.Errorf("%s (sub %q, sid %q) stored = %t, want %t", sp.name, sp.sub, sp.sid, got, want)
				}
			}
			if got := ts.Len(); got != len(deleteByIndexSessions)-len(tt.want) {
				t.Errorf("Len = %d, want %d", got, len(deleteByIndexSessions)-len(tt.want))
			}
			if ends := ts.ends.all(); len(ends) != 0 {
				t.Errorf("OnEnd calls = %v, want none for an explicit delete", ends)
			}
			checkIndexes(t, ts.Memory)
		})
	}
}

// TestMemory_IndexNoLeak drives sessions out by every route (eviction,
// Delete, DeleteBySubject, DeleteByIdPSession, Replace, Get expiry, Sweep)
// and checks that the indexes end empty.
func TestMemory_IndexNoLeak(t *testing.T) {
	const max, total = 1000, 10000
	ts := newTestStore(t, max)
	rng := rand.New(rand.NewPCG(1, 2))
	var live []ID
	for i := range total {
		s := ts.create(t, fmt.Sprint("sub-", rng.IntN(3000)), fmt.Sprint("sid-", rng.IntN(5000)))
		live = append(live, s.ID)
		switch i % 10 {
		case 0:
			ts.Delete(t.Context(), live[rng.IntN(len(live))])
		case 1:
			ts.DeleteBySubject(t.Context(), fmt.Sprint("sub-", rng.IntN(3000)))
		case 2:
			ts.DeleteByIdPSession(t.Context(), fmt.Sprint("sid-", rng.IntN(5000)))
		case 3: // a refresh that changes the sid and subject
			id := live[rng.IntN(len(live))]
			err := ts.Replace(t.Context(), &Session{ID: id, Subject: fmt.Sprint("sub-", rng.IntN(3000)), IdPSessionID: fmt.Sprint("sid-", rng.IntN(5000))})
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
		}
		if i%1000 == 0 {
			ts.clock.Advance(testIdle / 3)
			ts.Get(t.Context(), live[rng.IntN(len(live))])
		}
	}
	if n := ts.Len(); n > max {
		t.Errorf("Len = %d, want at most %d", n, max)
	}
	checkIndexes(t, ts.Memory)

	// Expire some through Get, the rest through Sweep.
	ts.clock.Advance(testAbsolute)
	for _, id := range live[len(live)-200:] {
		ts.Get(t.Context(), id)
	}
	swept := ts.Sweep()
	if n := ts.Len(); n != 0 {
		t.Errorf("Len after Sweep = %d (swept %d), want 0", n, swept)
	}
	if sids, subs := ts.IndexSizes(); sids != 0 || subs != 0 {
		t.Errorf("IndexSizes at the end = %d, %d; want 0, 0", sids, subs)
	}
}

func TestMemory_Sweep(t *testing.T) {
	ts := newTestStore(t, 10)
	a := ts.create(t, "a", "")
	ts.clock.Advance(10 * time.Minute)
	b := ts.create(t, "b", "")
	ts.clock.Advance(10 * time.Minute)
	c := ts.create(t, "c", "")

	if n := ts.Sweep(); n != 0 {
		t.Errorf("Sweep with nothing expired = %d, want 0", n)
	}
	// a's idle limit passes exactly now; b's and c's are 10 and 20 minutes away.
	ts.clock.Advance(testIdle - 20*time.Minute)
	if n := ts.Sweep(); n != 1 {
		t.Errorf("Sweep at a's idle limit = %d, want 1", n)
	}
	for _, tc := range []struct {
		s    *Session
		want bool
	}{{a, false}, {b, true}, {c, true}} {
		if got := storeContains(ts.Memory, tc.s.ID); got != tc.want {
			t.Errorf("session %s stored after Sweep = %t, want %t", tc.s.Subject, got, tc.want)
		}
	}
	if want := []ending{{a.ID, "idle"}}; !slices.Equal(ts.ends.all(), want) {
		t.Errorf("OnEnd calls = %v, want %v", ts.ends.all(), want)
	}

	ts.clock.Advance(10*time.Minute - time.Nanosecond)
	if n := ts.Sweep(); n != 0 {
		t.Errorf("Sweep 1ns before b's idle limit = %d, want 0", n)
	}
	ts.clock.Advance(time.Nanosecond)
	if n := ts.Sweep(); n != 1 {
		t.Errorf("Sweep at b's idle limit = %d, want 1", n)
	}
	ts.clock.Advance(testAbsolute)
	if n := ts.Sweep(); n != 1 {
		t.Errorf("Sweep long after c's limits = %d, want 1", n)
	}
	if n := ts.Len(); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
	if sids, subs := ts.IndexSizes(); sids != 0 || subs != 0 {
		t.Errorf("IndexSizes = %d, %d; want 0, 0", sids, subs)
	}
}

// TestMemory_SweepFromLRUEnd shows the documented limit of Sweep: it walks
// from the least recently used end and stops at the first live session, so
// an expired session used more recently than a live one waits for its next
// Get or a later sweep.
func TestMemory_SweepFromLRUEnd(t *testing.T) {
	ts := newTestStore(t, 10)
	old := ts.create(t, "old", "")
	ts.clock.Advance(time.Minute)
	young := ts.create(t, "young", "")
	// Replace makes old the most recently used but keeps its last-seen
	// time, so the LRU order no longer follows last-seen order. (A Get
	// inside the touch interval does the same in production.)
	if err := ts.Replace(t.Context(), &Session{ID: old.ID, Subject: "old"}); err != nil {
		t.Fatal(err)
	}
	ts.clock.Advance(testIdle - time.Minute) // old expires exactly now; young in 1 minute
	if n := ts.Sweep(); n != 0 {
		t.Errorf("Sweep = %d, want 0: the LRU end (young) is live", n)
	}
	if !storeContains(ts.Memory, young.ID) {
		t.Error("Sweep removed the live session")
	}
	var exp *ExpiredError
	if _, err := ts.Get(t.Context(), old.ID); !errors.As(err, &exp) || exp.Limit != LimitIdle {
		t.Errorf("Get(old) = %v, want idle expiry", err)
	}
}

// TestMemory_Run shows that Run returns once its context is cancelled. It
// uses a short real interval so the ticker fires a few times; the channel
// only waits for Run to return.
func TestMemory_Run(t *testing.T) {
	ts := newTestStore(t, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ts.Run(ctx, time.Millisecond)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context being cancelled")
	}
}

// TestMemory_RunSweeps runs the janitor in a synctest bubble, where the
// store's default clock (time.Now) and Run's ticker share fake time.
// time.Sleep in the bubble does not wait: it advances the fake clock once
// every goroutine is blocked, and synctest.Wait lets the sweep finish.
func TestMemory_RunSweeps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := NewMemory(10, Options{IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute})
		if err != nil {
			t.Fatal(err)
		}
		s := &Session{ID: NewID(), Subject: "alice", Created: time.Now()}
		m.Create(t.Context(), s)

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.Run(ctx, time.Minute)
		}()

		time.Sleep(testIdle - time.Minute) // one tick before the idle limit
		synctest.Wait()
		if n := m.Len(); n != 1 {
			t.Fatalf("Len before the idle limit = %d, want 1", n)
		}
		time.Sleep(time.Minute) // the tick at the limit sweeps
		synctest.Wait()
		if n := m.Len(); n != 0 {
			t.Errorf("Len after the tick at the idle limit = %d, want 0", n)
		}
		cancel()
		<-done
	})
}

// TestMemory_Concurrent hammers one store from 8 goroutines on a shared
// pool of session IDs, moving the clock so that sessions also expire and
// get swept, and then checks the invariants. Run it with -race.
//
// Each pool slot has a fixed subject, and Create always puts a fresh ID in
// its slot, as in production, where IDs are random and never reused and a
// refresh (Replace) never changes whose session it is; Replace may change
// the sid. The session a Create pushes out of its slot stays stored, so
// the store also fills up and evicts.
func TestMemory_Concurrent(t *testing.T) {
	const (
		workers  = 8
		opsEach  = 2500 // 20,000 in all
		max      = 300  // two shards; orphans of re-filled slots fill it
		slots    = 64   // few, so goroutines collide on the same sessions
		subjects = 16
		sids     = 8
	)
	ts := newTestStore(t, max)
	var poolMu sync.Mutex
	pool := make([]ID, slots)
	for i := range pool {
		pool[i] = NewID()
	}
	idAt := func(i int) ID {
		poolMu.Lock()
		defer poolMu.Unlock()
		return pool[i]
	}
	subjectOf := func(slot int) string { return fmt.Sprint("sub-", slot%subjects) }

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			ctx := t.Context()
			for range opsEach {
				slot := rng.IntN(slots)
				id := idAt(slot)
				sid := fmt.Sprint("sid-", rng.IntN(sids))
				switch op := rng.IntN(1000); {
				case op < 250:
					s := &Session{ID: NewID(), Subject: subjectOf(slot), IdPSessionID: sid, Created: ts.clock.Now()}
					ts.Create(ctx, s)
					poolMu.Lock()
					pool[slot] = s.ID
					poolMu.Unlock()
				case op < 600:
					s, err := ts.Get(ctx, id)
					if err == nil && s.ID != id {
						t.Errorf("Get(%v) returned session %v", id, s.ID)
					} else if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExpired) {
						t.Errorf("Get: unexpected error %v", err)
					}
				case op < 800:
					err := ts.Replace(ctx, &Session{ID: id, Subject: subjectOf(slot), IdPSessionID: sid, AccessToken: "refreshed"})
					if err != nil && !errors.Is(err, ErrNotFound) {
						t.Errorf("Replace: unexpected error %v", err)
					}
				case op < 956:
					ts.Delete(ctx, id)
				case op < 958:
					ts.DeleteBySubject(ctx, subjectOf(rng.IntN(subjects)))
				case op < 960:
					ts.DeleteByIdPSession(ctx, sid)
				case op < 995:
					ts.Sweep()
				default: // about 400 minutes in all: orphans go idle at about the rate they fill the store
					ts.clock.Advance(4 * time.Minute)
				}
			}
		})
	}
	wg.Wait()

	if n := ts.Len(); n > max {
		t.Errorf("Len = %d, want at most %d", n, max)
	}
	stored := storedSessions(ts.Memory)
	if len(stored) != ts.Len() {
		t.Errorf("stored sessions = %d, Len = %d", len(stored), ts.Len())
	}
	for _, s := range stored {
		if s.Created.IsZero() {
			t.Errorf("session %v has a zero Created after Replace", s.ID)
		}
	}
	t.Logf("ended: %d evicted, %d idle, %d absolute; %d stored",
		ts.ends.count("evicted"), ts.ends.count("idle"), ts.ends.count("absolute"), ts.Len())
	for _, reason := range []string{"evicted", "idle"} {
		if ts.ends.count(reason) == 0 {
			t.Errorf("no session ended %s: the test no longer covers that path", reason)
		}
	}
	checkIndexes(t, ts.Memory)
}

func TestNewMemory_Errors(t *testing.T) {
	valid := Options{IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour}
	tests := []struct {
		name    string
		max     int
		idle    time.Duration
		abs     time.Duration
		wantErr bool
	}{
		{"valid", 1, valid.IdleTimeout, valid.AbsoluteTimeout, false},
		{"zero max", 0, valid.IdleTimeout, valid.AbsoluteTimeout, true},
		{"negative max", -1, valid.IdleTimeout, valid.AbsoluteTimeout, true},
		{"zero idle", 10, 0, valid.AbsoluteTimeout, true},
		{"negative idle", 10, -time.Second, valid.AbsoluteTimeout, true},
		{"zero absolute", 10, valid.IdleTimeout, 0, true},
		{"negative absolute", 10, valid.IdleTimeout, -time.Second, true},
		{"both zero", 10, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMemory(tt.max, Options{IdleTimeout: tt.idle, AbsoluteTimeout: tt.abs})
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewMemory(%d, idle %v, absolute %v) error = %v, want error %t", tt.max, tt.idle, tt.abs, err, tt.wantErr)
			}
			if err != nil && m != nil {
				t.Errorf("NewMemory returned a store with error %v", err)
			}
			if err == nil && (m.opts.TouchInterval != time.Second || m.opts.Now == nil) {
				t.Errorf("defaults: TouchInterval %v, Now set %t; want 1s, true", m.opts.TouchInterval, m.opts.Now != nil)
			}
		})
	}
}
