package serve

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/sessions"
)

// GatewayOptions are the collaborators of NewGateway; every field is
// optional.
type GatewayOptions struct {
	Logger *slog.Logger
	// Now is the clock of sessions and logins; tests move it.
	Now func() time.Time
	// IdPClient makes the calls to the identity provider.
	IdPClient *http.Client
	// Transport carries requests to the upstreams; default proxy's tuned
	// transport.
	Transport http.RoundTripper
	// Store replaces the configured session store (tests).
	Store sessions.Store
	// SessionCountInterval is how often gatehouse_active_sessions
	// recounts the sessions of a redis store (a SCAN of the keyspace, done
	// when a scrape finds the last count older than this); default
	// DefaultSessionCountInterval. The memory store is counted at every
	// scrape.
	SessionCountInterval time.Duration
}

// DefaultSessionCountInterval is how often gatehouse_active_sessions
// recounts a redis store by default.
const DefaultSessionCountInterval = 10 * time.Second

// NewGateway composes gatehouse from a configuration: it builds the
// configured session store (memory, or redis standalone, sentinel or
// cluster) with its admin keys, the metrics that count it, and the
// request path (proxy.New) over both. It contacts nobody; the gateway's
// Run discovers the identity provider and runs the store's background
// work, and its Close releases the store.
func NewGateway(cfg *config.Config, opts GatewayOptions) (*proxy.Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The store reports ended sessions to the metrics, and the metrics
	// count the store: the store is built first, its hooks read m once
	// it is set (the metrics' methods are no-ops on nil).
	var m *metrics.Metrics
	store := opts.Store
	if store == nil {
		s, err := newStore(cfg, opts.Logger, opts.Now, func() *metrics.Metrics { return m })
		if err != nil {
			return nil, fmt.Errorf("session store: %w", err)
		}
		store = s
	}
	m = metrics.New(activeSessions(store, opts.SessionCountInterval, opts.Logger))
	gw, err := proxy.New(cfg, proxy.Options{Logger: opts.Logger, Now: opts.Now, IdPClient: opts.IdPClient,
		Transport: opts.Transport, Metrics: m, Store: store})
	if err != nil {
		if opts.Store == nil {
			closeStore(store)
		}
		return nil, err
	}
	return gw, nil
}

// closeStore releases a store built for a gateway that could not be
// assembled.
func closeStore(s sessions.Store) {
	if c, ok := s.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// newStore builds the configured session store; its ended sessions are
// logged and counted in the metrics m returns.
func newStore(cfg *config.Config, log *slog.Logger, now func() time.Time, m func() *metrics.Metrics) (sessions.Store, error) {
	so := sessions.Options{
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		TouchInterval:   cfg.Session.TouchInterval,
		MaxPerUser:      cfg.Session.MaxPerUser,
		Now:             now,
		OnEnd: func(s *sessions.Session, reason string) {
			attrs := []any{"event", "session_end", "reason", reason, "sub", s.Subject}
			if s.ID != (sessions.ID{}) { // the redis store names a session past max_per_user by subject only
				attrs = append(attrs, "session", s.ID.LogID())
			}
			log.Info("session ended", attrs...)
			m().Logout(reason)
		},
		Logger:            log,
		OnRevocationRetry: func(outcome string) { m().RevocationRetry(outcome) },
		OnUnavailable:     func() { m().RedisError() },
	}
	for _, k := range cfg.Cookie.Keys {
		ak, err := hkdf.Key(sha256.New, k, nil, "gatehouse session admin description", 32)
		if err != nil {
			return nil, err
		}
		so.AdminKeys = append(so.AdminKeys, ak)
	}
	if cfg.Session.Store == "redis" {
		return sessions.NewRedisFromConfig(cfg.Session, so)
	}
	return sessions.NewMemory(cfg.Session.MaxSessions, so)
}

// activeSessions reports the store's size for the metrics. Counting a
// Redis keyspace is a SCAN, so that count is redone at most once per
// every (default DefaultSessionCountInterval), whatever the scrape
// interval; while Redis cannot answer, the gauge keeps the last count that
// worked rather than report a number nobody counted.
func activeSessions(store sessions.Store, every time.Duration, log *slog.Logger) func() float64 {
	if _, ok := store.(*sessions.Memory); ok {
		return func() float64 { return float64(store.Len()) }
	}
	if every <= 0 {
		every = DefaultSessionCountInterval
	}
	counter, canCount := store.(interface {
		Count(context.Context) (int, error)
	})
	var mu sync.Mutex
	var last time.Time
	var n int
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if !last.IsZero() && time.Since(last) < every {
			return float64(n)
		}
		last = time.Now()
		if !canCount {
			n = store.Len()
			return float64(n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), sessionCountTimeout)
		defer cancel()
		c, err := counter.Count(ctx)
		if err != nil {
			log.Warn("count sessions for gatehouse_active_sessions; keeping the last count", "sessions", n, "err", err)
			return float64(n)
		}
		n = c
		return float64(n)
	}
}

// sessionCountTimeout bounds one recount of a redis store's sessions.
const sessionCountTimeout = 10 * time.Second
