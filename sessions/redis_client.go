package sessions

import (
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/config"
)

// clusterMapRefresh is how old Redis Cluster's slot map may grow before
// a command refreshes it (CLUSTER SLOTS, in the background). go-redis
// refreshes it at once on MOVED, but a master that fails over stops
// answering rather than redirecting: with go-redis's default of a
// minute, the slots of a master that failed over would keep failing
// that long, unless a command failing on them (Redis.failed asks for a
// refresh) came first. One CLUSTER SLOTS a second per replica is cheap.
const clusterMapRefresh = time.Second

// newRedisClient builds the client cfg describes. The URL gives the
// address of a single Redis, and with Sentinel or Cluster only the
// credentials, database and TLS.
func newRedisClient(cfg config.Redis) (redis.UniversalClient, error) {
	base := &redis.Options{}
	if cfg.URL != "" {
		o, err := redis.ParseURL(cfg.URL)
		if err != nil {
			// A *url.Error quotes the URL, password included.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("session.redis.url: %w", err)
		}
		base = o
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultRedisTimeout
	}
	// Requests mostly hit the local cache; the pool serves misses, touches
	// and revocations. go-redis's default of 10 per CPU is ample, and a
	// request never waits for a connection longer than a command may take.
	// One retry replaces a pooled connection that died with a restarted
	// Redis; dialing is tried once, so that an outage fails fast.
	poolSize := 10 * runtime.GOMAXPROCS(0)
	const retries, dials = 1, 1
	tls := base.TLSConfig
	if tls != nil && (len(cfg.Sentinel.Addrs) > 0 || len(cfg.Cluster.Addrs) > 0) {
		// The URL's host names no node here: verify each against its own
		// address.
		tls = tls.Clone()
		tls.ServerName = ""
	}
	switch {
	case len(cfg.Sentinel.Addrs) > 0:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: cfg.Sentinel.Master, SentinelAddrs: cfg.Sentinel.Addrs,
			Username: base.Username, Password: base.Password, DB: base.DB, TLSConfig: tls,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
			ContextTimeoutEnabled: true, PoolSize: poolSize, MaxRetries: retries, DialerRetries: dials,
		}), nil
	case len(cfg.Cluster.Addrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.Cluster.Addrs, ClusterStateReloadInterval: clusterMapRefresh,
			Username: base.Username, Password: base.Password, TLSConfig: tls,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolTimeout: timeout,
			ContextTimeoutEnabled: true, PoolSize: poolSize, MaxRetries: retries, DialerRetries: dials,
		}), nil
	}
	base.DialTimeout, base.ReadTimeout, base.WriteTimeout, base.PoolTimeout = timeout, timeout, timeout, timeout
	base.ContextTimeoutEnabled = true
	base.PoolSize, base.MaxRetries, base.DialerRetries = poolSize, retries, dials
	return redis.NewClient(base), nil
}
