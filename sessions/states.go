package sessions

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Login states are single use (RFC 9700 §4.7.1): the callback consumes a
// state in the store before it calls the identity provider's token
// endpoint, so a replayed callback, with a saved copy of the login cookie,
// at this replica or another, fails without a token call and without a
// second session, even with a provider that accepts a code twice.
//
// The record that a state was used is not a session and never lives in
// the session LRU (design invariant 1): anyone can start and finish a
// login, and flooding the record must not evict a signed-in user. The
// memory store keeps it in a separate bounded set; the Redis store in one
// key per state with the login's lifetime. Only a hash of the state is
// kept (stateDigest), never the state itself.

// ErrTooManyLogins means the memory store's set of used login states is
// full of entries that have not expired yet: the login is refused rather
// than a used state forgotten (which would make it replayable). Existing
// sessions are not affected. It happens only when more than
// Options.MaxUsedStates logins finish within one login lifetime.
var ErrTooManyLogins = errors.New("too many sign-ins finished recently; used login states are full")

// DefaultMaxUsedStates bounds the memory store's used-state set when
// Options.MaxUsedStates is 0: about 110 bytes each (measured with
// BenchmarkMemory_BytesPerUsedState), so 11 MB at most.
const DefaultMaxUsedStates = 100000

// stateDigest is the hash under which a used state is kept.
func stateDigest(state string) digest {
	return sha256.Sum256([]byte("gatehouse state\x00" + state))
}

// checkConsume refuses arguments no caller should pass.
func checkConsume(state string, ttl time.Duration) error {
	switch {
	case state == "":
		return errors.New("sessions: consume state: empty state")
	case ttl <= 0:
		return fmt.Errorf("sessions: consume state: ttl must be positive (got %s)", ttl)
	}
	return nil
}

// usedStates is the memory store's set of used login states: bounded in
// count, each entry expiring after the ttl it was consumed with. The zero
// value is ready to use; it is safe for concurrent use.
//
// When full it first drops the entries that have expired; when every
// entry is still live it refuses the new one (ErrTooManyLogins) rather
// than evict a live entry: forgetting a used state would let its callback
// be replayed, and a refused login can simply be retried. Expired
// entries leave from the front of an insertion-ordered queue, so each
// consume does a bounded amount of work (amortised O(1)); with the one
// ttl every caller passes (the login lifetime) that order is expiry
// order.
type usedStates struct {
	mu    sync.Mutex
	until map[digest]int64 // expiry, Unix ns
	queue []stateEntry     // insertion order; queue[head:] are live candidates
	head  int
}

type stateEntry struct {
	d     digest
	until int64
}

// consume records d until now+ttl and reports whether it was new.
func (u *usedStates) consume(d digest, now time.Time, ttl time.Duration, max int) (bool, error) {
	if max <= 0 {
		max = DefaultMaxUsedStates
	}
	ns := now.UnixNano()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.until == nil {
		u.until = map[digest]int64{}
	}
	if until, ok := u.until[d]; ok && ns < until {
		return false, nil
	}
	u.expire(ns)
	if len(u.until) >= max {
		return false, ErrTooManyLogins
	}
	until := now.Add(ttl).UnixNano()
	u.until[d] = until
	u.queue = append(u.queue, stateEntry{d, until})
	return true, nil
}

// expire drops the expired entries at the front of the queue, and
// compacts the queue once its dead prefix is half of it.
func (u *usedStates) expire(ns int64) {
	for u.head < len(u.queue) && u.queue[u.head].until <= ns {
		e := u.queue[u.head]
		if u.until[e.d] == e.until { // not re-added since
			delete(u.until, e.d)
		}
		u.queue[u.head] = stateEntry{}
		u.head++
	}
	if u.head > 0 && u.head >= len(u.queue)/2 {
		n := copy(u.queue, u.queue[u.head:])
		clear(u.queue[n:])
		u.queue = u.queue[:n]
		u.head = 0
	}
}

// len returns how many used states are kept, for tests.
func (u *usedStates) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.until)
}

// ConsumeState implements Store: the used state goes into a set of its
// own, bounded by Options.MaxUsedStates, never into the session LRU. It
// returns ErrTooManyLogins when that set is full of live entries.
func (m *Memory) ConsumeState(_ context.Context, state string, ttl time.Duration) (bool, error) {
	if err := checkConsume(state, ttl); err != nil {
		return false, err
	}
	return m.states.consume(stateDigest(state), m.opts.Now(), ttl, m.opts.MaxUsedStates)
}

// UsedStates returns how many used login states the store keeps, for
// tests and metrics.
func (m *Memory) UsedStates() int { return m.states.len() }
