package sessions

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// capScript records a new session in its subject's login set and trims
// the set to the per-user bound, in one step, so that logins of one user
// at several replicas at once cannot together pass the bound: each
// trimmed member is returned to exactly one caller, which deletes its
// session. It touches a single key, so under Redis Cluster it runs on one
// slot with no hash tag needed.
//
// KEYS[1] is the subject's sorted set (member: a session's digest, score:
// its Created time in Unix ms). ARGV: the new member, its score, the
// bound, the lowest score of a session that may still be alive (older
// ones are past the absolute limit and dropped), and the set's expiry
// (Unix ms; only ever extended). It returns the members trimmed, oldest
// first, never the new one.
var capScript = redis.NewScript(`
local key, member, cap = KEYS[1], ARGV[1], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[4])
redis.call('ZADD', key, ARGV[2], member)
local n = redis.call('ZCARD', key)
local out = {}
if n > cap then
  for _, m in ipairs(redis.call('ZRANGE', key, 0, n - cap)) do
    if m ~= member and #out < n - cap then
      out[#out + 1] = m
    end
  end
  if #out > 0 then
    redis.call('ZREM', key, unpack(out))
  end
end
if redis.call('PEXPIRETIME', key) < tonumber(ARGV[5]) then
  redis.call('PEXPIREAT', key, ARGV[5])
end
return out
`)

// capKind names the per-subject login sets ("ucap:<digest of sub>").
const capKind = "ucap"

// trimSubject enters the session named d, just written, in its subject's
// login set and ends the subject's oldest sessions beyond
// Options.MaxPerUser ("max_per_user"), so the store holds more than the
// bound of one user's sessions only while logins are in flight. OnEnd gets
// the subject and user of each ended session, not its ID, which the store
// knows only by digest.
func (r *Redis) trimSubject(ctx context.Context, s *Session, d digest) error {
	if r.opts.MaxPerUser <= 0 || s.Subject == "" {
		return nil
	}
	key := r.indexKey(capKind, indexDigest("sub", s.Subject))
	end := s.Created.Add(r.opts.AbsoluteTimeout)
	oldest := s.Created.Add(-r.opts.AbsoluteTimeout)
	if now := r.opts.Now(); now.Add(-r.opts.AbsoluteTimeout).After(oldest) {
		oldest = now.Add(-r.opts.AbsoluteTimeout)
	}
	tctx, cancel := context.WithTimeout(ctx, r.timeout)
	members, err := capScript.Run(tctx, r.client, []string{key},
		d.hex(), s.Created.UnixMilli(), r.opts.MaxPerUser, oldest.UnixMilli(), unixMilliCeil(end)).StringSlice()
	cancel()
	if err != nil {
		return r.failed("trim sessions of subject", err)
	}
	var ds []digest
	for _, m := range members {
		if v, ok := parseDigest(m); ok {
			ds = append(ds, v)
		}
	}
	if len(ds) == 0 {
		return nil
	}
	n, err := r.remove(ctx, "end sessions past max_per_user", ds, "")
	if err != nil {
		return fmt.Errorf("end sessions past max_per_user: %w", err)
	}
	if r.opts.OnEnd != nil {
		for range n {
			r.opts.OnEnd(&Session{Subject: s.Subject, User: s.User}, "max_per_user")
		}
	}
	return nil
}
