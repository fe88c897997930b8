package sessions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// replaceScript swaps the session value at KEYS[1] for ARGV[2] only while
// the key still holds ARGV[1], the value the new one was computed from,
// and keeps the key's expiry. It returns 1 when it swapped, 0 when there
// is no such key (deleted or expired), and -1 when the value changed
// since it was read (another replica's Replace or Create came between).
// One key, so one slot of a Cluster; compare and swap are one atomic step.
//
// The value is sealed with a key only the session ID gives (redis_codec.go),
// so a script cannot merge fields; it only refuses a write computed from a
// value that is no longer there, and Replace merges again in Go.
var replaceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
`)

// replaceTries bounds how often Replace reads and merges again when
// another write to the same session came between its read and its swap.
// Writes to one session are rare (a refresh, a binding, a new-device
// notice), so a second try is already unusual.
const replaceTries = 8

// conflictBackoff waits before the try'th attempt (1 or more) of a
// Replace that lost a race: a random time below 2^try × 100µs (at most
// 12.8ms before the last try), so that writers racing on one session
// spread out instead of colliding again. It returns ctx's error if ctx
// ends first.
func conflictBackoff(ctx context.Context, try int) error {
	t := time.NewTimer(rand.N(time.Duration(1<<try) * 100 * time.Microsecond))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Replace implements Store. It reads the stored session, merges into s
// what a Replace keeps (Created, the last-seen time, and the device key
// and binding time when s has none), and swaps the value with
// replaceScript only if the stored one is still the one it read;
// otherwise it reads and merges again, at most replaceTries times, then
// fails with ErrUnavailable (never ErrNotFound: the session is there).
//
// This makes "a binding is never undone by a Replace" hold across
// replicas: a token refresh that read the session before another replica
// bound it cannot write its unbound copy over the binding (a session
// cookie copied before the binding would otherwise work again without the
// bound cookie). It costs one round trip to read and one to swap, as the
// unconditional swap did; the swap also sends back the value it read.
//
// WATCH/MULTI would give the same guarantee, but it needs a connection of
// its own for the transaction and a third round trip (WATCH, read, then
// MULTI/EXEC), and the index sets, which live in other slots of a
// Cluster, could not share its transaction. Storing the device key in a
// clear-text field that a script merges would change the value format
// that earlier versions read and expose whether a session is bound in a
// Redis dump.
func (r *Redis) Replace(ctx context.Context, s *Session) error {
	d := lookupDigest(s.ID)
	key := r.sessionKey(d)
	givenKey, givenAt := s.DeviceKey, s.BoundAt
	for try := range replaceTries {
		if try > 0 {
			if err := conflictBackoff(ctx, try); err != nil {
				// The caller gave up; Redis did not fail.
				return fmt.Errorf("redis replace session: %w: %w", ErrUnavailable, err)
			}
		}
		// The stored session's Created and last-seen time carry over.
		raw, ms, err := r.readStored(ctx, d)
		if err != nil {
			return err
		}
		old, err := openValue(s.ID, d, raw)
		if err != nil {
			return err
		}
		s.Created = old.Created
		s.SetLastSeen(r.lastSeenAt(ms, old.Created))
		s.DeviceKey, s.BoundAt = givenKey, givenAt
		if s.DeviceKey == "" {
			s.DeviceKey, s.BoundAt = old.DeviceKey, old.BoundAt // a binding is never undone by a Replace
		}
		sealed, err := sealValue(d, s, r.adminKey())
		if err != nil {
			return err
		}
		switch n, err := r.swap(ctx, s, d, key, raw, sealed); {
		case err != nil:
			return err
		case n == 0:
			return ErrNotFound // deleted since it was read
		case n == 1:
			return r.invalidateAll(ctx, "replace session", d)
		}
	}
	return fmt.Errorf("redis replace session %s: %w: another write to it came between each of %d reads and swaps; retry",
		s.ID.LogID(), ErrUnavailable, replaceTries)
}

// swap enters the session in its sid and sub index sets and runs
// replaceScript (EVALSHA, and EVAL when Redis does not have the script
// cached) in the same round trip. It returns the script's answer.
func (r *Redis) swap(ctx context.Context, s *Session, d digest, key string, read, sealed []byte) (int64, error) {
	keys := []string{key}
	var cas *redis.Cmd
	end := s.Created.Add(r.opts.AbsoluteTimeout)
	err := r.pipe(ctx, "replace session", func(ctx context.Context, p redis.Pipeliner) {
		r.index(ctx, p, "sid", indexDigest("sid", s.IdPSessionID), d, end)
		r.index(ctx, p, "sub", indexDigest("sub", s.Subject), d, end)
		cas = replaceScript.EvalSha(ctx, p, keys, read, sealed)
	})
	if err != nil {
		return 0, err
	}
	if isNoScript(cas.Err()) {
		err = r.pipe(ctx, "replace session", func(ctx context.Context, p redis.Pipeliner) {
			cas = replaceScript.Eval(ctx, p, keys, read, sealed)
		})
		if err != nil {
			return 0, err
		}
	}
	n, err := cas.Int64()
	if err != nil {
		return 0, r.failed("replace session", err) // a reply that is no integer: never "gone"
	}
	if n < -1 || n > 1 {
		return 0, r.failed("replace session", fmt.Errorf("unexpected script reply %d", n))
	}
	return n, nil
}

// isNoScript reports whether err is Redis saying it has no script of
// that SHA1 cached (after a restart, a failover or SCRIPT FLUSH).
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
