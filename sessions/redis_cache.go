package sessions

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/redis/go-redis/v9"
)

// localCache is a Redis store's replica-local LRU of sessions, keyed by
// the digest that names them in Redis (invalidations carry only that),
// and sharded like the memory store. Its methods are no-ops on a nil
// cache, so the store calls them whether or not caching is on.
//
// Each shard counts the invalidations and purges that touched it (seq). A
// Get reads seq before it reads Redis and caches what it read only if seq
// has not moved meanwhile: otherwise an invalidation that arrived while
// the read was in flight could be undone by caching the value it revoked.
type localCache struct {
	shards []*cacheShard
	mask   byte
}

type cacheShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[digest, *Session]
	seq uint64
}

func newLocalCache(size int) *localCache {
	n := 1
	for n < maxShards && size/(n*2) >= minPerShard {
		n *= 2
	}
	c := &localCache{shards: make([]*cacheShard, n), mask: byte(n - 1)}
	for i := range c.shards {
		per := size / n
		if i < size%n {
			per++
		}
		// Eviction is not a session end: the session lives on in Redis.
		lru, _ := simplelru.NewLRU[digest, *Session](per, nil) // per >= 1: no error
		c.shards[i] = &cacheShard{lru: lru}
	}
	return c
}

func (c *localCache) shard(d digest) *cacheShard { return c.shards[d[0]&c.mask] }

func (c *localCache) get(d digest) (*Session, bool) {
	if c == nil {
		return nil, false
	}
	sh := c.shard(d)
	sh.mu.Lock()
	s, ok := sh.lru.Get(d)
	sh.mu.Unlock()
	return s, ok
}

// seq returns the invalidation count of d's shard, for add.
func (c *localCache) seq(d digest) uint64 {
	if c == nil {
		return 0
	}
	sh := c.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.seq
}

// add caches s if the cache is coherent (live) and nothing invalidated
// d's shard since seq was read.
func (c *localCache) add(d digest, s *Session, seq uint64, live *atomic.Bool) {
	if c == nil {
		return
	}
	sh := c.shard(d)
	sh.mu.Lock()
	if live.Load() && sh.seq == seq {
		sh.lru.Add(d, s)
	}
	sh.mu.Unlock()
}

// forget drops d's session, and stops reads in flight from caching it.
func (c *localCache) forget(d digest) {
	if c == nil {
		return
	}
	sh := c.shard(d)
	sh.mu.Lock()
	sh.seq++
	sh.lru.Remove(d)
	sh.mu.Unlock()
}

// purge drops every session, and stops reads in flight from caching.
func (c *localCache) purge() {
	if c == nil {
		return
	}
	for _, sh := range c.shards {
		sh.mu.Lock()
		sh.seq++
		sh.lru.Purge()
		sh.mu.Unlock()
	}
}

func (c *localCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for _, sh := range c.shards {
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// cacheUsable reports whether cached sessions may be served at now:
// while subscribed to invalidations and heard from within cacheLease, or
// within StaleFor of the first failure seen since.
func (r *Redis) cacheUsable(now time.Time) bool {
	if r.live.Load() && r.leaseHeld() {
		return true
	}
	down := r.downSince.Load()
	return r.staleFor > 0 && down != 0 && now.UnixNano()-down < int64(r.staleFor)
}

// leaseHeld reports whether the subscription was heard from within
// cacheLease: up to then, every invalidation published before has
// arrived.
func (r *Redis) leaseHeld() bool {
	return int64(time.Since(r.epoch))-r.heard.Load() < int64(cacheLease)
}

// heardAt records that the subscription was up to date at t.
func (r *Redis) heardAt(t time.Time) {
	ns := int64(t.Sub(r.epoch))
	for {
		old := r.heard.Load()
		if ns <= old || r.heard.CompareAndSwap(old, ns) {
			return
		}
	}
}

// sawFailure notes that Redis failed to answer: the cache stops being
// coherent, and is purged unless stale_for lets it serve a while longer.
// Run makes it coherent again once Redis answers.
func (r *Redis) sawFailure() {
	if r.cache == nil {
		return
	}
	r.downSince.CompareAndSwap(0, r.opts.Now().UnixNano())
	if r.live.Swap(false) && r.staleFor == 0 {
		r.cache.purge()
	}
}

// recovered makes the cache coherent again once subscribed and answered:
// it starts empty, since anything may have been revoked while this
// replica was not listening.
func (r *Redis) recovered() {
	r.cache.purge()
	r.downSince.Store(0)
	r.live.Store(true)
	r.ups.Add(1)
	r.kickRetries()
}

// invalidate drops the session an invalidation names.
func (r *Redis) invalidate(payload string) {
	if d, ok := parseDigest(payload); ok {
		r.cache.forget(d)
	}
}

// Health checks of the invalidation subscription: a ping when nothing
// arrived for pingInterval, and a reconnection when a ping is not
// answered within pongTimeout. The local cache serves only while the
// subscription was heard from within cacheLease, their sum: past it, a
// revocation might have been published that this replica has not heard,
// so it reads Redis instead. cacheLease stays under the one-second
// revocation bound with room for the delivery. Failed (re)connections
// are retried after a backoff that doubles up to maxBackoff.
const (
	pingInterval = 250 * time.Millisecond
	pongTimeout  = 500 * time.Millisecond
	cacheLease   = pingInterval + pongTimeout
	minBackoff   = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// Run listens for invalidations until ctx ends or the store is closed,
// keeping the local cache coherent; without it the local cache is never
// used. Start it once, in its own goroutine. Without a local cache it
// only waits.
func (r *Redis) Run(ctx context.Context) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.running.Add(1)
	r.mu.Unlock()
	defer r.running.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.closing, cancel)()
	if r.cache == nil {
		<-ctx.Done()
		return
	}
	defer func() {
		// Nobody listens any more: stop serving from the cache.
		r.live.Store(false)
		r.downSince.Store(0)
		r.cache.purge()
	}()
	r.listen(ctx)
}

// listen runs the subscription: it drops invalidated sessions, marks the
// cache coherent once subscribed, keeps its lease (heardAt) with pings,
// and marks it incoherent (sawFailure) when the connection breaks or a
// ping goes unanswered.
func (r *Redis) listen(ctx context.Context) {
	// Closing the subscription is what interrupts a receive when ctx ends.
	open := func() (*redis.PubSub, func() bool) {
		ps := r.client.Subscribe(ctx, r.channel)
		return ps, context.AfterFunc(ctx, func() { _ = ps.Close() })
	}
	ps, stop := open()
	defer func() {
		stop()
		_ = ps.Close()
	}()
	// subscribed: this connection's subscription is confirmed. pinged: a
	// ping sent at pingSent is unanswered.
	var subscribed, pinged bool
	var pingSent time.Time
	ping := func() bool {
		t := time.Now()
		if err := ps.Ping(ctx); err != nil {
			return false
		}
		pinged, pingSent = true, t
		return true
	}
	backoff := minBackoff
	for ctx.Err() == nil {
		if subscribed && !pinged && !r.live.Load() {
			// A command failed but the subscription seems fine: check.
			ping()
		}
		wait := pingInterval
		if pinged {
			wait = max(pongTimeout-time.Since(pingSent), time.Millisecond)
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			if timeout && !pinged && ping() {
				continue
			}
			if timeout && pinged && time.Since(pingSent) < pongTimeout {
				continue
			}
			// Broken, or a ping unanswered for pongTimeout.
			subscribed, pinged = false, false
			r.sawFailure()
			if cc, ok := r.client.(*redis.ClusterClient); ok {
				// The channel's slot may have a new master (a failover):
				// the subscription reconnects to the master the cluster's
				// slot map names, which go-redis otherwise refreshes only
				// when a command fails on that slot, or once a minute.
				cc.ReloadState(ctx)
			}
			if !r.cacheUsable(r.opts.Now()) {
				r.cache.purge() // stale_for has run out
			}
			if timeout {
				stop()
				_ = ps.Close()
				ps, stop = open()
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == r.channel {
				subscribed = true
				r.heardAt(time.Now())
				r.recovered()
			}
		case *redis.Pong:
			pinged = false
			if subscribed {
				// Every invalidation published before Redis saw the
				// ping came before its answer.
				r.heardAt(pingSent)
				if !r.live.Load() {
					r.recovered()
				}
			}
		case *redis.Message:
			r.invalidate(m.Payload)
			r.heardAt(time.Now())
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
