package sessions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/config"
)

// ErrUnavailable means the session store could not answer (Redis down,
// too slow, or refusing the command): every error of a store I/O wraps
// it. It never means "no session": requests then get a 503 page, never a
// login, and a revocation that returns it has not been done (see
// ErrRetrying). Callers branch on it with errors.Is.
var ErrUnavailable = errors.New("session store unavailable")

// Redis is the Store that replicas share through Redis 7.0 or later, or
// Valkey (it uses PEXPIRETIME, PEXPIREAT NX/GT, SET PXAT GET and
// single-key Lua scripts). Build one
// with NewRedisFromConfig, or NewRedis around a client; it is safe for
// concurrent use. Start Run for its local cache to be used, and Close it
// at the end.
//
// Redis holds the truth. Each replica keeps the sessions it serves in a
// local LRU (config.Redis.LocalCache; 0 turns it off and every Get reads
// Redis), so that a hot session costs no Redis call and no allocation.
// The cache is used only while Run is subscribed to the invalidation
// channel: Delete, DeleteBy* and Replace on any replica publish the
// session's hashed key there and every replica drops it. A replica whose
// subscription drops cannot know what was revoked meanwhile, so it purges
// its cache (at once, or after StaleFor) and serves from Redis until it is
// subscribed again.
//
// Time. Expiry is computed from the store's clock (Options.Now), exactly as
// in the memory store: a Get enforces the absolute limit from Created and
// the idle limit from the last-seen time. Redis keeps the last-seen time
// in the key's expiry, which is set as an absolute time (PEXPIREAT, in
// milliseconds, rounded up) to the earlier of last-seen + idle timeout
// and Created + absolute timeout, and read back with PEXPIRETIME: a key
// expiring at E was last seen at E - idle timeout. Redis thus deletes a
// session by itself when it ends, while a Get never trusts Redis's clock.
// Clocks must agree (NTP): a replica whose clock is behind Redis's by D
// sees its sessions end D early (Redis drops the keys), one ahead keeps
// keys D longer in Redis (Get still enforces the limits), and skew
// between replicas adds to the idle limit's tolerance. For the same
// reason a test clock may run ahead of real time, never behind it.
//
// Activity extends the key's expiry at most once per TouchInterval per
// session per replica (a PEXPIREAT on a Get when this replica's last
// touch is older than that), so idle expiry is exact to within
// TouchInterval. A cached copy that looks idle-expired is re-read from
// Redis before it is declared expired, since the user may have been
// active on another replica meanwhile.
//
// Failures. Every command runs under config.Redis.Timeout. A Get that
// needs Redis while it cannot answer returns an error wrapping
// ErrUnavailable. Cached sessions keep serving for StaleFor after a
// failure was first seen (default 0: not at all). The store recovers by
// itself when Redis answers again.
//
// The local cache serves only while the subscription is heard from: Run
// pings it when it is silent, and a cache whose subscription has not
// answered for cacheLease (750ms) reads Redis instead, so a replica that
// cannot hear invalidations (Redis stalled, a silent network) stops
// serving revoked sessions within the one-second revocation bound even
// before it notices the failure. A revocation that Redis could not do is
// retried in the background (redis_retry.go).
//
// What it does not do: OnEnd reports the idle and absolute expiries a Get
// finds; a session Redis expired by itself ends silently, and a local
// cache eviction is not an end (there is no "evicted"). Values are
// encrypted as described in redis_codec.go.
type Redis struct {
	client   redis.UniversalClient
	opts     Options
	timeout  time.Duration
	staleFor time.Duration
	prefix   string
	channel  string

	cache *localCache // nil when local caching is off

	// live is set while Run is subscribed to invalidations and Redis
	// answers: the local cache is then coherent. downSince is the time
	// (Options.Now, Unix ns) a failure was first seen, 0 while live or
	// before the first subscription. ups counts the times the cache
	// became coherent (each after a purge), for tests.
	live      atomic.Bool
	downSince atomic.Int64
	ups       atomic.Uint64
	// heard is when the subscription last proved it was up to date: the
	// sending of a ping it answered, or a message, in nanoseconds of
	// real time since epoch (monotonic: it measures the network, not the
	// store's clock).
	heard atomic.Int64
	epoch time.Time

	retries *retryQueue

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
	closing context.Context
	close   context.CancelFunc
}

var _ Store = (*Redis)(nil)

// Defaults for NewRedis when cfg leaves them unset.
const (
	defaultRedisPrefix  = "gatehouse:"
	defaultRedisTimeout = 500 * time.Millisecond
)

// NewRedisFromConfig builds the Redis store from its configuration: a
// client for the URL, the Sentinel master or the Cluster, with
// cfg.Redis.Timeout as dial, read, write and pool-wait timeouts. It
// contacts nobody until used.
func NewRedisFromConfig(cfg config.Session, opts Options) (*Redis, error) {
	client, err := newRedisClient(cfg.Redis)
	if err != nil {
		return nil, err
	}
	r, err := NewRedis(client, cfg.Redis, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return r, nil
}

// NewRedis returns a Redis store on client, which it owns from then on
// (Close closes it). From cfg it reads KeyPrefix (default gatehouse:),
// Timeout (default 500ms), LocalCache (nil or 0: no local cache) and
// StaleFor; the connection fields are for NewRedisFromConfig.
func NewRedis(client redis.UniversalClient, cfg config.Redis, opts Options) (*Redis, error) {
	if opts.IdleTimeout <= 0 || opts.AbsoluteTimeout <= 0 {
		return nil, errors.New("sessions: idle and absolute timeouts must be positive")
	}
	if cfg.StaleFor < 0 || (cfg.LocalCache != nil && *cfg.LocalCache < 0) {
		return nil, errors.New("sessions: redis local cache and stale_for must not be negative")
	}
	opts.defaults()
	opts.TouchInterval = min(opts.TouchInterval, opts.IdleTimeout/2)
	r := &Redis{
		client:   client,
		opts:     opts,
		timeout:  cfg.Timeout,
		staleFor: cfg.StaleFor,
		prefix:   cfg.KeyPrefix,
		epoch:    time.Now(),
		retries:  newRetryQueue(),
	}
	if r.timeout <= 0 {
		r.timeout = defaultRedisTimeout
	}
	if r.prefix == "" {
		r.prefix = defaultRedisPrefix
	}
	r.channel = r.prefix + "invalidate"
	if cfg.LocalCache != nil && *cfg.LocalCache > 0 {
		r.cache = newLocalCache(*cfg.LocalCache)
	}
	r.closing, r.close = context.WithCancel(context.Background())
	return r, nil
}

func (r *Redis) sessionKey(d digest) string { return r.prefix + "s:" + d.hex() }

func (r *Redis) indexKey(kind string, d digest) string { return r.prefix + kind + ":" + d.hex() }

// pipe runs the commands fill queues as one pipeline under the store's
// timeout. A failure becomes an error wrapping ErrUnavailable; a missing
// key (redis.Nil) and a script Redis has not cached (NOSCRIPT, for an
// EVALSHA to fall back to EVAL) are not failures, and the caller reads
// them from its command.
func (r *Redis) pipe(ctx context.Context, op string, fill func(context.Context, redis.Pipeliner)) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	p := r.client.Pipeline()
	fill(ctx, p)
	cmds, err := p.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) && !isNoScript(e) {
			return r.failed(op, e)
		}
	}
	if errors.Is(err, redis.Nil) || isNoScript(err) {
		return nil
	}
	return r.failed(op, err)
}

// failed turns a Redis error into the store's. A network error or a
// timeout also counts as Redis failing (see sawFailure); an error reply
// does not (Redis answered), nor does the caller giving up.
func (r *Redis) failed(op string, err error) error {
	var reply redis.Error
	if !errors.As(err, &reply) && !errors.Is(err, context.Canceled) {
		r.sawFailure()
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok && !errors.Is(err, context.Canceled) {
		// A master may have failed over: go-redis refreshes its slot map
		// on MOVED, but after a node stops answering it keeps sending
		// that node's slots to it until its one-minute refresh. Ask for
		// a refresh now (in the background, at most one at a time).
		cc.ReloadState(context.Background())
	}
	if r.opts.OnUnavailable != nil {
		r.opts.OnUnavailable()
	}
	return fmt.Errorf("redis %s: %w: %w", op, ErrUnavailable, err)
}

// unixMilliCeil returns t in Unix milliseconds, rounded up, so that Redis
// never drops a key before the store considers its session ended.
func unixMilliCeil(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

// expiryAt returns the key expiry (Unix ms) for s last seen at seen.
func (r *Redis) expiryAt(s *Session, seen time.Time) int64 {
	idle, absolute := seen.Add(r.opts.IdleTimeout), s.Created.Add(r.opts.AbsoluteTimeout)
	if absolute.Before(idle) {
		return unixMilliCeil(absolute)
	}
	return unixMilliCeil(idle)
}

// lastSeenAt returns the last-seen time a key expiring at ms (Unix ms, as
// PEXPIRETIME reports it) stands for, never before created.
func (r *Redis) lastSeenAt(ms int64, created time.Time) time.Time {
	if ms < 0 { // no expiry: someone made the key persistent
		return created
	}
	seen := time.UnixMilli(ms).Add(-r.opts.IdleTimeout)
	if seen.Before(created) {
		return created
	}
	return seen
}

// Len implements Store, approximately: Count under a deadline of 20
// times the store's timeout, and 0 when Redis cannot answer. It is meant
// for tests; metrics use Count, which tells a failure from an empty store.
func (r *Redis) Len() int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*r.timeout)
	defer cancel()
	n, _ := r.Count(ctx)
	return n
}

// Count counts the session keys under the key prefix with SCAN (on every
// master of a cluster), which walks the whole keyspace: it is for metrics,
// not for a hot path. It may count keys that have expired but that Redis
// has not yet reclaimed. When Redis fails, or ctx ends, before the walk
// is done it returns what it counted and an error wrapping ErrUnavailable.
func (r *Redis) Count(ctx context.Context) (int, error) {
	match := escapeGlob(r.prefix) + "s:*"
	var n atomic.Int64
	count := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, match, 1000).Iterator()
		for it.Next(ctx) {
			n.Add(1)
		}
		return it.Err()
	}
	var err error
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return count(ctx, c) })
	} else {
		err = count(ctx, r.client)
	}
	if err != nil {
		return int(n.Load()), fmt.Errorf("redis count sessions: %w: %w", ErrUnavailable, err)
	}
	return int(n.Load()), nil
}

// LocalLen returns how many sessions this replica holds in its local
// cache, for tests and metrics. It costs no Redis call.
func (r *Redis) LocalLen() int { return r.cache.len() }

// Live reports whether the store is subscribed to invalidations and Redis
// answers, so that its local cache may serve.
func (r *Redis) Live() bool { return r.live.Load() }

// escapeGlob quotes the characters SCAN's MATCH pattern treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Close stops Run, waits for it to return and closes the client. The
// store fails every call with ErrUnavailable afterwards.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.close()
	r.running.Wait()
	return r.client.Close()
}
