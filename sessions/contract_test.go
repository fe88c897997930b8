package sessions

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// The store contract: one table of what every Store promises (the
// interface's doc comments), run against the memory store and the Redis
// store (a real redis-server, see redistest.Require). Store-specific
// behaviour (sharding and LRU eviction; the Redis cache, encryption,
// outages and replicas) stays in memory_test.go and redis_*_test.go.

// contractStore is a Store under test with its fake clock and OnEnd log.
type contractStore struct {
	Store
	clock *fakeClock
	ends  *endLog
}

// admin is the store's administration side; both stores have one.
func (cs contractStore) admin(t *testing.T) Admin {
	t.Helper()
	a, ok := cs.Store.(Admin)
	if !ok {
		t.Fatalf("%T does not implement Admin", cs.Store)
	}
	return a
}

// create stores a fresh session for sub and sid, created now.
func (cs contractStore) create(t *testing.T, sub, sid string) *Session {
	t.Helper()
	s := &Session{ID: NewID(), Subject: sub, User: sub, IdPSessionID: sid, AccessToken: "access-" + sub, Created: cs.clock.Now()}
	if err := cs.Create(t.Context(), s); err != nil {
		t.Fatalf("Create(sub %q): %v", sub, err)
	}
	return s
}

// storeKinds build each store on a fresh fake clock, with the test
// timeouts and opts changed by more.
var storeKinds = []struct {
	name string
	new  func(t *testing.T, more ...func(*Options)) contractStore
}{
	{"memory", func(t *testing.T, more ...func(*Options)) contractStore {
		clock, ends := newFakeClock(), &endLog{}
		opts := Options{IdleTimeout: testIdle, AbsoluteTimeout: testAbsolute, TouchInterval: testTouch,
			Now: clock.Now, OnEnd: ends.OnEnd}
		for _, f := range more {
			f(&opts)
		}
		m, err := NewMemory(1000, opts)
		if err != nil {
			t.Fatal(err)
		}
		return contractStore{Store: m, clock: clock, ends: ends}
	}},
	{"redis", func(t *testing.T, more ...func(*Options)) contractStore {
		rt := newRedisTest(t, redistest.Addr)
		ts := rt.newStore(t, newFakeClock(), rt.storeConfig(), more...)
		return contractStore{Store: ts.Redis, clock: ts.clock, ends: ts.ends}
	}},
}

func TestStoreContract(t *testing.T) {
	for _, tc := range []struct {
		name string
		more []func(*Options)
		run  func(t *testing.T, cs contractStore)
	}{
		{name: "create then get", run: func(t *testing.T, cs contractStore) {
			s := cs.create(t, "alice", "sid-1")
			got, err := cs.Get(t.Context(), s.ID)
			if err != nil || got.ID != s.ID || got.Subject != "alice" || got.AccessToken != "access-alice" || !got.Created.Equal(s.Created) {
				t.Fatalf("Get = %+v, %v; want alice's session", got, err)
			}
		}},
		{name: "get unknown", run: func(t *testing.T, cs contractStore) {
			cs.create(t, "alice", "sid-1") // a store with a session still finds none under another ID
			if got, err := cs.Get(t.Context(), NewID()); !errors.Is(err, ErrNotFound) || got != nil {
				t.Fatalf("Get(unknown) = %v, %v; want nil, ErrNotFound", got, err)
			}
		}},
		{name: "replace keeps created", run: func(t *testing.T, cs contractStore) {
			s := cs.create(t, "alice", "sid-1")
			cs.clock.Advance(time.Minute)
			next := &Session{ID: s.ID, Subject: s.Subject, User: s.User, IdPSessionID: s.IdPSessionID,
				AccessToken: "refreshed", Created: cs.clock.Now()}
			if err := cs.Replace(t.Context(), next); err != nil {
				t.Fatalf("Replace: %v", err)
			}
			got, err := cs.Get(t.Context(), s.ID)
			if err != nil || got.AccessToken != "refreshed" || !got.Created.Equal(s.Created) {
				t.Fatalf("Get after Replace = %+v, %v; want the new token and the first Created %v", got, err, s.Created)
			}
		}},
		{name: "replace missing", run: func(t *testing.T, cs contractStore) {
			s := &Session{ID: NewID(), Subject: "alice", Created: cs.clock.Now()}
			if err := cs.Replace(t.Context(), s); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Replace(missing) = %v, want ErrNotFound", err)
			}
		}},
		{name: "delete", run: func(t *testing.T, cs contractStore) {
			s := cs.create(t, "alice", "sid-1")
			other := cs.create(t, "bob", "sid-2")
			if err := cs.Delete(t.Context(), s.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := cs.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Delete = %v, want ErrNotFound", err)
			}
			if _, err := cs.Get(t.Context(), other.ID); err != nil {
				t.Errorf("another session after Delete: %v", err)
			}
			if err := cs.Delete(t.Context(), s.ID); err != nil {
				t.Errorf("Delete again = %v, want nil", err)
			}
			if ends := cs.ends.all(); len(ends) != 0 {
				t.Errorf("OnEnd after an explicit Delete: %v", ends)
			}
		}},
		{name: "idle expiry", run: func(t *testing.T, cs contractStore) {
			s := cs.create(t, "alice", "sid-1")
			cs.clock.Advance(testIdle)
			got, err := cs.Get(t.Context(), s.ID)
			exp, ok := errors.AsType[*ExpiredError](err)
			if !ok || got != nil || exp.Limit != LimitIdle || !exp.At.Equal(s.Created.Add(testIdle)) || exp.Subject != "alice" {
				t.Fatalf("Get at the idle limit = %v, %v; want *ExpiredError{idle, %v, alice}", got, err, s.Created.Add(testIdle))
			}
			if !errors.Is(err, ErrExpired) || errors.Is(err, ErrNotFound) {
				t.Errorf("errors.Is(%v, ErrExpired/ErrNotFound) = %t/%t, want true/false", err, errors.Is(err, ErrExpired), errors.Is(err, ErrNotFound))
			}
			if _, err := cs.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Get = %v, want ErrNotFound", err)
			}
			if want := []ending{{s.ID, "idle"}}; !slices.Equal(cs.ends.all(), want) {
				t.Errorf("OnEnd = %v, want %v", cs.ends.all(), want)
			}
		}},
		{name: "activity extends idle, not absolute", run: func(t *testing.T, cs contractStore) {
			s := cs.create(t, "alice", "sid-1")
			for elapsed := time.Duration(0); elapsed+testIdle/2 < testAbsolute; elapsed += testIdle / 2 {
				cs.clock.Advance(testIdle / 2)
				if _, err := cs.Get(t.Context(), s.ID); err != nil {
					t.Fatalf("Get %v after Create, touched every %v: %v", elapsed+testIdle/2, testIdle/2, err)
				}
			}
			cs.clock.Advance(testAbsolute - (cs.clock.Now().Sub(s.Created)) - time.Nanosecond)
			if _, err := cs.Get(t.Context(), s.ID); err != nil {
				t.Fatalf("Get 1ns before the absolute limit: %v", err)
			}
			cs.clock.Advance(time.Nanosecond)
			_, err := cs.Get(t.Context(), s.ID)
			if exp, ok := errors.AsType[*ExpiredError](err); !ok || exp.Limit != LimitAbsolute || !exp.At.Equal(s.Created.Add(testAbsolute)) {
				t.Fatalf("Get at the absolute limit = %v; want *ExpiredError{absolute, %v}", err, s.Created.Add(testAbsolute))
			}
			if !errors.Is(err, ErrExpired) {
				t.Errorf("errors.Is(%v, ErrExpired) = false", err)
			}
			if _, err := cs.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Get = %v, want ErrNotFound", err)
			}
			if want := []ending{{s.ID, "absolute"}}; !slices.Equal(cs.ends.all(), want) {
				t.Errorf("OnEnd = %v, want %v", cs.ends.all(), want)
			}
		}},
		{name: "delete by IdP session", run: func(t *testing.T, cs contractStore) {
			a1, a2 := cs.create(t, "alice", "sid-1"), cs.create(t, "alice", "sid-1")
			keep := cs.create(t, "alice", "sid-2")
			n, err := cs.DeleteByIdPSession(t.Context(), "sid-1")
			if err != nil || n != 2 {
				t.Fatalf("DeleteByIdPSession(sid-1) = %d, %v; want 2, nil", n, err)
			}
			for _, s := range []*Session{a1, a2} {
				if _, err := cs.Get(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get(a sid-1 session) = %v, want ErrNotFound", err)
				}
			}
			if _, err := cs.Get(t.Context(), keep.ID); err != nil {
				t.Errorf("the sid-2 session: %v", err)
			}
			if n, err := cs.DeleteByIdPSession(t.Context(), "sid-1"); err != nil || n != 0 {
				t.Errorf("DeleteByIdPSession again = %d, %v; want 0, nil", n, err)
			}
		}},
		{name: "delete by subject", run: func(t *testing.T, cs contractStore) {
			cs.create(t, "alice", "sid-1")
			cs.create(t, "alice", "sid-2")
			bob := cs.create(t, "bob", "sid-3")
			n, err := cs.DeleteBySubject(t.Context(), "alice")
			if err != nil || n != 2 {
				t.Fatalf("DeleteBySubject(alice) = %d, %v; want 2, nil", n, err)
			}
			if _, err := cs.Get(t.Context(), bob.ID); err != nil {
				t.Errorf("bob's session: %v", err)
			}
			if n, err := cs.DeleteBySubject(t.Context(), "nobody"); err != nil || n != 0 {
				t.Errorf("DeleteBySubject(nobody) = %d, %v; want 0, nil", n, err)
			}
		}},
		{name: "delete by IdP session of subject", run: func(t *testing.T, cs contractStore) {
			alice := cs.create(t, "alice", "shared-sid")
			bob := cs.create(t, "bob", "shared-sid")
			n, err := cs.DeleteByIdPSessionOfSubject(t.Context(), "shared-sid", "alice")
			if err != nil || n != 1 {
				t.Fatalf("DeleteByIdPSessionOfSubject(shared-sid, alice) = %d, %v; want 1, nil", n, err)
			}
			if _, err := cs.Get(t.Context(), alice.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("alice's session = %v, want ErrNotFound", err)
			}
			if _, err := cs.Get(t.Context(), bob.ID); err != nil {
				t.Errorf("bob's session, same sid: %v", err)
			}
		}},
		{name: "max per user ends the oldest", more: []func(*Options){func(o *Options) { o.MaxPerUser = 2 }}, run: func(t *testing.T, cs contractStore) {
			first := cs.create(t, "alice", "sid-1")
			cs.clock.Advance(time.Second)
			second := cs.create(t, "alice", "sid-2")
			bob := cs.create(t, "bob", "sid-3")
			cs.clock.Advance(time.Second)
			third := cs.create(t, "alice", "sid-4")
			if _, err := cs.Get(t.Context(), first.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("alice's oldest session past max_per_user = %v, want ErrNotFound", err)
			}
			for _, s := range []*Session{second, third, bob} {
				if _, err := cs.Get(t.Context(), s.ID); err != nil {
					t.Errorf("session of %s: %v", s.Subject, err)
				}
			}
			if n := cs.ends.count("max_per_user"); n != 1 {
				t.Errorf("OnEnd max_per_user %d times, want 1: %v", n, cs.ends.all())
			}
		}},
		{name: "login state used once", run: func(t *testing.T, cs contractStore) {
			for i, want := range []bool{true, false, false} {
				first, err := cs.ConsumeState(t.Context(), "state-1", 10*time.Minute)
				if err != nil || first != want {
					t.Fatalf("use %d: ConsumeState = %t, %v; want %t, nil", i+1, first, err, want)
				}
			}
			if first, err := cs.ConsumeState(t.Context(), "state-2", 10*time.Minute); err != nil || !first {
				t.Errorf("another state: ConsumeState = %t, %v; want true, nil", first, err)
			}
			if n := cs.Len(); n != 0 {
				t.Errorf("Len after login states = %d, want 0: they are not sessions", n)
			}
		}},
		{name: "administration", run: func(t *testing.T, cs contractStore) {
			a1 := cs.create(t, "alice", "sid-1")
			a2 := cs.create(t, "alice", "sid-2")
			cs.create(t, "bob", "sid-3")
			list, err := cs.admin(t).ListBySubject(t.Context(), "alice")
			if err != nil || len(list) != 2 {
				t.Fatalf("ListBySubject(alice) = %v, %v; want 2 sessions", list, err)
			}
			handles := []string{list[0].Handle, list[1].Handle}
			slices.Sort(handles)
			want := []string{a1.ID.Handle(), a2.ID.Handle()}
			slices.Sort(want)
			if !slices.Equal(handles, want) {
				t.Errorf("handles = %v, want %v", handles, want)
			}
			found, err := cs.admin(t).DeleteByHandle(t.Context(), a1.ID.Handle())
			if err != nil || !found {
				t.Fatalf("DeleteByHandle = %t, %v; want true, nil", found, err)
			}
			if _, err := cs.Get(t.Context(), a1.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after DeleteByHandle = %v, want ErrNotFound", err)
			}
			if found, err := cs.admin(t).DeleteByHandle(t.Context(), a1.ID.Handle()); err != nil || found {
				t.Errorf("DeleteByHandle again = %t, %v; want false, nil", found, err)
			}
		}},
	} {
		for _, kind := range storeKinds {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				tc.run(t, kind.new(t, tc.more...))
			})
		}
	}
}
