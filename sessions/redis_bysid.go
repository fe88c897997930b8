package sessions

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// deleteIfIndexes deletes the session value at KEYS[1] only when its
// clear-text header (redis_codec.go: version 1, then the sid and sub
// index digests) names the sid digest ARGV[1] and the sub digest ARGV[2],
// and returns the deleted value, or nil. One key, so one slot of a
// Cluster; check and delete are one atomic step.
var deleteIfIndexes = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v or string.len(v) < 65 or string.byte(v, 1) ~= 1 then return false end
if string.sub(v, 2, 33) ~= ARGV[1] or string.sub(v, 34, 65) ~= ARGV[2] then return false end
redis.call('DEL', KEYS[1])
return v
`)

// DeleteByIdPSessionOfSubject implements Store: it reads the sid's index
// set, then deletes each member whose stored value names both the sid and
// the subject, with a script that checks and deletes in one step (a
// session of another subject under the same sid is left alone), and
// drops the deleted sessions from their index sets. Invalidations follow
// remove's rule: on a single Redis they ride in the deletions' own
// pipeline (an extra one for a session the script kept only makes the
// replicas read it again), with Cluster in a second one. Failures are
// retried in the background as Delete's.
func (r *Redis) DeleteByIdPSessionOfSubject(ctx context.Context, sid, subject string) (int, error) {
	if sid == "" || subject == "" {
		return 0, nil
	}
	sidD, subD := indexDigest("sid", sid), indexDigest("sub", subject)
	const op = "delete sessions by sid and sub"
	key := "sidsub:" + sidD.hex() + ":" + subD.hex()
	return r.revoke(ctx, op, key, "sid "+sidD.hex()[:12], func(ctx context.Context) (int, error) {
		return r.deleteBySIDOfSubject(ctx, sidD, subD)
	})
}

func (r *Redis) deleteBySIDOfSubject(ctx context.Context, sidD, subD digest) (int, error) {
	const op = "delete sessions by sid and sub"
	set := r.indexKey("sid", sidD)
	var members *redis.StringSliceCmd
	err := r.pipe(ctx, "read sid index", func(ctx context.Context, p redis.Pipeliner) {
		members = p.SMembers(ctx, set)
	})
	if err != nil {
		return 0, err
	}
	var ds []digest
	for _, m := range members.Val() {
		if d, ok := parseDigest(m); ok {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return 0, nil
	}
	_, cluster := r.client.(*redis.ClusterClient)
	dels := make([]*redis.Cmd, len(ds))
	err = r.pipe(ctx, op, func(ctx context.Context, p redis.Pipeliner) {
		for i, d := range ds {
			r.cache.forget(d)
			dels[i] = deleteIfIndexes.Eval(ctx, p, []string{r.sessionKey(d)}, string(sidD[:]), string(subD[:]))
			if !cluster {
				p.Publish(ctx, r.channel, d.hex())
			}
		}
	})
	if err != nil {
		return 0, err
	}
	var gone []digest
	for i, d := range ds {
		if dels[i].Err() == nil {
			gone = append(gone, d)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	err = r.pipe(ctx, op, func(ctx context.Context, p redis.Pipeliner) {
		for _, d := range gone {
			r.cache.forget(d) // and drop what a concurrent Get cached meanwhile
			member := d.hex()
			p.SRem(ctx, set, member)
			p.SRem(ctx, r.indexKey("sub", subD), member)
			if r.opts.MaxPerUser > 0 {
				p.ZRem(ctx, r.indexKey(capKind, subD), member)
			}
			if cluster {
				p.Publish(ctx, r.channel, member)
			}
		}
	})
	if err != nil && !cluster {
		// The sessions are gone and announced; only index entries are
		// left, which DeleteBy* and ListBySubject skip.
		return len(gone), nil
	}
	return len(gone), err
}
