package sessions

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// newRedisBenchStore starts a Redis store on the shared server with the
// real clock, as production runs it: Get touches each session about once
// a second (the default TouchInterval).
func newRedisBenchStore(b *testing.B, localCache int) *Redis {
	b.Helper()
	rt := newRedisTest(b, redistest.Addr)
	cfg := rt.storeConfig()
	cfg.LocalCache = &localCache
	cfg.Timeout = time.Second
	client, err := newRedisClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRedis(client, cfg, Options{IdleTimeout: time.Hour, AbsoluteTimeout: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		r.Close()
	})
	if localCache > 0 {
		redistest.WaitFor(b, "the store to subscribe", 5*time.Second, r.live.Load)
	}
	return r
}

func redisBenchSessions(b *testing.B, r *Redis, n int) []ID {
	b.Helper()
	ids := make([]ID, n)
	for i := range ids {
		s := &Session{ID: NewID(), Subject: "sub", IdPSessionID: "sid", AccessToken: "access", Created: time.Now()}
		if err := r.Create(b.Context(), s); err != nil {
			b.Fatal(err)
		}
		ids[i] = s.ID
	}
	return ids
}

// BenchmarkRedis_Get reads 1,000 sessions from parallel goroutines, each
// walking them from its own offset: "local cache" serves them from the
// replica's LRU (a Redis touch per session per second), "no local cache"
// reads every one from Redis (one pipelined round trip: GET and
// PEXPIRETIME).
func BenchmarkRedis_Get(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"local cache", 10000}, {"no local cache", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRedisBenchStore(b, bc.cache)
			ids := redisBenchSessions(b, r, 1000)
			for _, id := range ids { // warm the cache
				if _, err := r.Get(b.Context(), id); err != nil {
					b.Fatal(err)
				}
			}
			ctx := b.Context()
			var offset atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(offset.Add(97))
				for pb.Next() {
					if _, err := r.Get(ctx, ids[i%len(ids)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkRedis_Replace stores a refreshed copy of one of 1,000
// sessions per operation, from parallel goroutines (one round trip to
// read the stored value, one to swap it), as token refreshes do.
func BenchmarkRedis_Replace(b *testing.B) {
	r := newRedisBenchStore(b, 10000)
	ids := redisBenchSessions(b, r, 1000)
	ctx := b.Context()
	var offset atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(offset.Add(97))
		for pb.Next() {
			s := &Session{ID: ids[i%len(ids)], Subject: "sub", IdPSessionID: "sid", AccessToken: "refreshed", Created: time.Now()}
			if err := r.Replace(ctx, s); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
