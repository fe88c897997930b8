package sessions

import (
	"context"
	"errors"
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
	bySID     map[string]map[ID]struct{}
	bySubject map[string]map[ID]struct{}
}

type shard struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[ID, *Session]
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
	n := 1
	for n < maxShards && maxSessions/(n*2) >= minPerShard {
		n *= 2
	}
	m := &Memory{
		opts:      opts,
		shards:    make([]*shard, n),
		mask:      byte(n - 1),
		bySID:     map[string]map[ID]struct{}{},
		bySubject: map[string]map[ID]struct{}{},
	}
	per := (maxSessions + n - 1) / n
	for i := range m.shards {
		sh := &shard{}
		lru, err := simplelru.NewLRU[ID, *Session](per, func(_ ID, s *Session) {
			if !sh.removing {
				sh.evicted = append(sh.evicted, s)
			}
		})
		if err != nil {
			return nil, err
		}
		sh.lru = lru
		m.shards[i] = sh
	}
	return m, nil
}

func (m *Memory) shard(id ID) *shard { return m.shards[id[0]&m.mask] }

// Create implements Store.
func (m *Memory) Create(_ context.Context, s *Session) error {
	s.SetLastSeen(s.Created)
	m.index(s)
	sh := m.shard(s.ID)
	sh.mu.Lock()
	sh.lru.Add(s.ID, s)
	evicted := sh.evicted
	sh.evicted = nil
	sh.mu.Unlock()
	for _, e := range evicted {
		m.ended(e, "evicted")
	}
	return nil
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
	old, ok := sh.lru.Peek(s.ID)
	if ok {
		s.Created = old.Created
		s.SetLastSeen(old.LastSeen())
		sh.lru.Add(s.ID, s) // existing key: updates in place, never evicts
	}
	sh.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if old.IdPSessionID != s.IdPSessionID || old.Subject != s.Subject {
		m.unindex(old)
		m.index(s)
	}
	return nil
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, id ID) error {
	sh := m.shard(id)
	sh.mu.Lock()
	s, ok := sh.lru.Peek(id)
	if ok {
		sh.removing = true
		sh.lru.Remove(id)
		sh.removing = false
	}
	sh.mu.Unlock()
	if ok {
		m.unindex(s)
	}
	return nil
}

// remove deletes s if it is still the stored session under its ID and
// reports whether it did.
func (m *Memory) remove(s *Session) bool {
	sh := m.shard(s.ID)
	sh.mu.Lock()
	cur, ok := sh.lru.Peek(s.ID)
	ok = ok && cur == s
	if ok {
		sh.removing = true
		sh.lru.Remove(s.ID)
		sh.removing = false
	}
	sh.mu.Unlock()
	if ok {
		m.unindex(s)
	}
	return ok
}

// ended cleans up after a session the store ended by itself.
func (m *Memory) ended(s *Session, reason string) {
	if reason == "evicted" {
		m.unindex(s)
	}
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

func (m *Memory) deleteIndexed(ctx context.Context, idx map[string]map[ID]struct{}, key string) (int, error) {
	if key == "" {
		return 0, nil
	}
	m.idxMu.Lock()
	ids := make([]ID, 0, len(idx[key]))
	for id := range idx[key] {
		ids = append(ids, id)
	}
	m.idxMu.Unlock()
	for _, id := range ids {
		if err := m.Delete(ctx, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
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

func addIndex(idx map[string]map[ID]struct{}, key string, id ID) {
	if key == "" {
		return
	}
	set := idx[key]
	if set == nil {
		set = map[ID]struct{}{}
		idx[key] = set
	}
	set[id] = struct{}{}
}

func delIndex(idx map[string]map[ID]struct{}, key string, id ID) {
	set := idx[key]
	delete(set, id)
	if len(set) == 0 {
		delete(idx, key)
	}
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
			sh.removing = true
			sh.lru.Remove(s.ID)
			sh.removing = false
			ended = append(ended, s)
			reasons = append(reasons, string(err.(*ExpiredError).Limit))
		}
		sh.mu.Unlock()
		for i, s := range ended {
			m.unindex(s)
			if m.opts.OnEnd != nil {
				m.opts.OnEnd(s, reasons[i])
			}
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
