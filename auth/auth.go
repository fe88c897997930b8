// Package auth signs users in with OpenID Connect and finds the session
// of each request: login (state, nonce, PKCE S256), callback and ID token
// checks, logout, redirect-target validation and the authorization
// policy. It does not proxy bodies; package proxy does.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
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
}

// ConfigFrom picks auth's sections out of a loaded configuration.
func ConfigFrom(c *config.Config) Config {
	hosts := append([]string{}, c.RedirectAllowHosts...)
	if d := c.Cookie.Domain; d != "" {
		hosts = append(hosts, d, "."+d)
	}
	ac := Config{External: c.External, OIDC: c.OIDC, Cookie: c.Cookie, Session: c.Session,
		RedirectHosts: hosts, ClaimNames: c.ClaimNames(), UI: c.UI}
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
	Now    func() time.Time
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
	held      *heldStore // forms held until sign-in (session.preserve_posts)

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
		a.refreshes, a.jtis, a.held = p.refreshes, p.jtis, p.held
	} else {
		a.refreshes, a.jtis, a.held = &refreshes{}, &jtiCache{}, &heldStore{}
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

func deriveKey(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
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

// SessionCookieName is the session cookie's name: __Host-<name> when the
// external URL is https (Secure, Path=/, no Domain: a sibling subdomain
// cannot set or shadow it), __Secure-<name> when it is shared with
// subdomains (cookie.domain), else <name>.
func (a *Authenticator) SessionCookieName() string {
	switch {
	case a.secure && a.cfg.Cookie.Domain == "":
		return "__Host-" + a.cfg.Cookie.Name
	case a.secure:
		return "__Secure-" + a.cfg.Cookie.Name
	}
	return a.cfg.Cookie.Name
}

// LoginCookieName is the pending-login cookie's name: __Host-<name>_login
// when the external URL is https, whether or not cookie.domain is set
// (Secure, Path=/, no Domain: only this host can set it, so a sibling
// subdomain cannot plant its own login state and sign the browser in as
// someone else, login CSRF), else <name>_login, also with Path=/.
func (a *Authenticator) LoginCookieName() string {
	if a.secure {
		return "__Host-" + a.cfg.Cookie.Name + "_login"
	}
	return a.cfg.Cookie.Name + "_login"
}

// legacyLoginPath is where gatehouse used to scope the login cookie, as
// __Secure-<name>_login on https. Such a cookie, still in a browser from
// before, is never read as login state, only cleared.
const legacyLoginPath = Prefix

// legacyLoginCookieName is the name the login cookie had at
// legacyLoginPath: __Secure-<name>_login on https, <name>_login on http.
func (a *Authenticator) legacyLoginCookieName() string {
	if a.secure {
		return "__Secure-" + a.cfg.Cookie.Name + "_login"
	}
	return a.cfg.Cookie.Name + "_login"
}

// ErrNoSession means the request carries no session cookie that opens.
var ErrNoSession = errors.New("no session cookie")

// Session returns the live session of the request: its session cookie
// opened with the cookie keys, then looked up in the store, which enforces
// idle and absolute expiry, and, for a session bound to a device, its
// fresh bound cookie checked (devicebinding.go). Errors: ErrNoSession,
// sessions.ErrNotFound, an *sessions.ExpiredError, a *BindingError, or a
// store failure.
//
// When the request carries several cookies with the session cookie's
// exact name (an old cookie beside a new one, or one set for a parent
// domain), the first that opens to a live session is used, trying at most
// maxSessionCookies; case variants of the name are never read (RFC
// 6265bis: __HOST-x is not __Host-x).
func (a *Authenticator) Session(r *http.Request) (*sessions.Session, error) {
	s, err := a.lookupSession(r)
	if err == nil {
		if err = a.checkBound(r, s); err != nil {
			return nil, err
		}
	}
	return s, err
}

// lookupSession is Session without the device binding check, for the
// binding endpoints themselves.
func (a *Authenticator) lookupSession(r *http.Request) (*sessions.Session, error) {
	name := a.cookie.Name()
	tried := 0
	err := ErrNoSession
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && tried < maxSessionCookies; {
			var v string
			var found bool
			v, rest, found = nextCookie(rest, name)
			if !found {
				break
			}
			id, oerr := a.cookie.OpenID(v)
			if oerr != nil {
				continue
			}
			tried++
			s, gerr := a.store.Get(r.Context(), id)
			if gerr == nil {
				return s, nil
			}
			if lookupRank(gerr) > lookupRank(err) {
				err = gerr // a store failure outranks "not found"
			}
		}
	}
	return nil, err
}

// maxSessionCookies bounds the session cookies one request may make
// gatehouse look up.
const maxSessionCookies = 4

func isNotThere(err error) bool {
	return errors.Is(err, sessions.ErrNotFound) || errors.Is(err, sessions.ErrExpired)
}

// lookupRank orders the errors of looking sessions up, so that Session
// reports the gravest: a store failure, then an error of no known kind,
// then a session that is not there, then no cookie.
func lookupRank(err error) int {
	switch {
	case errors.Is(err, sessions.ErrUnavailable):
		return 3
	case isNotThere(err):
		return 1
	case errors.Is(err, ErrNoSession):
		return 0
	}
	return 2
}

// IsNoSession reports whether err says that the request has no session:
// no cookie that opens (ErrNoSession), a session that is not there or
// has expired, one whose refresh the provider rejected, or one whose
// tokens expired while no refresh succeeded (ErrRefreshFailed). Those, and
// only those, get the login. Check sessions.ErrUnavailable first: an
// error may wrap both a rejected refresh and a store that could not end
// the session, and then the store failure is what to answer.
func IsNoSession(err error) bool {
	return errors.Is(err, ErrNoSession) || isNotThere(err) || errors.Is(err, ErrRefreshRejected) ||
		errors.Is(err, ErrRefreshFailed)
}

func (a *Authenticator) sessionID(r *http.Request) (sessions.ID, bool) {
	ids := a.sessionIDs(r)
	if len(ids) == 0 {
		return sessions.ID{}, false
	}
	return ids[0], true
}

// sessionIDs returns the IDs of the request's session cookies that open,
// at most maxSessionCookies, as Session tries them.
func (a *Authenticator) sessionIDs(r *http.Request) []sessions.ID {
	name := a.cookie.Name()
	var ids []sessions.ID
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && len(ids) < maxSessionCookies; {
			var v string
			var found bool
			v, rest, found = nextCookie(rest, name)
			if !found {
				break
			}
			if id, err := a.cookie.OpenID(v); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// nextCookie finds the next "name=value" pair with exactly name in a
// Cookie header line, and returns its value and the rest of the line. It
// does not allocate.
func nextCookie(line, name string) (value, rest string, found bool) {
	for line != "" {
		var pair string
		pair, line, _ = strings.Cut(line, ";")
		pair = strings.TrimSpace(pair)
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, line, true
	}
	return "", "", false
}

// HasSessionCookie reports whether the request carries a cookie with the
// session cookie's name, valid or not.
func (a *Authenticator) HasSessionCookie(r *http.Request) bool {
	for _, line := range r.Header["Cookie"] {
		if _, _, found := nextCookie(line, a.cookie.Name()); found {
			return true
		}
	}
	return false
}

// IsOwnCookie reports whether a cookie name is one of gatehouse's, so the
// proxy can keep it from the upstream (an upstream that saw the session
// cookie could replay it).
func (a *Authenticator) IsOwnCookie(name string) bool {
	return name == a.cookie.Name() || name == a.login.Name() || name == a.legacyLogin ||
		(a.dbsc != nil && name == a.dbsc.bound.Name())
}

// LoginURL is the URL that starts a login and returns to target (a path
// on the external origin or an allowed absolute URL).
func (a *Authenticator) LoginURL(target string) string {
	return a.origin + StartPath + "?rd=" + url.QueryEscape(target)
}

// returnTarget is where a request should come back to after login: its
// path and query on the external origin, or its absolute URL when it came
// in on another host.
func (a *Authenticator) returnTarget(r *http.Request) string {
	uri := r.URL.RequestURI()
	if r.Host == "" || strings.EqualFold(r.Host, a.cfg.External.Host) {
		return uri
	}
	return a.cfg.External.Scheme + "://" + strings.ToLower(r.Host) + uri
}

// IsNavigation reports whether a request is a browser loading a page, which
// may be redirected to the login: GET or HEAD, and Sec-Fetch-Mode:
// navigate, or, from browsers that send no fetch metadata, an Accept
// header naming text/html. XHR, fetch and API clients get 401 instead,
// because a redirect to an identity provider is useless to them.
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return web.WantsHTML(r)
}

// Challenge answers a request that has no live session: a browser
// navigation is redirected (302) to the login, which returns to the page
// asked for; any other request gets 401 with a JSON body naming the login
// URL. It creates no server-side state. A session cookie that did not
// lead to a session is cleared.
func (a *Authenticator) Challenge(w http.ResponseWriter, r *http.Request) {
	login := a.LoginURL(a.returnTarget(r))
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if a.HasSessionCookie(r) {
		a.clearSessionCookie(w)
	}
	if IsNavigation(r) {
		h.Set("Location", login)
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("WWW-Authenticate", `Gatehouse realm="gatehouse", login_url="`+login+`"`)
	web.WriteJSON(w, http.StatusUnauthorized, map[string]string{
		"error":     "unauthenticated",
		"message":   "Sign in first: open login_url in a browser.",
		"login_url": login,
	})
}

// Pages renders gatehouse's own pages under the configured ui.title.
func (a *Authenticator) Pages() *web.Pages { return a.pages }

// logoutForm is the sign-out button, with its CSRF token.
func (a *Authenticator) logoutForm(s *sessions.Session) *web.Form {
	return a.logoutFormFor(s.ID, "Sign out")
}

// logoutFormFor is the sign-out button for the session with the ID.
func (a *Authenticator) logoutFormFor(id sessions.ID, button string) *web.Form {
	return &web.Form{Action: a.origin + LogoutPath, Button: button, Fields: map[string]string{"csrf": a.csrfToken(id)}}
}

// csrfToken binds a sign-out form to the session it signs out.
func (a *Authenticator) csrfToken(id sessions.ID) string {
	m := hmac.New(sha256.New, a.csrfKey)
	m.Write(id[:])
	return fmt.Sprintf("%x", m.Sum(nil))
}

// SessionCookie returns the cookie that carries the session ID: the ID
// sealed with the current cookie key, HttpOnly, SameSite=Lax, Path=/,
// Secure with the __Host- prefix on https, living as long as the session's
// absolute lifetime. With cookie.persistent false it has no Max-Age or
// Expires, so the browser drops it when it closes (unless the browser
// restores its previous session, which keeps such cookies too); the
// store's idle and absolute limits hold either way. Tools and load tests
// that create sessions through the store use it too.
func (a *Authenticator) SessionCookie(id sessions.ID) (*http.Cookie, error) {
	v, err := a.cookie.SealID(id)
	if err != nil {
		return nil, err
	}
	c := &http.Cookie{
		Name: a.cookie.Name(), Value: v, Path: "/", Domain: a.cfg.Cookie.Domain,
		MaxAge:   int(a.cfg.Session.AbsoluteTimeout / time.Second),
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	}
	if p := a.cfg.Cookie.Persistent; p != nil && !*p {
		c.MaxAge = 0 // no Max-Age, no Expires: a browser-session cookie
	}
	return c, nil
}

// clearSessionCookie removes the session cookie from the browser.
func (a *Authenticator) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: a.cookie.Name(), Value: "", Path: "/", Domain: a.cfg.Cookie.Domain, MaxAge: -1,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
}

// setCookie sets a gatehouse cookie with the attributes invariant 8
// requires: HttpOnly, SameSite=Lax, and Secure when the external URL is
// https.
func (a *Authenticator) setCookie(w http.ResponseWriter, name, value, path string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path,
		MaxAge: int(maxAge / time.Second), HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
}

// clearCookie removes a cookie from the browser (empty value, Max-Age=0).
func (a *Authenticator) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode,
	})
}
