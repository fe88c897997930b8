package sessions

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Get implements Store. A session in the local cache costs a hash of its
// ID, one shard lock and no allocation, plus a Redis round trip once per
// TouchInterval to record activity.
func (r *Redis) Get(ctx context.Context, id ID) (*Session, error) {
	d := lookupDigest(id)
	now := r.opts.Now()
	if r.cache != nil && r.cacheUsable(now) {
		if s, ok := r.cache.get(d); ok {
			err := checkExpiry(s, now, r.opts.IdleTimeout, r.opts.AbsoluteTimeout)
			if err == nil {
				return r.touchCached(ctx, d, s, now)
			}
			if exp := err.(*ExpiredError); exp.Limit == LimitAbsolute {
				return nil, r.expire(ctx, d, s, exp)
			}
			// Idle as far as this replica knows; the user may have been
			// active on another one since. Redis knows.
		}
	}
	return r.load(ctx, id, d, now)
}

// touchCached returns the cached session s after recording activity at
// now when this replica's last touch is older than TouchInterval. Only
// one of the goroutines that find the touch due does it.
func (r *Redis) touchCached(ctx context.Context, d digest, s *Session, now time.Time) (*Session, error) {
	seen := s.lastSeen.Load()
	if now.UnixNano()-seen < int64(r.opts.TouchInterval) || !r.live.Load() ||
		!s.lastSeen.CompareAndSwap(seen, now.UnixNano()) {
		return s, nil
	}
	if err := r.touch(ctx, d, s, now); err != nil {
		if errors.Is(err, ErrUnavailable) && r.cacheUsable(now) {
			return s, nil // within stale_for
		}
		return nil, err
	}
	return s, nil
}

// touch extends the session's key to its deadline from now (GT: never
// shorter than another replica made it) and reads the expiry back, which
// tells whether the session still exists and when it was last seen
// anywhere.
func (r *Redis) touch(ctx context.Context, d digest, s *Session, now time.Time) error {
	key, want := r.sessionKey(d), r.expiryAt(s, now)
	var at *redis.Cmd
	err := r.pipe(ctx, "touch session", func(ctx context.Context, p redis.Pipeliner) {
		p.Do(ctx, "pexpireat", key, want, "gt")
		at = p.Do(ctx, "pexpiretime", key)
	})
	if err != nil {
		return err
	}
	ms, err := at.Int64()
	if err != nil {
		return r.failed("touch session", err) // a reply that is no integer: never "gone"
	}
	if ms == -2 { // gone: revoked, and the invalidation not here yet
		r.cache.forget(d)
		return ErrNotFound
	}
	seen := now
	if ms > want { // another replica saw the session later (a clock ahead of ours)
		if later := r.lastSeenAt(ms, s.Created); later.After(now) {
			seen = later
		}
	}
	s.SetLastSeen(seen)
	return nil
}

// readStored reads a session's sealed value and its key's expiry (Unix
// milliseconds) in one round trip; ErrNotFound when there is no such key.
func (r *Redis) readStored(ctx context.Context, d digest) (raw []byte, expiryMS int64, err error) {
	key := r.sessionKey(d)
	var get *redis.StringCmd
	var at *redis.Cmd
	err = r.pipe(ctx, "read session", func(ctx context.Context, p redis.Pipeliner) {
		get = p.Get(ctx, key)
		at = p.Do(ctx, "pexpiretime", key)
	})
	if err != nil {
		return nil, 0, err
	}
	// Only Redis saying "no such key" means the session is not there;
	// any other error is Redis failing (pipe reports those first).
	raw, err = get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, r.failed("read session", err)
	}
	if expiryMS, err = at.Int64(); err != nil {
		return nil, 0, r.failed("read session", err)
	}
	if expiryMS == -2 { // expired between the two commands
		return nil, 0, ErrNotFound
	}
	return raw, expiryMS, nil
}

// load reads the session from Redis, checks its limits, records activity
// and caches it.
func (r *Redis) load(ctx context.Context, id ID, d digest, now time.Time) (*Session, error) {
	seq := r.cache.seq(d)
	raw, ms, err := r.readStored(ctx, d)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			r.cache.forget(d)
		}
		return nil, err
	}
	s, err := openValue(id, d, raw)
	if err != nil {
		// Tampered with or corrupt: fail closed, and leave the key to its
		// expiry rather than act on what an attacker wrote.
		r.cache.forget(d)
		return nil, err
	}
	s.SetLastSeen(r.lastSeenAt(ms, s.Created))
	if err := checkExpiry(s, now, r.opts.IdleTimeout, r.opts.AbsoluteTimeout); err != nil {
		return nil, r.expire(ctx, d, s, err.(*ExpiredError))
	}
	if now.Sub(s.LastSeen()) >= r.opts.TouchInterval {
		if err := r.touch(ctx, d, s, now); err != nil {
			return nil, err
		}
	}
	r.cache.add(d, s, seq, &r.live)
	return s, nil
}

// expire deletes s, found past a limit, and reports its end to OnEnd if
// this call is the one that deleted it, so that replicas racing on one
// session report it once. It returns exp.
func (r *Redis) expire(ctx context.Context, d digest, s *Session, exp *ExpiredError) error {
	r.cache.forget(d)
	if n, err := r.remove(ctx, "delete expired session", []digest{d}, ""); err == nil && n == 1 && r.opts.OnEnd != nil {
		r.opts.OnEnd(s, string(exp.Limit))
	}
	return exp
}
