package sessions

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the start of every fake clock: a fixed instant, so failures print
// the same times on every run.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is an injected clock that tests move forward by hand. It is
// safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// ending is one OnEnd call.
type ending struct {
	id     ID
	reason string
}

// endLog records OnEnd calls; it is safe for concurrent use.
type endLog struct {
	mu   sync.Mutex
	ends []ending
}

func (l *endLog) OnEnd(s *Session, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ends = append(l.ends, ending{s.ID, reason})
}

func (l *endLog) all() []ending {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ending(nil), l.ends...)
}

// count returns how many sessions ended for reason.
func (l *endLog) count(reason string) int {
	n := 0
	for _, e := range l.all() {
		if e.reason == reason {
			n++
		}
	}
	return n
}

// Test timeouts: idle well below absolute, touch throttled to 1s.
const (
	testIdle     = 30 * time.Minute
	testAbsolute = 8 * time.Hour
	testTouch    = time.Second
)

// testStore is a Memory with a fake clock and an OnEnd recorder.
type testStore struct {
	*Memory
	clock *fakeClock
	ends  *endLog
}

func newTestStore(t testing.TB, maxSessions int) *testStore {
	t.Helper()
	clock, ends := newFakeClock(), &endLog{}
	m, err := NewMemory(maxSessions, Options{
		IdleTimeout:     testIdle,
		AbsoluteTimeout: testAbsolute,
		TouchInterval:   testTouch,
		Now:             clock.Now,
		OnEnd:           ends.OnEnd,
	})
	if err != nil {
		t.Fatalf("NewMemory(%d): %v", maxSessions, err)
	}
	return &testStore{Memory: m, clock: clock, ends: ends}
}

// create stores a fresh session for sub and sid, created now.
func (ts *testStore) create(t testing.TB, sub, sid string) *Session {
	t.Helper()
	s := &Session{
		ID:           NewID(),
		Subject:      sub,
		IdPSessionID: sid,
		AccessToken:  "access-" + sub,
		Created:      ts.clock.Now(),
	}
	if err := ts.Create(t.Context(), s); err != nil {
		t.Fatalf("Create(sub %q): %v", sub, err)
	}
	return s
}

// storeContains reports whether id is stored, without touching its recency or
// last-seen time the way Get would.
func storeContains(m *Memory, id ID) bool {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.lru.Contains(id)
}

// storedSessions returns every stored session, expired ones included.
func storedSessions(m *Memory) []*Session {
	var all []*Session
	for _, sh := range m.shards {
		sh.mu.Lock()
		all = append(all, sh.lru.Values()...)
		sh.mu.Unlock()
	}
	return all
}

// checkIndexes fails t unless the sid and subject indexes hold exactly
// the stored sessions' keys: every stored session is findable by its sid
// and subject, and no index entry names a session that is gone.
func checkIndexes(t testing.TB, m *Memory) {
	t.Helper()
	wantSID := map[string]*idSet{}
	wantSub := map[string]*idSet{}
	for _, s := range storedSessions(m) {
		addIndex(wantSID, s.IdPSessionID, s.ID)
		addIndex(wantSub, s.Subject, s.ID)
	}
	m.idxMu.Lock()
	defer m.idxMu.Unlock()
	diffIndex(t, "sid", m.bySID, wantSID)
	diffIndex(t, "subject", m.bySubject, wantSub)
}

func diffIndex(t testing.TB, name string, gotSets, wantSets map[string]*idSet) {
	t.Helper()
	got, want := map[string][]ID{}, map[string][]ID{}
	for k, s := range gotSets {
		got[k] = s.ids()
	}
	for k, s := range wantSets {
		want[k] = s.ids()
	}
	for key, ids := range want {
		for _, id := range ids {
			if !slices.Contains(got[key], id) {
				t.Errorf("%s index: stored session %v under %q is not indexed", name, id, key)
			}
		}
	}
	for key, ids := range got {
		if len(ids) == 0 {
			t.Errorf("%s index: empty set left under %q", name, key)
		}
		for i, id := range ids {
			if !slices.Contains(want[key], id) {
				t.Errorf("%s index: %q names %v, which is not stored under that key", name, key, id)
			}
			if slices.Contains(ids[i+1:], id) {
				t.Errorf("%s index: %q names %v twice", name, key, id)
			}
		}
	}
}

// idInShard returns a random ID whose first byte is b, so tests can aim
// sessions at a chosen shard.
func idInShard(b byte) ID {
	id := NewID()
	id[0] = b
	return id
}

// deleteByIndexSessions and deleteByIndexCases are the contract of
// DeleteBySubject and DeleteByIdPSession that every store is held to:
// s1..s4 cover shared subjects, shared sids, and an empty sid.
var deleteByIndexSessions = []struct{ name, sub, sid string }{
	{"s1", "alice", "x"},
	{"s2", "alice", "y"},
	{"s3", "bob", "x"},
	{"s4", "carol", ""},
}

var deleteByIndexCases = []struct {
	name string
	del  func(context.Context, Store) (int, error)
	want []string // names removed
}{
	{"by subject", func(ctx context.Context, s Store) (int, error) { return s.DeleteBySubject(ctx, "alice") }, []string{"s1", "s2"}},
	{"by sid", func(ctx context.Context, s Store) (int, error) { return s.DeleteByIdPSession(ctx, "x") }, []string{"s1", "s3"}},
	{"subject with one session", func(ctx context.Context, s Store) (int, error) { return s.DeleteBySubject(ctx, "carol") }, []string{"s4"}},
	{"unknown subject", func(ctx context.Context, s Store) (int, error) { return s.DeleteBySubject(ctx, "dave") }, nil},
	{"unknown sid", func(ctx context.Context, s Store) (int, error) { return s.DeleteByIdPSession(ctx, "z") }, nil},
	{"empty subject", func(ctx context.Context, s Store) (int, error) { return s.DeleteBySubject(ctx, "") }, nil},
	{"empty sid matches no session without one", func(ctx context.Context, s Store) (int, error) { return s.DeleteByIdPSession(ctx, "") }, nil},
	{"subject is not a sid", func(ctx context.Context, s Store) (int, error) { return s.DeleteByIdPSession(ctx, "alice") }, nil},
}
