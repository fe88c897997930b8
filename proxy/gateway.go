package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/proxy/internal/direct"
	"github.com/gatehouse/gatehouse/sessions"
)

// Options are a Gateway's collaborators. gatehouse passes the Store and
// Metrics that the composition (internal/serve's NewGateway) builds; a
// test of the request path alone may leave them out (see New).
type Options struct {
	Logger *slog.Logger
	// Now is the clock of sessions and logins; tests move it.
	Now func() time.Time
	// IdPClient makes the calls to the identity provider.
	IdPClient *http.Client
	// Transport carries requests to the upstreams; default a tuned
	// http.Transport, shared by every route and kept across reloads.
	Transport http.RoundTripper
	// Metrics records gatehouse's metrics; nil: a fresh registry.
	Metrics *metrics.Metrics
	// Store holds the sessions. The gateway keeps it across reloads, runs
	// its background work in Run and releases it in Close. nil: a bare
	// memory store (see New).
	Store sessions.Store
}

// Gateway is the request path assembled from a configuration over a
// session store and metrics that the caller built (serve.NewGateway). Reload swaps the
// configuration without dropping sessions or requests in flight.
type Gateway struct {
	// Handler serves user traffic; it switches to the new configuration
	// at each Reload.
	Handler *Handler
	// Store holds the sessions: Options.Store, or New's bare memory
	// store. It is kept across reloads; Close releases it.
	Store sessions.Store
	// Metrics records gatehouse's metrics, served on the admin listener's
	// /metrics: Options.Metrics, or a fresh registry.
	Metrics *metrics.Metrics

	cfg     atomic.Pointer[config.Config]
	opts    Options
	buffers *bufferPool
	values  *valueCache
	pools   *direct.Pools // nil when Options.Transport replaced the default
	log     *slog.Logger
}

// runner is a store with background work (sweeping, invalidations).
type runner interface{ Run(ctx context.Context) }

// New assembles the request path over opts.Store and opts.Metrics. It
// contacts nobody; call Run to discover the identity provider and sweep
// expired sessions.
//
// New does not build the configured session store: without opts.Store it
// makes a bare memory store with the session limits, which neither logs
// nor counts the sessions it ends, for tests of the request path; with
// session.store redis it fails. gatehouse is composed by internal/serve's
// NewGateway.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if opts.Store == nil && cfg.Session.Store == "redis" {
		return nil, errors.New("session store: proxy.New does not build the redis store; pass Options.Store, or build the gateway with internal/serve's NewGateway")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Gateway{Handler: &Handler{}, opts: opts, buffers: newBufferPool(), values: newValueCache(), log: opts.Logger}
	if opts.Transport == nil {
		g.opts.Transport = newTransport(cfg.UpstreamTimeout)
		if direct.Supported {
			g.pools = direct.NewPools()
		}
	}
	g.Store, g.Metrics = opts.Store, opts.Metrics
	if g.Store == nil {
		store, err := sessions.NewMemory(cfg.Session.MaxSessions, sessions.Options{
			IdleTimeout: cfg.Session.IdleTimeout, AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
			TouchInterval: cfg.Session.TouchInterval, MaxPerUser: cfg.Session.MaxPerUser,
			Now: opts.Now, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("session store: %w", err)
		}
		g.Store = store
	}
	if g.Metrics == nil {
		g.Metrics = metrics.New(func() float64 { return float64(g.Store.Len()) })
	}
	base := opts.IdPClient
	if base == nil {
		base = &http.Client{Timeout: cfg.OIDC.Timeout}
	}
	idp := *base
	idp.Transport = g.Metrics.IdPTransport(base.Transport)
	g.opts.IdPClient = &idp

	gt, err := g.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	g.Handler.cur.Store(gt)
	g.cfg.Store(cfg)
	for _, w := range cfg.Warnings {
		opts.Logger.Warn(w)
	}
	return g, nil
}

// Close releases the store's connections (Redis).
func (g *Gateway) Close() error {
	if c, ok := g.Store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Auth returns the current authenticator.
func (g *Gateway) Auth() *auth.Authenticator { return g.Handler.Auth() }

// Config returns the configuration in force.
func (g *Gateway) Config() *config.Config { return g.cfg.Load() }

// build assembles the request path for cfg. prev, when set, is the gate
// it replaces: the new one inherits what must outlive a reload (refreshes
// in flight, used logout tokens, provider discovery, the signing key).
func (g *Gateway) build(cfg *config.Config, prev *gate) (*gate, error) {
	// Each configuration gets its own client: oidc.timeout may change on
	// a reload. The transport, and so its connections, is shared.
	idp := *g.opts.IdPClient
	idp.Timeout = cfg.OIDC.Timeout
	ao := auth.Options{Store: g.Store, Logger: g.log, Now: g.opts.Now, HTTPClient: &idp, Observer: g.Metrics,
		AnyPolicyAllows: anyPolicyAllows(cfg)}
	if prev != nil {
		ao.Previous = prev.auth
	}
	a, err := auth.New(auth.ConfigFrom(cfg), ao)
	if err != nil {
		return nil, fmt.Errorf("authenticator: %w", err)
	}
	h := &gate{
		auth:     a,
		pages:    a.Pages(),
		internal: http.NewServeMux(),
		strip:    newStripper(identityHeaderNames(cfg.Headers)...),
		trusted:  cfg.TrustedNets,
		faMode:   cfg.ForwardAuth.Mode,
		buffers:  g.buffers,
		log:      g.log,
		metrics:  g.Metrics,
		own:      g.Metrics.Route("gatehouse"),
		values:   g.values,
		pools:    g.pools,
		// Reload keeps the running value, as the transport's.
		upstreamTimeout: cfg.UpstreamTimeout,
		body:            bodyLimit{timeout: cfg.Server.ReadBodyTimeout, rate: int64(cfg.Server.MinBodyRate)},
	}
	if *cfg.Assertion.Enabled {
		as, err := g.asserter(cfg, prev)
		if err != nil {
			return nil, err
		}
		h.asserter, h.assertHeader = as, http.CanonicalHeaderKey(cfg.Assertion.Header)
		h.strip.add(cfg.Assertion.Header)
		h.internal.HandleFunc("GET "+auth.JWKSPath, as.ServeJWKS)
	}
	h.newDevice = http.CanonicalHeaderKey(cfg.Headers.NewDevice) // "" when off
	h.router, h.fallback = h.buildRoutes(cfg, g.opts.Transport)
	a.SetReplay(h.replayHeld)
	a.Register(h.internal)
	h.registerOwn(h.internal)
	return h, nil
}

// anyPolicyAllows reports whether a user passes at least one policy a
// request could be judged by: the top-level allow (the forward-auth
// fallback) and every route's that is not wholly public. A login that
// passes none creates no session.
func anyPolicyAllows(cfg *config.Config) func(*sessions.Session) bool {
	var policies []*auth.Policy
	policies = append(policies, auth.NewPolicy(cfg.Allow))
	for _, rc := range cfg.Routes {
		if rc.Allow != nil && !rc.WholePublic() {
			policies = append(policies, auth.NewPolicy(*rc.Allow))
		}
	}
	return func(s *sessions.Session) bool {
		for _, p := range policies {
			if p.Allows(s) {
				return true
			}
		}
		return false
	}
}

// asserter keeps the running signer across a reload, rotating to a new
// key file when it names another key, so assertions signed before stay
// verifiable until they expire.
func (g *Gateway) asserter(cfg *config.Config, prev *gate) (*auth.Asserter, error) {
	if prev != nil && prev.asserter != nil && prev.asserter.Lifetime() == cfg.Assertion.Lifetime {
		if err := prev.asserter.RotateFrom(cfg.Assertion); err != nil {
			return nil, fmt.Errorf("assertion.key_file: %w", err)
		}
		return prev.asserter, nil
	}
	return auth.NewAsserter(cfg.Assertion, cfg.ExternalURL, g.opts.Now, g.log)
}

// Reload switches to cfg: routes, policies, upstreams, identity headers,
// provider settings, cookie secrets and assertion keys change at once,
// for requests that start afterwards; sessions and requests in flight are
// kept. Settings that cannot change while running (listen address, store
// and session limits, server and admin settings) keep their running
// values; Reload returns their names so the caller can log them.
func (g *Gateway) Reload(cfg *config.Config) (fixed []string, err error) {
	old := g.cfg.Load()
	next := *cfg
	for _, f := range []struct {
		name     string
		old, new any
		keep     func()
	}{
		{"listen", old.Listen, cfg.Listen, func() { next.Listen = old.Listen }},
		{"session", old.Session, cfg.Session, func() { next.Session = old.Session }},
		{"server", old.Server, cfg.Server, func() { next.Server = old.Server }},
		{"admin", old.Admin, cfg.Admin, func() { next.Admin = old.Admin }},
		{"tls", old.TLS, cfg.TLS, func() { next.TLS = old.TLS }},
		{"upstream_timeout", old.UpstreamTimeout, cfg.UpstreamTimeout, func() { next.UpstreamTimeout = old.UpstreamTimeout }},
	} {
		if !reflect.DeepEqual(f.old, f.new) {
			fixed = append(fixed, f.name)
			f.keep()
		}
	}
	gt, err := g.build(&next, g.Handler.cur.Load())
	if err != nil {
		return fixed, err
	}
	g.Handler.cur.Store(gt)
	g.cfg.Store(&next)
	for _, w := range next.Warnings {
		g.log.Warn(w)
	}
	return fixed, nil
}

// buildRoutes turns the configured routes into the router, and the
// top-level policy into the fallback that forward-auth calls use when no
// route matches.
func (h *gate) buildRoutes(cfg *config.Config, transport http.RoundTripper) (*router, *route) {
	proto := []string{cfg.External.Scheme}
	identities := map[[2]bool]*identityHeaders{}
	identity := func(access, id bool) *identityHeaders {
		k := [2]bool{access, id}
		if identities[k] == nil {
			identities[k] = newIdentityHeaders(cfg.Headers, access, id)
		}
		return identities[k]
	}
	var routes []*route
	for _, rc := range cfg.Routes {
		rt := &route{
			name:     rc.Name,
			host:     rc.Match.Host,
			prefix:   rc.Match.PathPrefix,
			public:   rc.Public,
			policy:   auth.NewPolicy(*rc.Allow),
			identity: identity(rc.PassAccessToken, rc.PassIDToken),
			static:   http.Header{},
			metrics:  h.metrics.Route(rc.Name),
			proto:    proto,

			maxAuthAge: rc.MaxAuthAge,
			acrValues:  rc.ACRValues,
		}
		for k, v := range rc.ExtraHeaders {
			rt.static[http.CanonicalHeaderKey(k)] = []string{v}
		}
		rt.audience = firstNonEmpty(rc.AssertionAudience, cfg.Assertion.Audience)
		if rc.UpstreamURL != nil {
			rt.proxy = h.upstreamProxy(rt, rc.UpstreamURL, transport, rc.PreserveHost)
			if rt.audience == "" {
				rt.audience = rc.UpstreamURL.Scheme + "://" + rc.UpstreamURL.Host
			}
		}
		if h.asserter != nil && rt.audience != "" {
			rt.slot = h.asserter.Slot(rt.audience)
		}
		routes = append(routes, rt)
	}
	fallback := &route{name: "forward-auth default", prefix: "/", policy: auth.NewPolicy(cfg.Allow),
		identity: identity(false, false), audience: cfg.Assertion.Audience, metrics: h.metrics.Route("forward-auth default")}
	return newRouter(routes), fallback
}

// Run discovers the identity provider (retrying), sweeps the upstream
// connection pools and runs the store's background work until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	go g.Auth().Run(ctx)
	if g.pools != nil {
		go g.pools.Run(ctx, direct.SweepInterval)
	}
	switch st := g.Store.(type) {
	case *sessions.Memory:
		st.Run(ctx, min(g.cfg.Load().Session.IdleTimeout/2, time.Minute))
	case runner:
		st.Run(ctx)
	}
}

// Server returns the HTTP server for the gateway, with the timeouts and
// header limit of the configuration. ReadTimeout and WriteTimeout stay
// unset: uploads, downloads, Server-Sent Events and WebSockets may
// legitimately last long; slow-header attacks are bounded by
// ReadHeaderTimeout.
func (g *Gateway) Server() *http.Server {
	cfg := g.cfg.Load()
	s := cfg.Server
	return &http.Server{
		Addr:              cfg.Listen,
		Handler:           g.Handler,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}
