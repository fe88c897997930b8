package sessions

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Held forms (session.preserve_posts) are browser form POSTs that arrived
// without a live session, kept until the user signs in and then replayed
// once. The store keeps them, so that with the Redis store a form held by
// one replica is replayed by whichever replica the sign-in's callback
// reaches. What the store keeps is opaque: package auth seals each form
// with a key only the browser's login cookie carries, and names it by a
// random ID that the store keeps only hashed (heldDigest). Like used
// login states, held forms live apart from the sessions: holding one
// never evicts a session from the memory store's LRU.

// Bounds of the memory store's held forms: a flood of forms fills them,
// then no more are held until some expire.
const (
	MaxHeldForms     = 1000
	MaxHeldFormBytes = 64 << 20
)

// maxHeldFormSize bounds one sealed form (the largest
// session.preserve_posts_max_bytes, 16 MiB, plus its fields and seal).
const maxHeldFormSize = 16<<20 + 64<<10

// heldDigest is the hash under which a held form is kept.
func heldDigest(id []byte) digest {
	return sha256.Sum256(append([]byte("gatehouse held form\x00"), id...))
}

// checkHold refuses arguments no caller should pass.
func checkHold(id, sealed []byte, ttl time.Duration) error {
	switch {
	case len(id) < 16:
		return fmt.Errorf("sessions: hold form: id of %d bytes, want at least 16", len(id))
	case len(sealed) == 0 || len(sealed) > maxHeldFormSize:
		return fmt.Errorf("sessions: hold form: %d bytes, want 1 to %d", len(sealed), maxHeldFormSize)
	case ttl <= 0:
		return fmt.Errorf("sessions: hold form: ttl must be positive (got %s)", ttl)
	}
	return nil
}

// heldForms is the memory store's held forms, bounded in count and bytes.
// The zero value is ready; it is safe for concurrent use.
type heldForms struct {
	mu    sync.Mutex
	forms map[digest]heldEntry
	bytes int
}

type heldEntry struct {
	sealed []byte
	until  time.Time
}

func (s *heldForms) put(d digest, sealed []byte, now time.Time, ttl time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forms == nil {
		s.forms = map[digest]heldEntry{}
	}
	// Expired forms leave at every put (at most MaxHeldForms steps).
	for k, e := range s.forms {
		if !now.Before(e.until) {
			s.bytes -= len(e.sealed)
			delete(s.forms, k)
		}
	}
	if _, dup := s.forms[d]; dup || len(s.forms) >= MaxHeldForms || s.bytes+len(sealed) > MaxHeldFormBytes {
		return false
	}
	s.forms[d] = heldEntry{sealed: sealed, until: now.Add(ttl)}
	s.bytes += len(sealed)
	return true
}

func (s *heldForms) take(d digest, now time.Time) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.forms[d]
	if !ok {
		return nil, false
	}
	delete(s.forms, d)
	s.bytes -= len(e.sealed)
	return e.sealed, now.Before(e.until)
}

func (s *heldForms) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.forms)
}

// HoldForm implements Store: the form goes into a set of its own, bounded
// by MaxHeldForms and MaxHeldFormBytes, never into the session LRU.
func (m *Memory) HoldForm(_ context.Context, id, sealed []byte, ttl time.Duration) (bool, error) {
	if err := checkHold(id, sealed, ttl); err != nil {
		return false, err
	}
	return m.forms.put(heldDigest(id), sealed, m.opts.Now(), ttl), nil
}

// TakeForm implements Store.
func (m *Memory) TakeForm(_ context.Context, id []byte) ([]byte, error) {
	sealed, ok := m.forms.take(heldDigest(id), m.opts.Now())
	if !ok {
		return nil, ErrNotFound
	}
	return sealed, nil
}

// HeldForms returns how many forms the store holds, expired ones not yet
// swept included, for tests and metrics.
func (m *Memory) HeldForms() int { return m.forms.len() }

// formKey names the key of a held form:
// <prefix>form:<hex(SHA-256("gatehouse held form\x00" || id))>. It never
// matches the session keys' "s:*" pattern.
func (r *Redis) formKey(id []byte) string { return r.prefix + "form:" + heldDigest(id).hex() }

// HoldForm implements Store with SET key value NX PX ttl: the key expires
// with the login. Redis's memory bounds how many there are (each at most
// maxHeldFormSize). A Redis failure is an error wrapping ErrUnavailable.
func (r *Redis) HoldForm(ctx context.Context, id, sealed []byte, ttl time.Duration) (bool, error) {
	if err := checkHold(id, sealed, ttl); err != nil {
		return false, err
	}
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	var set *redis.Cmd
	err := r.pipe(ctx, "hold form", func(ctx context.Context, p redis.Pipeliner) {
		set = p.Do(ctx, "set", r.formKey(id), sealed, "nx", "px", ms)
	})
	if err != nil {
		return false, err
	}
	switch err := set.Err(); {
	case errors.Is(err, redis.Nil):
		return false, nil // NX: an ID already held (never, with random IDs)
	case err != nil:
		return false, r.failed("hold form", err)
	}
	return true, nil
}

// TakeForm implements Store with GETDEL: atomic on one key, so of two
// replicas taking the same form at once only one gets it. A Redis
// failure is an error wrapping ErrUnavailable, never ErrNotFound.
func (r *Redis) TakeForm(ctx context.Context, id []byte) ([]byte, error) {
	var get *redis.StringCmd
	err := r.pipe(ctx, "take form", func(ctx context.Context, p redis.Pipeliner) {
		get = p.GetDel(ctx, r.formKey(id))
	})
	if err != nil {
		return nil, err
	}
	b, err := get.Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, ErrNotFound
	case err != nil:
		return nil, r.failed("take form", err)
	}
	return b, nil
}
