package sessions

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// stateKey names the key that records a used login state:
// <prefix>state:<hex(SHA-256("gatehouse state\x00" || state))>. It never
// matches the session keys' "s:*" pattern.
func (r *Redis) stateKey(state string) string { return r.prefix + "state:" + stateDigest(state).hex() }

// ConsumeState implements Store with one command, SET key 1 NX PX ttl:
// atomic on one key, so two replicas consuming the same state at once
// cannot both be first, and Redis Cluster serves it from one slot. The key
// expires with the login (ttl, rounded up to a millisecond); Redis's
// memory, not a count, bounds how many there are. A Redis failure is an
// error wrapping ErrUnavailable, never "first".
func (r *Redis) ConsumeState(ctx context.Context, state string, ttl time.Duration) (bool, error) {
	if err := checkConsume(state, ttl); err != nil {
		return false, err
	}
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	var set *redis.Cmd
	err := r.pipe(ctx, "consume login state", func(ctx context.Context, p redis.Pipeliner) {
		set = p.Do(ctx, "set", r.stateKey(state), "1", "nx", "px", ms)
	})
	if err != nil {
		return false, err
	}
	switch err := set.Err(); {
	case errors.Is(err, redis.Nil):
		return false, nil // NX: the key was there
	case err != nil:
		return false, r.failed("consume login state", err)
	}
	return true, nil
}
