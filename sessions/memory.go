package sessions

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Memory is the in-memory Store: a bounded LRU of sessions, sharded by the
// first byte of the session ID so that parallel requests rarely wait on
// the same lock. With fewer than minPerShard*2 sessions allowed it keeps
// one shard, so eviction is exact LRU; above that each shard evicts its
// own least recently used session, which approximates global LRU.
//
// The zero value is not usable; build one with NewMemory.
type Memory struct {
	opts   Options
	shards []*shard
	mask   byte

	idxMu     sync.Mutex
	bySID     map[string]*idSet
	bySubject map[string]*idSet

	// subjectMu serialises the logins of one subject (by hash), so that
	// concurrent ones cannot together pass Options.MaxPerUser.
	subjectMu [64]sync.Mutex

	states usedStates // used login states (states.go), apart from the LRU
	forms  heldForms  // held forms (heldforms.go), apart from the LRU
}

type shard struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[ID, *Session]
	capacity int        // the LRU's size; slots move between shards, see moveSlot
	removing bool       // set around explicit removals, so onEvict can tell them from capacity evictions
	evicted  []*Session // capacity evictions collected by onEvict during Add
}

const (
	maxShards   = 64
	minPerShard = 128
)

// NewMemory returns an in-memory store holding at most maxSessions
// sessions.
func NewMemory(maxSessions int, opts Options) (*Memory, error) {
	if maxSessions < 1 {
		return nil, errors.New("sessions: max sessions must be at least 1")
	}
	if opts.IdleTimeout <= 0 || opts.AbsoluteTimeout <= 0 {
		return nil, errors.New("sessions: idle and absolute timeouts must be positive")
	}
	opts.defaults()
	// A touch interval longer than half the idle limit would let a session
	// that is used steadily expire between recorded touches.
	opts.TouchInterval = min(opts.TouchInterval, opts.IdleTimeout/2)
	n := 1
	for n < maxShards && maxSessions/(n*2) >= minPerShard {
		n *= 2
	}
	m := &Memory{
		opts:      opts,
		shards:    make([]*shard, n),
		mask:      byte(n - 1),
		bySID:     map[string]*idSet{},
		bySubject: map[string]*idSet{},
	}
	for i := range m.shards {
		// Shares that add up to maxSessions exactly.
		per := maxSessions / n
		if i < maxSessions%n {
			per++
		}
		sh := &shard{}
		lru, err := simplelru.NewLRU[ID, *Session](per, func(_ ID, s *Session) {
			// Runs under sh.mu, inside Add or Remove.
			if !sh.removing {
				m.unindex(s)
				sh.evicted = append(sh.evicted, s)
			}
		})
		if err != nil {
			return nil, err
		}
		sh.lru, sh.capacity = lru, per
		m.shards[i] = sh
	}
	return m, nil
}

func (m *Memory) shard(id ID) *shard { return m.shards[id[0]&m.mask] }

// The indexes change only under the lock of the session's shard (lock
// order: shard, then index), so they always agree with the LRU.

// Create implements Store. Creating a session under an ID that is already
// stored replaces that session.
//
// With Options.MaxPerUser, a subject that already has that many sessions
// first loses its oldest ones ("max_per_user"), and the slots they free
// move to the new session's shard, so that one user logging in again and
// again never evicts another user's session: only a login that makes the
// store hold more sessions than before can evict (the least recently
// used, "evicted").
func (m *Memory) Create(_ context.Context, s *Session) error {
	s.SetLastSeen(s.Created)
	if m.opts.MaxPerUser > 0 && s.Subject != "" {
		mu := &m.subjectMu[subjectHash(s.Subject)%uint32(len(m.subjectMu))]
		mu.Lock()
		defer mu.Unlock()
		m.trimSubject(s)
	}
	sh := m.shard(s.ID)
	sh.mu.Lock()
	if old, ok := sh.lru.Peek(s.ID); ok {
		m.unindex(old)
	}
	sh.lru.Add(s.ID, s)
	m.index(s)
	evicted := sh.evicted
	sh.evicted = nil
	sh.mu.Unlock()
	for _, e := range evicted {
		m.ended(e, "evicted")
	}
	return nil
}

// trimSubject ends the oldest sessions of s's subject until a new one
// fits under MaxPerUser. The caller holds the subject's lock.
func (m *Memory) trimSubject(s *Session) {
	m.idxMu.Lock()
	var ids []ID
	if set := m.bySubject[s.Subject]; set != nil && set.len() >= m.opts.MaxPerUser {
		ids = set.ids()
	}
	m.idxMu.Unlock()
	if ids == nil {
		return
	}
	olds := make([]*Session, 0, len(ids))
	for _, id := range ids {
		if id == s.ID {
			continue // Create under the same ID replaces it anyway
		}
		sh := m.shard(id)
		sh.mu.Lock()
		if o, ok := sh.lru.Peek(id); ok {
			olds = append(olds, o)
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(olds, func(a, b *Session) int { return a.Created.Compare(b.Created) })
	for _, o := range olds[:max(len(olds)-(m.opts.MaxPerUser-1), 0)] {
		if m.remove(o) {
			m.moveSlot(m.shard(o.ID), m.shard(s.ID))
			m.ended(o, "max_per_user")
		}
	}
}

// moveSlot moves the slot a removed session freed in from to to, where
// the session that replaces it goes, so that the replacement does not
// evict a session there. The shards' capacities keep adding up to the
// store's bound. Nothing moves when the slot was taken meanwhile.
func (m *Memory) moveSlot(from, to *shard) {
	if from == to {
		return
	}
	from.mu.Lock()
	moved := from.capacity > 1 && from.lru.Len() < from.capacity
	if moved {
		from.capacity--
		from.lru.Resize(from.capacity) // below capacity: evicts nothing
	}
	from.mu.Unlock()
	if moved {
		to.mu.Lock()
		to.capacity++
		to.lru.Resize(to.capacity)
		to.mu.Unlock()
	}
}

// subjectHash is FNV-1a of a subject, to pick its lock.
func subjectHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// Get implements Store. A hot session costs one shard lock and no
// allocation.
func (m *Memory) Get(_ context.Context, id ID) (*Session, error) {
	sh := m.shard(id)
	sh.mu.Lock()
	s, ok := sh.lru.Get(id)
	sh.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	now := m.opts.Now()
	if err := checkExpiry(s, now, m.opts.IdleTimeout, m.opts.AbsoluteTimeout); err != nil {
		if m.remove(s) {
			m.ended(s, string(err.(*ExpiredError).Limit))
		}
		return nil, err
	}
	if now.Sub(s.LastSeen()) >= m.opts.TouchInterval {
		s.SetLastSeen(now)
	}
	return s, nil
}

// Replace implements Store.
func (m *Memory) Replace(_ context.Context, s *Session) error {
	sh := m.shard(s.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, ok := sh.lru.Peek(s.ID)
	if !ok {
		return ErrNotFound
	}
	s.Created = old.Created
	s.SetLastSeen(old.LastSeen())
	if s.DeviceKey == "" {
		s.DeviceKey, s.BoundAt = old.DeviceKey, old.BoundAt // a binding is never undone by a Replace
	}
	sh.lru.Add(s.ID, s) // existing key: updates in place, never evicts
	if old.IdPSessionID != s.IdPSessionID || old.Subject != s.Subject {
		m.unindex(old)
		m.index(s)
	}
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, id ID) error {
	m.deleteID(id)
	return nil
}

// deleteID removes the session with the ID and reports whether there was
// one.
func (m *Memory) deleteID(id ID) bool {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.lru.Peek(id)
	if ok {
		m.removeLocked(sh, s)
	}
	return ok
}

// removeLocked removes s from its shard and the indexes; sh.mu is held.
func (m *Memory) removeLocked(sh *shard, s *Session) {
	sh.removing = true
	sh.lru.Remove(s.ID)
	sh.removing = false
	m.unindex(s)
}

// remove deletes s if it is still the stored session under its ID and
// reports whether it did.
func (m *Memory) remove(s *Session) bool {
	sh := m.shard(s.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.lru.Peek(s.ID)
	if !ok || cur != s {
		return false
	}
	m.removeLocked(sh, s)
	return true
}

// ended reports a session the store ended by itself.
func (m *Memory) ended(s *Session, reason string) {
	if m.opts.OnEnd != nil {
		m.opts.OnEnd(s, reason)
	}
}

// DeleteByIdPSession implements Store.
func (m *Memory) DeleteByIdPSession(ctx context.Context, sid string) (int, error) {
	return m.deleteIndexed(ctx, m.bySID, sid)
}

// DeleteBySubject implements Store.
func (m *Memory) DeleteBySubject(ctx context.Context, subject string) (int, error) {
	return m.deleteIndexed(ctx, m.bySubject, subject)
}

func (m *Memory) deleteIndexed(_ context.Context, idx map[string]*idSet, key string) (int, error) {
	if key == "" {
		return 0, nil
	}
	m.idxMu.Lock()
	ids := idx[key].ids()
	m.idxMu.Unlock()
	n := 0
	for _, id := range ids {
		if m.deleteID(id) {
			n++
		}
	}
	return n, nil
}

func (m *Memory) index(s *Session) {
	m.idxMu.Lock()
	addIndex(m.bySID, s.IdPSessionID, s.ID)
	addIndex(m.bySubject, s.Subject, s.ID)
	m.idxMu.Unlock()
}

func (m *Memory) unindex(s *Session) {
	m.idxMu.Lock()
	delIndex(m.bySID, s.IdPSessionID, s.ID)
	delIndex(m.bySubject, s.Subject, s.ID)
	m.idxMu.Unlock()
}

// idSet is an index entry: the sessions of one sid or subject. Most
// users have a few sessions, held in a slice (a fraction of a map's
// memory, measured with BenchmarkMemory_BytesPerSession); past
// idSetSliceMax it becomes a map, so a user with thousands of sessions
// does not make each login and logout linear.
type idSet struct {
	few  []ID
	many map[ID]struct{}
}

const idSetSliceMax = 16

func (s *idSet) len() int { return len(s.few) + len(s.many) }

func (s *idSet) add(id ID) {
	switch {
	case s.many != nil:
		s.many[id] = struct{}{}
	case slices.Contains(s.few, id):
	case len(s.few) < idSetSliceMax:
		s.few = append(s.few, id)
	default:
		s.many = make(map[ID]struct{}, 2*idSetSliceMax)
		for _, x := range s.few {
			s.many[x] = struct{}{}
		}
		s.many[id] = struct{}{}
		s.few = nil
	}
}

func (s *idSet) remove(id ID) {
	if s.many != nil {
		delete(s.many, id)
		return
	}
	if i := slices.Index(s.few, id); i >= 0 {
		s.few = slices.Clip(slices.Delete(s.few, i, i+1))
	}
}

// ids returns a copy of the set.
func (s *idSet) ids() []ID {
	if s == nil {
		return nil
	}
	out := slices.Clone(s.few)
	for id := range s.many {
		out = append(out, id)
	}
	return out
}

func addIndex(idx map[string]*idSet, key string, id ID) {
	if key == "" {
		return
	}
	set := idx[key]
	if set == nil {
		set = &idSet{}
		idx[key] = set
	}
	set.add(id)
}

func delIndex(idx map[string]*idSet, key string, id ID) {
	set := idx[key]
	if set == nil {
		return
	}
	set.remove(id)
	if set.len() == 0 {
		delete(idx, key)
	}
}

// ListBySubject implements Admin.
func (m *Memory) ListBySubject(_ context.Context, subject string) ([]Info, error) {
	m.idxMu.Lock()
	ids := m.bySubject[subject].ids()
	m.idxMu.Unlock()
	now := m.opts.Now()
	out := make([]Info, 0, len(ids))
	for _, id := range ids {
		sh := m.shard(id)
		sh.mu.Lock()
		s, ok := sh.lru.Peek(id)
		sh.mu.Unlock()
		if ok && checkExpiry(s, now, m.opts.IdleTimeout, m.opts.AbsoluteTimeout) == nil {
			out = append(out, s.Info())
		}
	}
	slices.SortFunc(out, func(a, b Info) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// DeleteByHandle implements Admin. It looks through every session: an
// administrator's call, not a request's.
func (m *Memory) DeleteByHandle(_ context.Context, handle string) (bool, error) {
	for _, sh := range m.shards {
		sh.mu.Lock()
		var found *Session
		for _, id := range sh.lru.Keys() {
			if id.Handle() == handle {
				found, _ = sh.lru.Peek(id)
				break
			}
		}
		if found != nil {
			m.removeLocked(sh, found)
		}
		sh.mu.Unlock()
		if found != nil {
			return true, nil
		}
	}
	return false, nil
}

// IndexSizes returns the number of keys in the sid and subject indexes, so
// tests can show that they shrink with the sessions.
func (m *Memory) IndexSizes() (sids, subjects int) {
	m.idxMu.Lock()
	defer m.idxMu.Unlock()
	return len(m.bySID), len(m.bySubject)
}

// Len implements Store.
func (m *Memory) Len() int {
	n := 0
	for _, sh := range m.shards {
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// Sweep removes the sessions that have passed their idle limit, walking
// each shard from its least recently used end, and returns how many it
// removed. A session past its absolute limit but recently used is removed
// at its next Get, or by a later sweep once idle.
func (m *Memory) Sweep() int {
	now := m.opts.Now()
	n := 0
	for _, sh := range m.shards {
		var ended []*Session
		var reasons []string
		sh.mu.Lock()
		for {
			_, s, ok := sh.lru.GetOldest()
			if !ok {
				break
			}
			err := checkExpiry(s, now, m.opts.IdleTimeout, m.opts.AbsoluteTimeout)
			if err == nil {
				break
			}
			m.removeLocked(sh, s)
			ended = append(ended, s)
			reasons = append(reasons, string(err.(*ExpiredError).Limit))
		}
		sh.mu.Unlock()
		for i, s := range ended {
			m.ended(s, reasons[i])
		}
		n += len(ended)
	}
	return n
}

// Run sweeps expired sessions every interval until ctx ends. Start it in
// its own goroutine.
func (m *Memory) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sweep()
		}
	}
}
