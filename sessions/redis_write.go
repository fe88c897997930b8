package sessions

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Create implements Store. Creating a session under an ID that is already
// stored replaces that session.
func (r *Redis) Create(ctx context.Context, s *Session) error {
	s.SetLastSeen(s.Created)
	d := lookupDigest(s.ID)
	raw, err := sealValue(d, s, r.adminKey())
	if err != nil {
		return err
	}
	seq := r.cache.seq(d)
	end := s.Created.Add(r.opts.AbsoluteTimeout)
	var set *redis.Cmd
	err = r.pipe(ctx, "create session", func(ctx context.Context, p redis.Pipeliner) {
		r.index(ctx, p, "sid", indexDigest("sid", s.IdPSessionID), d, end)
		r.index(ctx, p, "sub", indexDigest("sub", s.Subject), d, end)
		set = p.Do(ctx, "set", r.sessionKey(d), raw, "pxat", r.expiryAt(s, s.Created), "get")
	})
	if err != nil {
		return err
	}
	if set.Err() == nil { // the ID was in use: other replicas drop the old session
		if err := r.invalidateAll(ctx, "create session", d); err != nil {
			return err
		}
	}
	// Entered in the subject's login set only once written, so that a
	// login at another replica that trims it finds it to delete.
	if err := r.trimSubject(ctx, s, d); err != nil {
		// Not counted, it would escape the bound: take it back.
		_, _ = r.remove(ctx, "undo create session", []digest{d}, "")
		return err
	}
	r.cache.add(d, s, seq, &r.live)
	return nil
}

// index adds the session named d to the sid or sub index set named idx
// (none for the zero digest). The set expires no earlier than the
// session's absolute end: NX sets a new set's expiry, GT extends an
// existing one, and neither ever shortens it.
//
// Entries are added before the value that names them is written, and
// only deletions remove them, so a session is always in the sets its
// value names. A Replace that changes the sid leaves the session in its
// old sid's set too: DeleteBy* checks each member's value before deleting
// it and drops such stale entries, and the set expires with its sessions.
func (r *Redis) index(ctx context.Context, p redis.Pipeliner, kind string, idx, d digest, end time.Time) {
	if idx == (digest{}) {
		return
	}
	k, ms := r.indexKey(kind, idx), unixMilliCeil(end)
	p.SAdd(ctx, k, d.hex())
	p.Do(ctx, "pexpireat", k, ms, "nx")
	p.Do(ctx, "pexpireat", k, ms, "gt")
}

// invalidateAll tells every replica (this one too) to drop the session
// named d. Call it only once the change is written.
func (r *Redis) invalidateAll(ctx context.Context, op string, d digest) error {
	err := r.pipe(ctx, op, func(ctx context.Context, p redis.Pipeliner) {
		p.Publish(ctx, r.channel, d.hex())
	})
	r.cache.forget(d)
	return err
}

// Delete implements Store. When Redis cannot answer it returns an error
// wrapping ErrUnavailable and, if it could queue one, ErrRetrying: the
// store then retries the deletion in the background (redis_retry.go).
func (r *Redis) Delete(ctx context.Context, id ID) error {
	d := lookupDigest(id)
	_, err := r.revoke(ctx, "delete session", "s:"+d.hex(), "session "+id.LogID(), func(ctx context.Context) (int, error) {
		return r.remove(ctx, "delete session", []digest{d}, "")
	})
	return err
}

// DeleteByIdPSession implements Store; failures are retried as Delete's.
func (r *Redis) DeleteByIdPSession(ctx context.Context, sid string) (int, error) {
	return r.revokeIndexed(ctx, "sid", sid)
}

// DeleteBySubject implements Store; failures are retried as Delete's.
func (r *Redis) DeleteBySubject(ctx context.Context, subject string) (int, error) {
	return r.revokeIndexed(ctx, "sub", subject)
}

func (r *Redis) revokeIndexed(ctx context.Context, kind, v string) (int, error) {
	h := indexDigest(kind, v).hex()
	return r.revoke(ctx, "delete sessions by "+kind, kind+":"+h, kind+" "+h[:12], func(ctx context.Context) (int, error) {
		return r.deleteIndexed(ctx, kind, v)
	})
}

// deleteIndexed deletes the sessions in the kind index set of v. A
// member whose session no longer names v (gone, or moved to another sid
// by a refresh that raced with another) is only removed from the set.
func (r *Redis) deleteIndexed(ctx context.Context, kind, v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	idx := indexDigest(kind, v)
	set := r.indexKey(kind, idx)
	var members *redis.StringSliceCmd
	err := r.pipe(ctx, "read "+kind+" index", func(ctx context.Context, p redis.Pipeliner) {
		members = p.SMembers(ctx, set)
	})
	if err != nil || len(members.Val()) == 0 {
		return 0, err
	}
	ms := members.Val()
	gets := make([]*redis.StringCmd, len(ms))
	err = r.pipe(ctx, "read "+kind+" index", func(ctx context.Context, p redis.Pipeliner) {
		for i, m := range ms {
			gets[i] = p.Get(ctx, r.prefix+"s:"+m)
		}
	})
	if err != nil {
		return 0, err
	}
	var ds []digest
	var stale []any
	for i, m := range ms {
		d, ok := parseDigest(m)
		raw, err := gets[i].Bytes()
		sid, sub, hdrOK := valueIndexes(raw)
		if ok && err == nil && hdrOK && ((kind == "sid" && sid == idx) || (kind == "sub" && sub == idx)) {
			ds = append(ds, d)
		} else {
			stale = append(stale, m)
		}
	}
	if len(stale) > 0 {
		err := r.pipe(ctx, "clean "+kind+" index", func(ctx context.Context, p redis.Pipeliner) {
			p.SRem(ctx, set, stale...)
		})
		if err != nil {
			return 0, err
		}
	}
	if len(ds) == 0 {
		return 0, nil
	}
	return r.remove(ctx, "delete sessions by "+kind, ds, set)
}

// remove deletes the sessions named by ds, then their entries in their
// sid and sub index sets (and in the set named from, if any), and tells
// every replica to drop them. It returns how many sessions existed.
//
// The invalidations go out only once the deletions are done, so that a
// replica re-reading on an invalidation cannot find the old value. On a
// single Redis (or Sentinel's master) they go in the deletions' own
// pipeline, right after them: one connection runs its commands in order,
// and a Redis that stalls and resumes after this call gave up runs the
// deletions and their invalidations together. With Redis Cluster one
// pipeline runs on several nodes at once, so the invalidations follow in
// a second one. Invalidations are sent for sessions already gone too, so
// that a retried revocation announces what an earlier attempt deleted.
func (r *Redis) remove(ctx context.Context, op string, ds []digest, from string) (int, error) {
	for _, d := range ds {
		r.cache.forget(d) // stop serving it here at once
	}
	_, cluster := r.client.(*redis.ClusterClient)
	gets := make([]*redis.StringCmd, len(ds))
	err := r.pipe(ctx, op, func(ctx context.Context, p redis.Pipeliner) {
		for i, d := range ds {
			gets[i] = p.GetDel(ctx, r.sessionKey(d))
		}
		if !cluster {
			for _, d := range ds {
				p.Publish(ctx, r.channel, d.hex())
			}
		}
	})
	if err != nil {
		return 0, err
	}
	n := 0
	err = r.pipe(ctx, op, func(ctx context.Context, p redis.Pipeliner) {
		for i, d := range ds {
			r.cache.forget(d) // and drop what a concurrent Get cached meanwhile
			member := d.hex()
			if from != "" {
				p.SRem(ctx, from, member)
			}
			if cluster {
				p.Publish(ctx, r.channel, member)
			}
			raw, err := gets[i].Bytes()
			if err != nil {
				continue // already gone
			}
			n++
			if sid, sub, ok := valueIndexes(raw); ok {
				for _, idx := range []struct {
					kind string
					d    digest
				}{{"sid", sid}, {"sub", sub}} {
					if idx.d != (digest{}) {
						p.SRem(ctx, r.indexKey(idx.kind, idx.d), member)
					}
				}
				if sub != (digest{}) && r.opts.MaxPerUser > 0 {
					p.ZRem(ctx, r.indexKey(capKind, sub), member)
				}
			}
		}
	})
	if err != nil && !cluster {
		// The sessions are gone and announced; what is left are index
		// entries naming them, which DeleteBy* and ListBySubject skip and
		// which expire with the sets.
		err = nil
	}
	return n, err
}
