package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/sessions"
)

// Options are a Gateway's collaborators; every field is optional.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of sessions and logins; tests move it.
	Now func() time.Time
	// IdPClient makes the calls to the identity provider.
	IdPClient *http.Client
	// Transport carries requests to the upstream; default a tuned
	// http.Transport.
	Transport http.RoundTripper
}

// Gateway is gatehouse assembled from a configuration: the session store,
// the authenticator and the handler.
type Gateway struct {
	Handler *Handler
	Auth    *auth.Authenticator
	Store   sessions.Store
	cfg     *config.Config
	log     *slog.Logger
}

// runner is a store with background work (sweeping, invalidations).
type runner interface{ Run(ctx context.Context) }

// newStore builds the configured session store.
func newStore(cfg *config.Config, opts Options) (sessions.Store, error) {
	so := sessions.Options{
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		TouchInterval:   cfg.Session.TouchInterval,
		Now:             opts.Now,
		OnEnd: func(s *sessions.Session, reason string) {
			opts.Logger.Info("session ended", "event", "session_end", "reason", reason, "sub", s.Subject, "session", s.ID.LogID())
		},
	}
	if cfg.Session.Store == "redis" {
		return sessions.NewRedisFromConfig(cfg.Session, so)
	}
	return sessions.NewMemory(cfg.Session.MaxSessions, so)
}

// New assembles a gateway. It contacts nobody; call Run to discover the
// identity provider and sweep expired sessions.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	store, err := newStore(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	a, err := auth.New(auth.ConfigFrom(cfg), auth.Options{
		Store: store, Logger: opts.Logger, Now: opts.Now, HTTPClient: opts.IdPClient,
	})
	if err != nil {
		return nil, fmt.Errorf("authenticator: %w", err)
	}
	if opts.Transport == nil {
		opts.Transport = newTransport(cfg.UpstreamTimeout)
	}
	h := &Handler{
		auth:     a,
		internal: http.NewServeMux(),
		strip:    newStripper(cfg.Headers.User, cfg.Headers.Email, cfg.Headers.Groups, cfg.Headers.Name),
		trusted:  cfg.TrustedNets,
		faMode:   cfg.ForwardAuth.Mode,
		buffers:  newBufferPool(),
		log:      opts.Logger,
	}
	if *cfg.Assertion.Enabled {
		as, err := auth.NewAsserter(cfg.Assertion, cfg.ExternalURL, opts.Now, opts.Logger)
		if err != nil {
			return nil, err
		}
		h.asserter, h.assertHeader = as, http.CanonicalHeaderKey(cfg.Assertion.Header)
		h.strip.add(cfg.Assertion.Header)
		h.internal.HandleFunc("GET "+auth.JWKSPath, as.ServeJWKS)
	}
	h.router, h.fallback = h.buildRoutes(cfg, opts.Transport)
	a.Register(h.internal)
	h.registerOwn(h.internal)
	for _, w := range cfg.Warnings {
		opts.Logger.Warn(w)
	}
	return &Gateway{Handler: h, Auth: a, Store: store, cfg: cfg, log: opts.Logger}, nil
}

// buildRoutes turns the configured routes into the router, and the
// top-level policy into the fallback that forward-auth calls use when no
// route matches.
func (h *Handler) buildRoutes(cfg *config.Config, transport http.RoundTripper) (*router, *route) {
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
		}
		for k, v := range rc.ExtraHeaders {
			rt.static[http.CanonicalHeaderKey(k)] = []string{v}
		}
		rt.audience = firstNonEmpty(rc.AssertionAudience, cfg.Assertion.Audience)
		if rc.UpstreamURL != nil {
			rt.proxy = h.upstreamProxy(rc.UpstreamURL, transport, proto, rc.PreserveHost)
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
		identity: identity(false, false), audience: cfg.Assertion.Audience}
	return newRouter(routes), fallback
}

// Run discovers the identity provider (retrying) and sweeps expired
// sessions until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	go g.Auth.Run(ctx)
	switch st := g.Store.(type) {
	case *sessions.Memory:
		st.Run(ctx, min(g.cfg.Session.IdleTimeout/2, time.Minute))
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
	s := g.cfg.Server
	return &http.Server{
		Addr:              g.cfg.Listen,
		Handler:           g.Handler,
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		IdleTimeout:       s.IdleTimeout,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}
