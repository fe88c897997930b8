package devidp

import (
	"container/list"
	"time"
)

// store is a bounded map of entries with an expiry, kept in insertion order.
// It is not safe for concurrent use; the Provider's mutex guards it.
type store[V any] struct {
	max   int
	items map[string]*list.Element
	order *list.List // of *storeEntry[V], oldest first
}

type storeEntry[V any] struct {
	key     string
	expires time.Time
	val     V
}

func newStore[V any](max int) *store[V] {
	return &store[V]{max: max, items: make(map[string]*list.Element), order: list.New()}
}

// put adds an entry. It first drops expired entries from the oldest end and
// then the oldest entries beyond the cap.
func (s *store[V]) put(now time.Time, key string, expires time.Time, v V) {
	for e := s.order.Front(); e != nil; e = s.order.Front() {
		if ent := e.Value.(*storeEntry[V]); now.Before(ent.expires) {
			break
		}
		s.remove(e)
	}
	if old, ok := s.items[key]; ok {
		s.remove(old)
	}
	for s.order.Len() >= s.max {
		s.remove(s.order.Front())
	}
	s.items[key] = s.order.PushBack(&storeEntry[V]{key: key, expires: expires, val: v})
}

// get returns the unexpired entry for key, dropping it if it has expired.
func (s *store[V]) get(now time.Time, key string) (V, bool) {
	var zero V
	e, ok := s.items[key]
	if !ok {
		return zero, false
	}
	ent := e.Value.(*storeEntry[V])
	if !now.Before(ent.expires) {
		s.remove(e)
		return zero, false
	}
	return ent.val, true
}

// delete removes key if present.
func (s *store[V]) delete(key string) {
	if e, ok := s.items[key]; ok {
		s.remove(e)
	}
}

func (s *store[V]) len() int { return len(s.items) }

func (s *store[V]) remove(e *list.Element) {
	delete(s.items, e.Value.(*storeEntry[V]).key)
	s.order.Remove(e)
}
