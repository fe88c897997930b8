// Package auth signs users in with OpenID Connect and finds the session
// of each request: login (state, nonce, PKCE S256), callback and ID token
// checks, logout, redirect-target validation and the authorization
// policy. It does not proxy bodies; package proxy does.
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Prefix is the path under which gatehouse serves its own endpoints on
// every host. Requests under it never reach an upstream.
const Prefix = "/_gatehouse/"

// Endpoint paths.
const (
	StartPath     = Prefix + "start"
	CallbackPath  = Prefix + "callback"
	LogoutPath    = Prefix + "logout"
	SignedOutPath = Prefix + "signed-out"
	WhoamiPath    = Prefix + "whoami"
)

// LoginTTL is how long a started login may take before its callback is
// refused as expired.
const LoginTTL = 10 * time.Minute

// Config is what package auth reads of gatehouse's configuration.
type Config struct {
	External *url.URL // external URL, validated
	OIDC     config.OIDC
	Cookie   config.Cookie
	Session  config.Session
	// RedirectHosts are extra hosts a post-login redirect may go to
	// (host, host:port or .example.com); the external host is always
	// allowed.
	RedirectHosts []string
	// ClaimNames are the ID token claims a session keeps for policies.
	ClaimNames []string
	// BearerAudiences, when set, turn on bearer tokens for machine
	// clients; a token's aud must name one of them.
	BearerAudiences []string
	// BearerRequireATJWT accepts only bearer tokens typed at+jwt.
	BearerRequireATJWT bool
	// UI is how gatehouse's own pages present themselves (ui.title).
	UI config.UI
	// NewDeviceHeader is headers.new_device: a login from a new device
	// (session.new_device) marks its session for it.
	NewDeviceHeader string
}

// ConfigFrom picks auth's sections out of a loaded configuration.
func ConfigFrom(c *config.Config) Config {
	hosts := append([]string{}, c.RedirectAllowHosts...)
	if d := c.Cookie.Domain; d != "" {
		hosts = append(hosts, d, "."+d)
	}
	ac := Config{External: c.External, OIDC: c.OIDC, Cookie: c.Cookie, Session: c.Session,
		RedirectHosts: hosts, ClaimNames: c.ClaimNames(), UI: c.UI, NewDeviceHeader: c.Headers.NewDevice}
	if c.Bearer.Enabled {
		ac.BearerAudiences = c.Bearer.Audiences
		ac.BearerRequireATJWT = c.Bearer.RequireATJWT
	}
	return ac
}

// Options are an Authenticator's collaborators.
type Options struct {
	Store  sessions.Store // required
	Logger *slog.Logger   // default: discard
	// Now is the clock of sessions, login states and token checks;
	// default time.Now. Tests move it.
	Now func() time.Time
	// HTTPClient makes the calls to the identity provider; default a client
	// with the oidc.timeout.
	HTTPClient *http.Client
	// Observer counts logins, logouts and refreshes (metrics); optional.
	Observer Observer
	// AnyPolicyAllows reports whether a user, just signed in, passes the
	// policy of at least one route (the top-level allow and every route's
	// allow; wholly public routes do not count). A login it refuses
	// creates no session: the browser gets a 403 page, so a user whom no
	// route allows cannot fill the session store. Nil refuses every login
	// (fail closed).
	AnyPolicyAllows func(*sessions.Session) bool
	// Previous is the authenticator this one replaces on a configuration
	// reload. The new one inherits the refreshes in flight, the logout
	// tokens already used, and the provider's discovery when the issuer
	// and client ID are unchanged.
	Previous *Authenticator
}

// Observer is told about authentication events, for metrics. Reasons are
// stable codes (state_mismatch, idle...), never user data.
type Observer interface {
	Login(success bool, reason string)
	Logout(reason string)
	Refresh(result string)
}

type noObserver struct{}

func (noObserver) Login(bool, string) {}
func (noObserver) Logout(string)      {}
func (noObserver) Refresh(string)     {}

// Authenticator finds the session of a request and serves the login,
// callback and logout endpoints. It is safe for concurrent use.
type Authenticator struct {
	cfg    Config
	origin string // external origin, e.g. https://app.example.com
	secure bool
	store  sessions.Store
	cookie *sessions.Codec // session cookie
	login  *sessions.Codec // pending-login cookie
	device *sessions.Codec // device cookie (session.new_device)
	// legacyLogin is the login cookie's name before it moved to Path=/
	// (legacyLoginCookieName), kept from the upstream as well.
	legacyLogin string
	csrfKey     []byte
	idp         *provider
	redirects   *Redirects
	log         *slog.Logger
	pages       *web.Pages // gatehouse's own pages, under ui.title
	now         func() time.Time

	admits func(*sessions.Session) bool // Options.AnyPolicyAllows

	bearerAudiences []string
	bearers         *bearerCache
	obs             Observer

	// Shared with the authenticators that replace this one on reload.
	refreshes *refreshes // refreshes in progress, back-offs
	jtis      *jtiCache  // logout tokens already used

	replay func(http.ResponseWriter, *http.Request, *sessions.Session) // SetReplay

	dbsc *binding // device binding (devicebinding.go); nil when off
}

// New builds an Authenticator. It does not contact the identity provider;
// discovery happens in Run and, failing that, at the first login.
func New(cfg Config, opts Options) (*Authenticator, error) {
	if opts.Store == nil {
		return nil, errors.New("auth: no session store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: cfg.OIDC.Timeout}
	}
	if opts.HTTPClient.Timeout <= 0 {
		c := *opts.HTTPClient
		c.Timeout = cfg.OIDC.Timeout
		opts.HTTPClient = &c
	}
	a := &Authenticator{
		cfg:    cfg,
		origin: cfg.External.Scheme + "://" + cfg.External.Host,
		secure: cfg.External.Scheme == "https",
		store:  opts.Store,
		log:    opts.Logger,
		now:    opts.Now,
		admits: opts.AnyPolicyAllows,
		pages:  web.NewPages(cfg.UI.Title),
	}
	var err error
	a.cookie, err = sessions.NewCodec(a.SessionCookieName(), "session", cfg.Cookie.Keys, cfg.Session.AbsoluteTimeout)
	if err != nil {
		return nil, err
	}
	a.login, err = sessions.NewCodec(a.LoginCookieName(), "login", cfg.Cookie.Keys, LoginTTL)
	if err != nil {
		return nil, err
	}
	a.device, err = sessions.NewCodec(a.DeviceCookieName(), "device", cfg.Cookie.Keys, DeviceTTL)
	if err != nil {
		return nil, err
	}
	a.legacyLogin = a.legacyLoginCookieName()
	if a.dbsc, err = newBinding(cfg, a.secure); err != nil {
		return nil, err
	}
	a.csrfKey = deriveKey(cfg.Cookie.Keys[0], "gatehouse logout csrf")
	a.bearerAudiences = cfg.BearerAudiences
	a.bearers = &bearerCache{}
	a.obs = opts.Observer
	if a.obs == nil {
		a.obs = noObserver{}
	}
	if p := opts.Previous; p != nil {
		a.refreshes, a.jtis = p.refreshes, p.jtis
	} else {
		a.refreshes, a.jtis = &refreshes{}, &jtiCache{}
	}
	a.redirects = NewRedirects(append([]string{cfg.External.Host}, cfg.RedirectHosts...)...)
	a.idp = &provider{
		issuer:       cfg.OIDC.Issuer,
		clientID:     cfg.OIDC.ClientID,
		clientSecret: cfg.OIDC.ClientSecret,
		scopes:       cfg.OIDC.Scopes,
		redirectURL:  a.origin + CallbackPath,
		client:       opts.HTTPClient,
		now:          opts.Now,
		log:          opts.Logger,
	}
	if p := opts.Previous; p != nil {
		a.idp.inherit(p.idp)
	}
	return a, nil
}

// Run discovers the identity provider in the background, retrying until
// it answers or ctx ends.
func (a *Authenticator) Run(ctx context.Context) { a.idp.run(ctx) }

// Ready reports whether the identity provider's discovery document is
// loaded.
func (a *Authenticator) Ready() bool { return a.idp.ready() }

// External returns the external URL.
func (a *Authenticator) External() *url.URL { return a.cfg.External }

// Origin returns the external origin, e.g. https://app.example.com.
func (a *Authenticator) Origin() string { return a.origin }

// Pages renders gatehouse's own pages under the configured ui.title.
func (a *Authenticator) Pages() *web.Pages { return a.pages }
