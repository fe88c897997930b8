package sessions

import (
	"context"
	"slices"

	"github.com/redis/go-redis/v9"
)

var _ Admin = (*Redis)(nil)

// adminKey is the key that seals admin descriptions, nil without one.
func (r *Redis) adminKey() []byte {
	if len(r.opts.AdminKeys) == 0 {
		return nil
	}
	return r.opts.AdminKeys[0]
}

// ListBySubject implements Admin: it reads the subject's index set, then
// each member's value, and opens only their admin descriptions (the
// sessions themselves stay sealed under keys only their cookies carry).
func (r *Redis) ListBySubject(ctx context.Context, subject string) ([]Info, error) {
	if subject == "" {
		return nil, nil
	}
	set := r.indexKey("sub", indexDigest("sub", subject))
	var members *redis.StringSliceCmd
	if err := r.pipe(ctx, "read sub index", func(ctx context.Context, p redis.Pipeliner) {
		members = p.SMembers(ctx, set)
	}); err != nil {
		return nil, err
	}
	ms := members.Val()
	gets := make([]*redis.StringCmd, len(ms))
	ats := make([]*redis.Cmd, len(ms))
	if err := r.pipe(ctx, "read sessions", func(ctx context.Context, p redis.Pipeliner) {
		for i, m := range ms {
			gets[i] = p.Get(ctx, r.prefix+"s:"+m)
			ats[i] = p.Do(ctx, "pexpiretime", r.prefix+"s:"+m)
		}
	}); err != nil && len(ms) > 0 {
		return nil, err
	}
	now := r.opts.Now()
	want := indexDigest("sub", subject)
	out := make([]Info, 0, len(ms))
	for i, m := range ms {
		d, ok := parseDigest(m)
		raw, err := gets[i].Bytes()
		h, hok := parseHeader(raw)
		if !ok || err != nil || !hok || h.sub != want {
			continue
		}
		rec, ok := openAdmin(r.opts.AdminKeys, d, h.admin)
		if !ok {
			rec = adminRecord{Subject: subject} // sealed with a key no longer configured
		}
		ms, _ := ats[i].Int64()
		if ms < 0 {
			continue
		}
		last := r.lastSeenAt(ms, rec.Created)
		if !rec.Created.IsZero() && (!now.Before(rec.Created.Add(r.opts.AbsoluteTimeout)) || !now.Before(last.Add(r.opts.IdleTimeout))) {
			continue // ended; Redis removes it
		}
		out = append(out, Info{Handle: d.hex(), Subject: rec.Subject, User: rec.User, Email: rec.Email,
			Created: rec.Created.UTC(), LastSeen: last.UTC(), ClientIP: rec.ClientIP, UserAgent: rec.UserAgent,
			DeviceBound: rec.Bound})
	}
	slices.SortFunc(out, func(a, b Info) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// DeleteByHandle implements Admin: the handle is the session key's
// digest. Failures are retried as Delete's.
func (r *Redis) DeleteByHandle(ctx context.Context, handle string) (bool, error) {
	d, ok := parseDigest(handle)
	if !ok {
		return false, nil
	}
	n, err := r.revoke(ctx, "revoke session", "s:"+d.hex(), "handle "+d.hex()[:12], func(ctx context.Context) (int, error) {
		return r.remove(ctx, "revoke session", []digest{d}, "")
	})
	return n > 0, err
}
