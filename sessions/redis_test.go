package sessions

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/config"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// The Redis store runs the memory store's contract tests where they
// apply, against a real redis-server (127.0.0.1:6379; see redistest.Require),
// with two replicas where coherence matters. Each test works under its
// own random key prefix and deletes its keys at the end.
//
// Time: the stores run on a fake clock starting in 2030, and write key
// expiries as absolute times from that clock (PEXPIREAT), so Redis keeps
// every key until the test deletes it, while Get decides expiry from the
// fake clock and the expiry it reads back (PEXPIRETIME). No test waits
// for Redis to expire a key.

// replicas returns two replicas on one Redis sharing a fake clock.
func replicas(t *testing.T) (a, b *redisTestStore) {
	t.Helper()
	rt := newRedisTest(t, redistest.Addr)
	clock := newFakeClock()
	return rt.newStore(t, clock, rt.storeConfig()), rt.newStore(t, clock, rt.storeConfig())
}

// withoutCache returns a store on the same Redis and clock as ts whose
// every Get reads Redis.
func (ts *redisTestStore) withoutCache(t *testing.T) *redisTestStore {
	t.Helper()
	cfg := ts.rt.storeConfig()
	cfg.LocalCache = nil
	return ts.rt.newStore(t, ts.clock, cfg)
}

func TestRedis_CreateGet(t *testing.T) {
	a, b := replicas(t)
	s := &Session{
		ID: NewID(), Issuer: "https://idp.example.com", Subject: "alice", User: "alice", Email: "alice@example.com",
		EmailVerified: true, Name: "Alice", PreferredUsername: "al", Groups: []string{"admins"},
		IdPSessionID: "sid-1", Claims: map[string][]string{"roles": {"r1", "r2"}},
		IDToken: "id-token", AccessToken: "access-token", RefreshToken: "refresh-token",
		AccessExpiry: t0.Add(time.Hour), RefreshAt: t0.Add(59 * time.Minute), Created: a.clock.Now(),
	}
	if err := a.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}

	got, err := a.Get(t.Context(), s.ID)
	if err != nil || got != s {
		t.Fatalf("Get on the creating replica = %p, %v; want the cached session %p", got, err, s)
	}
	got, err = b.Get(t.Context(), s.ID)
	if err != nil {
		t.Fatalf("Get on another replica: %v", err)
	}
	if want := recordOf(s); !equalRecords(recordOf(got), want) || got.ID != s.ID {
		t.Errorf("Get on another replica = %+v\nwant %+v", recordOf(got), want)
	}
	if !got.LastSeen().Equal(s.Created) {
		t.Errorf("LastSeen read from Redis = %v, want Created %v", got.LastSeen(), s.Created)
	}
	if !b.cached(s.ID) {
		t.Error("the other replica did not cache the session it read")
	}
	if ms, want := b.expireTime(t, s.ID), s.Created.Add(testIdle).UnixMilli(); ms != want {
		t.Errorf("key expiry = %d, want Created + idle = %d", ms, want)
	}
	if n := a.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

func recordOf(s *Session) redisRecord {
	return redisRecord{
		Issuer: s.Issuer, Subject: s.Subject, User: s.User, Email: s.Email,
		EmailVerified: s.EmailVerified, Name: s.Name, PreferredUsername: s.PreferredUsername,
		Groups: s.Groups, IdPSessionID: s.IdPSessionID, Claims: s.Claims,
		IDToken: s.IDToken, AccessToken: s.AccessToken, RefreshToken: s.RefreshToken,
		AccessExpiry: s.AccessExpiry, RefreshAt: s.RefreshAt, Created: s.Created,
	}
}

func equalRecords(a, b redisRecord) bool {
	return fmt.Sprint(a.Groups, a.Claims) == fmt.Sprint(b.Groups, b.Claims) &&
		a.AccessExpiry.Equal(b.AccessExpiry) && a.RefreshAt.Equal(b.RefreshAt) && a.Created.Equal(b.Created) &&
		a.Issuer == b.Issuer && a.Subject == b.Subject && a.User == b.User && a.Email == b.Email &&
		a.EmailVerified == b.EmailVerified && a.Name == b.Name && a.PreferredUsername == b.PreferredUsername &&
		a.IdPSessionID == b.IdPSessionID && a.IDToken == b.IDToken && a.AccessToken == b.AccessToken &&
		a.RefreshToken == b.RefreshToken
}

func TestRedis_Delete(t *testing.T) {
	a, b := replicas(t)
	s := a.create(t, "alice", "sid-1")
	other := a.create(t, "bob", "sid-2")
	if _, err := b.Get(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}

	for i := range 2 { // deleting twice is fine
		if err := a.Delete(t.Context(), s.ID); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := a.Delete(t.Context(), NewID()); err != nil {
		t.Errorf("Delete(unknown ID): %v, want nil", err)
	}
	for name, ts := range map[string]*redisTestStore{"deleting replica": a, "other replica": b} {
		redistest.WaitFor(t, name+" to refuse the deleted session", time.Second, func() bool {
			_, err := ts.Get(t.Context(), s.ID)
			return errors.Is(err, ErrNotFound)
		})
		if _, err := ts.Get(t.Context(), other.ID); err != nil {
			t.Errorf("%s: Get(other session) after Delete: %v", name, err)
		}
	}
	if n := a.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
	checkRedisIndexes(t, a, true)
	if ends := a.ends.all(); len(ends) != 0 {
		t.Errorf("OnEnd called for an explicit Delete: %v", ends)
	}
}

// checkRedisIndexes fails t unless every stored session is in the sid and
// sub index sets its value's header names, and, when exact, the sets hold
// nothing else. (A Replace that changes the sid leaves a stale entry in
// the old set, which DeleteBy* drops.)
func checkRedisIndexes(t testing.TB, ts *redisTestStore, exact bool) {
	t.Helper()
	ctx := t.Context()
	want := map[string][]string{}
	got := map[string][]string{}
	for _, k := range ts.rt.keys(t) {
		rest := strings.TrimPrefix(k, ts.prefix)
		switch {
		case strings.HasPrefix(rest, "s:"):
			raw, err := ts.rt.admin.Get(ctx, k).Bytes()
			if err != nil {
				continue // gone since the scan
			}
			sid, sub, ok := valueIndexes(raw)
			if !ok {
				t.Errorf("value of %s has no valid header", k)
				continue
			}
			member := strings.TrimPrefix(rest, "s:")
			if sid != (digest{}) {
				want[ts.indexKey("sid", sid)] = append(want[ts.indexKey("sid", sid)], member)
			}
			if sub != (digest{}) {
				want[ts.indexKey("sub", sub)] = append(want[ts.indexKey("sub", sub)], member)
			}
		case strings.HasPrefix(rest, "sid:"), strings.HasPrefix(rest, "sub:"):
			got[k] = ts.rt.admin.SMembers(ctx, k).Val()
			if ms := ts.rt.admin.PExpireTime(ctx, k).Val(); ms <= 0 {
				t.Errorf("index set %s has no expiry (PEXPIRETIME %v)", k, ms)
			}
		default:
			t.Errorf("unexpected key %s", k)
		}
	}
	for k, members := range want {
		slices.Sort(members)
		g := slices.Sorted(slices.Values(got[k]))
		for _, m := range members {
			if !slices.Contains(g, m) {
				t.Errorf("index set %s = %v lacks stored session %s", k, g, m)
			}
		}
		if exact && !slices.Equal(g, members) {
			t.Errorf("index set %s = %v, want %v", k, g, members)
		}
	}
	for k, members := range got {
		if _, ok := want[k]; !ok && exact {
			t.Errorf("index set %s = %v names no stored session", k, members)
		}
	}
}

func TestRedis_IdleExpiry(t *testing.T) {
	tests := []struct {
		name    string
		after   time.Duration // since the last touch
		expired bool
	}{
		{"just created", 0, false},
		{"one ms before the limit", testIdle - time.Millisecond, false},
		{"exactly at the limit", testIdle, true},
		{"long after the limit", testIdle + time.Hour, true},
	}
	for _, via := range []string{"local cache", "redis"} {
		for _, tt := range tests {
			t.Run(via+"/"+tt.name, func(t *testing.T) {
				a, _ := replicas(t)
				s := a.create(t, "alice", "sid-1")
				ts := a
				if via == "redis" {
					ts = a.withoutCache(t)
				}
				a.clock.Advance(tt.after)

				got, err := ts.Get(t.Context(), s.ID)
				if !tt.expired {
					if err != nil || got.ID != s.ID {
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
				if exp.Limit != LimitIdle || !exp.At.Equal(s.Created.Add(testIdle)) {
					t.Errorf("ExpiredError = {%q, %v}, want {%q, %v}", exp.Limit, exp.At, LimitIdle, s.Created.Add(testIdle))
				}
				if !errors.Is(err, ErrExpired) || errors.Is(err, ErrNotFound) {
					t.Errorf("errors.Is(%v, ErrExpired/ErrNotFound) = %t/%t, want true/false", err, errors.Is(err, ErrExpired), errors.Is(err, ErrNotFound))
				}
				if _, err := ts.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("second Get: error = %v, want ErrNotFound", err)
				}
				if keys := a.rt.keys(t); len(keys) != 0 {
					t.Errorf("keys left after expiry: %v", keys)
				}
				if want := []ending{{s.ID, "idle"}}; !slices.Equal(ts.ends.all(), want) {
					t.Errorf("OnEnd calls = %v, want %v", ts.ends.all(), want)
				}
			})
		}
	}
}

// TestRedis_IdleExtendedByActivity shows that a Get moves the idle limit,
// on this replica or on another: a replica whose cached copy looks idle
// asks Redis before it declares the session expired.
func TestRedis_IdleExtendedByActivity(t *testing.T) {
	t.Run("same replica", func(t *testing.T) {
		a, _ := replicas(t)
		s := a.create(t, "alice", "")
		a.clock.Advance(testIdle - time.Second)
		if _, err := a.Get(t.Context(), s.ID); err != nil {
			t.Fatalf("Get 1s before the idle limit: %v", err)
		}
		touched := a.clock.Now()
		if !s.LastSeen().Equal(touched) {
			t.Fatalf("LastSeen = %v, want %v", s.LastSeen(), touched)
		}
		if ms, want := a.expireTime(t, s.ID), touched.Add(testIdle).UnixMilli(); ms != want {
			t.Errorf("key expiry after the touch = %d, want %d", ms, want)
		}
		a.clock.Advance(testIdle - time.Millisecond) // past the original limit
		if _, err := a.Get(t.Context(), s.ID); err != nil {
			t.Fatalf("Get 1ms before the extended limit: %v", err)
		}
		a.clock.Advance(testIdle)
		var exp *ExpiredError
		if _, err := a.Get(t.Context(), s.ID); !errors.As(err, &exp) || exp.Limit != LimitIdle {
			t.Fatalf("Get after an idle period: error = %v, want idle *ExpiredError", err)
		}
	})
	t.Run("activity on another replica", func(t *testing.T) {
		a, b := replicas(t)
		s := a.create(t, "alice", "")
		if _, err := b.Get(t.Context(), s.ID); err != nil {
			t.Fatal(err)
		}
		// The user works on b only; a's copy still says Created.
		for range 3 {
			a.clock.Advance(testIdle - time.Second)
			if _, err := b.Get(t.Context(), s.ID); err != nil {
				t.Fatalf("Get on b: %v", err)
			}
		}
		if !a.cached(s.ID) {
			t.Fatal("a no longer caches the session")
		}
		a.clock.Advance(time.Second) // a's copy: Created + 3 idle periods - 2s
		got, err := a.Get(t.Context(), s.ID)
		if err != nil {
			t.Fatalf("Get on a, idle by its own copy but active on b: %v", err)
		}
		if lastOnA := a.clock.Now(); !got.LastSeen().Equal(lastOnA) {
			t.Errorf("LastSeen after a's Get = %v, want %v", got.LastSeen(), lastOnA)
		}
		if len(a.ends.all())+len(b.ends.all()) != 0 {
			t.Errorf("OnEnd called: %v %v", a.ends.all(), b.ends.all())
		}
		lastOnA := a.clock.Now()
		a.clock.Advance(testIdle)
		var exp *ExpiredError
		if _, err := b.Get(t.Context(), s.ID); !errors.As(err, &exp) || exp.Limit != LimitIdle || !exp.At.Equal(lastOnA.Add(testIdle)) {
			t.Fatalf("Get on b an idle period later: error = %v, want idle expiry at %v", err, lastOnA.Add(testIdle))
		}
		if _, err := a.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExpired) {
			t.Errorf("Get on a after b expired it: %v, want ErrNotFound or expired", err)
		}
		if ends := append(a.ends.all(), b.ends.all()...); len(ends) != 1 || ends[0].reason != "idle" {
			t.Errorf("OnEnd calls on both replicas = %v, want one idle", ends)
		}
	})
}

// TestRedis_TouchThrottle shows that a replica extends a session's key at
// most once per TouchInterval.
func TestRedis_TouchThrottle(t *testing.T) {
	a, _ := replicas(t)
	s := a.create(t, "alice", "")
	created := a.expireTime(t, s.ID)
	get := func(step string) {
		t.Helper()
		if _, err := a.Get(t.Context(), s.ID); err != nil {
			t.Fatalf("%s: Get: %v", step, err)
		}
	}

	a.clock.Advance(testTouch - time.Nanosecond)
	get("1ns before the touch interval")
	if ms := a.expireTime(t, s.ID); ms != created || !s.LastSeen().Equal(s.Created) {
		t.Errorf("after a Get within the interval: key expiry %d (want %d), LastSeen %v (want Created)", ms, created, s.LastSeen())
	}

	a.clock.Advance(time.Nanosecond)
	get("first Get")
	first := a.clock.Now()
	if ms, want := a.expireTime(t, s.ID), first.Add(testIdle).UnixMilli(); ms != want || !s.LastSeen().Equal(first) {
		t.Fatalf("after the first Get: key expiry %d (want %d), LastSeen %v (want %v)", ms, want, s.LastSeen(), first)
	}

	a.clock.Advance(500 * time.Millisecond)
	get("second Get, 500ms later")
	if ms, want := a.expireTime(t, s.ID), first.Add(testIdle).UnixMilli(); ms != want || !s.LastSeen().Equal(first) {
		t.Errorf("after a second Get 500ms later: key expiry %d (want %d), LastSeen %v (want %v)", ms, want, s.LastSeen(), first)
	}

	a.clock.Advance(500 * time.Millisecond)
	get("third Get, a full interval after the first")
	if ms, want := a.expireTime(t, s.ID), a.clock.Now().Add(testIdle).UnixMilli(); ms != want {
		t.Errorf("after a Get one interval later: key expiry %d, want %d", ms, want)
	}
}

func TestRedis_AbsoluteExpiry(t *testing.T) {
	a, b := replicas(t)
	s := a.create(t, "alice", "sid-1")
	end := s.Created.Add(testAbsolute)

	// Stay active on both replicas: the idle limit stays away.
	for i := 0; a.clock.Now().Add(testIdle / 2).Before(end); i++ {
		a.clock.Advance(testIdle / 2)
		ts := []*redisTestStore{a, b}[i%2]
		if _, err := ts.Get(t.Context(), s.ID); err != nil {
			t.Fatalf("Get at %v (active, before the absolute limit): %v", a.clock.Now(), err)
		}
		if ms := a.expireTime(t, s.ID); ms > end.UnixMilli() {
			t.Fatalf("key expiry %d is past the absolute limit %d", ms, end.UnixMilli())
		}
	}
	a.clock.Advance(end.Sub(a.clock.Now()) - time.Nanosecond)
	if _, err := a.Get(t.Context(), s.ID); err != nil {
		t.Fatalf("Get 1ns before the absolute limit: %v", err)
	}
	if ms := a.expireTime(t, s.ID); ms != end.UnixMilli() {
		t.Errorf("key expiry near the end = %d, want the absolute limit %d", ms, end.UnixMilli())
	}

	a.clock.Advance(time.Nanosecond)
	_, err := a.Get(t.Context(), s.ID)
	var exp *ExpiredError
	if !errors.As(err, &exp) || exp.Limit != LimitAbsolute || !exp.At.Equal(end) {
		t.Fatalf("Get at the absolute limit: error = %v, want absolute *ExpiredError at %v", err, end)
	}
	if _, err := b.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExpired) {
		t.Errorf("Get on the other replica: %v, want ErrNotFound or expired", err)
	}
	if keys := a.rt.keys(t); len(keys) != 0 {
		t.Errorf("keys left after absolute expiry: %v", keys)
	}
	if ends := append(a.ends.all(), b.ends.all()...); !slices.Equal(ends, []ending{{s.ID, "absolute"}}) {
		t.Errorf("OnEnd calls = %v, want one absolute", ends)
	}
}

func TestRedis_Replace(t *testing.T) {
	a, b := replicas(t)
	old := a.create(t, "alice", "sid-1")
	if _, err := b.Get(t.Context(), old.ID); err != nil {
		t.Fatal(err)
	}
	a.clock.Advance(5 * time.Minute)
	if _, err := a.Get(t.Context(), old.ID); err != nil { // touch
		t.Fatal(err)
	}
	seen, expiry := old.LastSeen(), a.expireTime(t, old.ID)
	a.clock.Advance(5 * time.Minute)

	fresh := &Session{
		ID: old.ID, Subject: "alice", IdPSessionID: "sid-1",
		AccessToken: "access-2", RefreshToken: "refresh-2",
		Created: a.clock.Now(), // a caller mistake Replace must not honour
	}
	fresh.SetLastSeen(a.clock.Now()) // must be overwritten
	if err := a.Replace(t.Context(), fresh); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if !fresh.Created.Equal(old.Created) || !fresh.LastSeen().Equal(seen) {
		t.Errorf("after Replace: Created %v, LastSeen %v; want the stored %v, %v", fresh.Created, fresh.LastSeen(), old.Created, seen)
	}
	if ms := a.expireTime(t, old.ID); ms != expiry {
		t.Errorf("key expiry after Replace = %d, want unchanged %d", ms, expiry)
	}
	if n := a.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
	// The idle limit still counts from the stored last-seen time.
	a.clock.Advance(testIdle - 5*time.Minute)
	var exp *ExpiredError
	if _, err := a.withoutCache(t).Get(t.Context(), old.ID); !errors.As(err, &exp) || exp.Limit != LimitIdle {
		t.Errorf("Get one idle period after the last touch: error = %v, want idle expiry", err)
	}

	t.Run("other replica reads the new tokens", func(t *testing.T) {
		a, b := replicas(t)
		old := a.create(t, "alice", "sid-1")
		if _, err := b.Get(t.Context(), old.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Replace(t.Context(), &Session{ID: old.ID, Subject: "alice", AccessToken: "access-2", RefreshToken: "refresh-2"}); err != nil {
			t.Fatal(err)
		}
		var got *Session
		lat := redistest.WaitFor(t, "the other replica to see the refreshed tokens", time.Second, func() bool {
			var err error
			got, err = b.Get(t.Context(), old.ID)
			return err == nil && got.AccessToken == "access-2"
		})
		t.Logf("Replace seen by the other replica after %v", lat)
		if got.RefreshToken != "refresh-2" || !got.Created.Equal(old.Created) {
			t.Errorf("other replica after Replace: refresh %q, Created %v; want refresh-2, %v", got.RefreshToken, got.Created, old.Created)
		}
	})

	t.Run("missing session", func(t *testing.T) {
		a, _ := replicas(t)
		a.create(t, "alice", "sid-1")
		err := a.Replace(t.Context(), &Session{ID: NewID(), Subject: "bob", IdPSessionID: "sid-2"})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Replace(unknown ID) error = %v, want ErrNotFound", err)
		}
		if n := a.Len(); n != 1 {
			t.Errorf("Len = %d, want 1: Replace must not create", n)
		}
		if n, _ := a.DeleteBySubject(t.Context(), "bob"); n != 0 {
			t.Errorf("failed Replace indexed its subject: DeleteBySubject(bob) = %d", n)
		}
		checkRedisIndexes(t, a, true)
	})

	t.Run("new sid and subject are indexed", func(t *testing.T) {
		a, _ := replicas(t)
		s := a.create(t, "alice", "sid-1")
		other := a.create(t, "bob", "sid-1") // shares the old sid
		if err := a.Replace(t.Context(), &Session{ID: s.ID, Subject: "alice2", IdPSessionID: "sid-2"}); err != nil {
			t.Fatal(err)
		}
		checkRedisIndexes(t, a, false)
		if n, _ := a.DeleteByIdPSession(t.Context(), "sid-1"); n != 1 {
			t.Errorf("DeleteByIdPSession(old sid) = %d, want 1 (only the other session)", n)
		}
		if _, err := a.Get(t.Context(), s.ID); err != nil {
			t.Errorf("replaced session gone after DeleteByIdPSession(old sid): %v", err)
		}
		if _, err := a.Get(t.Context(), other.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other session after DeleteByIdPSession(old sid): %v, want ErrNotFound", err)
		}
		if n, _ := a.DeleteBySubject(t.Context(), "alice"); n != 0 {
			t.Errorf("DeleteBySubject(old subject) = %d, want 0", n)
		}
		if n, _ := a.DeleteByIdPSession(t.Context(), "sid-2"); n != 1 {
			t.Errorf("DeleteByIdPSession(new sid) = %d, want 1", n)
		}
		if keys := a.rt.keys(t); len(keys) != 0 {
			t.Errorf("keys left: %v", keys)
		}
	})
}

func TestRedis_CreateOverwrites(t *testing.T) {
	a, b := replicas(t)
	s := a.create(t, "alice", "sid-1")
	if _, err := b.Get(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}
	again := &Session{ID: s.ID, Subject: "bob", IdPSessionID: "sid-2", AccessToken: "second", Created: a.clock.Now()}
	if err := a.Create(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, "the other replica to read the second session", time.Second, func() bool {
		got, err := b.Get(t.Context(), s.ID)
		return err == nil && got.AccessToken == "second"
	})
	if n := a.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
	checkRedisIndexes(t, a, false)
	if n, _ := a.DeleteBySubject(t.Context(), "alice"); n != 0 {
		t.Errorf("DeleteBySubject(first session's subject) = %d, want 0", n)
	}
}

func TestRedis_DeleteByIndex(t *testing.T) {
	for _, tt := range deleteByIndexCases {
		t.Run(tt.name, func(t *testing.T) {
			a, b := replicas(t)
			ids := map[string]ID{}
			for _, sp := range deleteByIndexSessions {
				ids[sp.name] = a.create(t, sp.sub, sp.sid).ID
				if _, err := b.Get(t.Context(), ids[sp.name]); err != nil { // b caches them all
					t.Fatal(err)
				}
			}
			n, err := tt.del(t.Context(), a)
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			if n != len(tt.want) {
				t.Errorf("removed count = %d, want %d", n, len(tt.want))
			}
			for _, sp := range deleteByIndexSessions {
				removed := slices.Contains(tt.want, sp.name)
				for rname, ts := range map[string]*redisTestStore{"a": a, "b": b} {
					redistest.WaitFor(t, fmt.Sprintf("replica %s to agree on %s (removed %t)", rname, sp.name, removed), time.Second, func() bool {
						_, err := ts.Get(t.Context(), ids[sp.name])
						return removed == errors.Is(err, ErrNotFound)
					})
				}
			}
			if got := a.Len(); got != len(deleteByIndexSessions)-len(tt.want) {
				t.Errorf("Len = %d, want %d", got, len(deleteByIndexSessions)-len(tt.want))
			}
			if ends := append(a.ends.all(), b.ends.all()...); len(ends) != 0 {
				t.Errorf("OnEnd calls = %v, want none for an explicit delete", ends)
			}
			checkRedisIndexes(t, a, true)
		})
	}

	t.Run("counts only sessions that exist", func(t *testing.T) {
		a, _ := replicas(t)
		gone := a.create(t, "carol", "sid-c")
		kept := a.create(t, "carol", "sid-d")
		// As if Redis had expired the first by itself: its index entries stay.
		a.rt.admin.Del(t.Context(), a.sessionKey(lookupDigest(gone.ID)))
		if n, err := a.DeleteBySubject(t.Context(), "carol"); n != 1 || err != nil {
			t.Errorf("DeleteBySubject = %d, %v; want 1, nil", n, err)
		}
		if _, err := a.Get(t.Context(), kept.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(deleted session) = %v", err)
		}
		if n, err := a.DeleteByIdPSession(t.Context(), "sid-c"); n != 0 || err != nil {
			t.Errorf("DeleteByIdPSession(expired session's sid) = %d, %v; want 0, nil", n, err)
		}
		if keys := a.rt.keys(t); len(keys) != 0 {
			t.Errorf("keys left: %v", keys)
		}
	})
}

func TestNewRedisFromConfig(t *testing.T) {
	opts := Options{IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute}
	n := 10
	base := config.Redis{KeyPrefix: "gh:", Timeout: 300 * time.Millisecond, LocalCache: &n}
	t.Run("url", func(t *testing.T) {
		cfg := base
		cfg.URL = "redis://user:pw@127.0.0.1:6390/3"
		r, err := NewRedisFromConfig(config.Session{Redis: cfg}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		o := r.client.(interface{ Options() *redis.Options }).Options()
		if o.Addr != "127.0.0.1:6390" || o.DB != 3 || o.Username != "user" || o.Password != "pw" {
			t.Errorf("client options: addr %s db %d user %q", o.Addr, o.DB, o.Username)
		}
		for name, d := range map[string]time.Duration{"dial": o.DialTimeout, "read": o.ReadTimeout, "write": o.WriteTimeout, "pool": o.PoolTimeout} {
			if d != cfg.Timeout {
				t.Errorf("%s timeout = %v, want %v", name, d, cfg.Timeout)
			}
		}
		if !o.ContextTimeoutEnabled || o.PoolSize < 10 {
			t.Errorf("ContextTimeoutEnabled %t, PoolSize %d", o.ContextTimeoutEnabled, o.PoolSize)
		}
		if r.prefix != "gh:" || r.channel != "gh:invalidate" || r.cache == nil || r.timeout != cfg.Timeout {
			t.Errorf("store: prefix %q channel %q cache %v timeout %v", r.prefix, r.channel, r.cache != nil, r.timeout)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		cfg := base
		cfg.URL = "rediss://:pw@/2"
		cfg.Sentinel = config.RedisSentinel{Master: "mymaster", Addrs: []string{"127.0.0.1:26379"}}
		r, err := NewRedisFromConfig(config.Session{Redis: cfg}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, ok := r.client.(*redis.Client); !ok {
			t.Errorf("client is %T, want a failover *redis.Client", r.client)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		cfg := base
		cfg.Cluster = config.RedisCluster{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}}
		r, err := NewRedisFromConfig(config.Session{Redis: cfg}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		cc, ok := r.client.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("client is %T, want *redis.ClusterClient", r.client)
		}
		if o := cc.Options(); len(o.Addrs) != 2 || o.ReadTimeout != cfg.Timeout {
			t.Errorf("cluster options: addrs %v read timeout %v", o.Addrs, o.ReadTimeout)
		}
	})
	t.Run("bad url keeps the password out of the error", func(t *testing.T) {
		cfg := base
		cfg.URL = "redis://user:hunter2@127.0.0.1:port/0"
		_, err := NewRedisFromConfig(config.Session{Redis: cfg}, opts)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error = %v, want one without the password", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		cfg := base
		cfg.URL = "redis://127.0.0.1:6379/0"
		if _, err := NewRedisFromConfig(config.Session{Redis: cfg}, Options{}); err == nil {
			t.Error("zero timeouts accepted")
		}
	})
}

// TestRedis_GetCachedDoesNotAllocate pins the hot path: a cached session
// whose touch is not due costs no allocation (and no Redis call).
func TestRedis_GetCachedDoesNotAllocate(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("instrumented builds allocate")
	}
	a, _ := replicas(t)
	s := a.create(t, "alice", "sid-1")
	ctx := t.Context()
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := a.Get(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Get(cached) allocates %v times per call, want 0", n)
	}
}
