// Package devidp is a minimal, in-memory OpenID Connect provider for
// development and demos. It implements the authorization-code flow with
// mandatory PKCE (S256), refresh tokens, the UserInfo endpoint, a JWKS with
// key rotation and RP-initiated logout. Users sign in by clicking a button:
// there are no passwords, so it must never be exposed as a production
// identity provider.
package devidp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits and lifetimes that are not configurable.
const (
	codeTTL         = 60 * time.Second
	refreshTokenTTL = 24 * time.Hour
	maxEntries      = 10000
	maxBodyBytes    = 64 << 10
	maxKeys         = 16
)

// User is an identity the development provider can sign in as.
type User struct {
	Subject, Email, Name, PreferredUsername string
	EmailVerified                           bool
	Groups                                  []string
}

// DefaultUsers returns the built-in demo users, alice (an admin) and bob.
func DefaultUsers() []User {
	return []User{
		{
			Subject:           "alice",
			Email:             "alice@example.com",
			Name:              "Alice Example",
			PreferredUsername: "alice",
			EmailVerified:     true,
			Groups:            []string{"admins", "staff"},
		},
		{
			Subject:           "bob",
			Email:             "bob@example.com",
			Name:              "Bob Example",
			PreferredUsername: "bob",
			EmailVerified:     true,
			Groups:            []string{"staff"},
		},
	}
}

// Options configures a Provider.
type Options struct {
	// Issuer is the issuer URL, e.g. "http://127.0.0.1:4181"; it may carry a
	// path and must not end with a slash. Required.
	Issuer string
	// ClientID is the only client's identifier. Required.
	ClientID string
	// ClientSecret is the only client's secret. Required.
	ClientSecret string
	// RedirectURIs is the exact-match allow list for redirect_uri. Required.
	RedirectURIs []string
	// PostLogoutRedirectURIs is the exact-match allow list for
	// post_logout_redirect_uri.
	PostLogoutRedirectURIs []string
	// Users are the identities offered on the sign-in page; default
	// DefaultUsers().
	Users []User
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// IDTokenTTL is the lifetime of ID tokens; default 1h.
	IDTokenTTL time.Duration
	// AccessTokenTTL is the lifetime of access tokens; default 1h.
	AccessTokenTTL time.Duration
	// Logger receives diagnostic logs; nil discards them.
	Logger *slog.Logger
}

// Provider is a development OpenID Connect provider. It is an http.Handler
// and is safe for concurrent use.
type Provider struct {
	issuer       string
	issuerPath   string
	clientID     string
	clientSecret string
	redirectURIs []string
	logoutURIs   []string
	users        []User
	now          func() time.Time
	idTokenTTL   time.Duration
	accessTTL    time.Duration
	log          *slog.Logger
	loginCSP     string

	mu      sync.Mutex
	keys    []*signingKey // the last one is active
	codes   *store[*authCode]
	access  *store[*accessToken]
	refresh *store[*refreshToken]
}

// authCode is an issued authorization code and what it is bound to.
type authCode struct {
	clientID      string
	redirectURI   string
	codeChallenge string
	nonce         string
	scopes        []string
	subject       string
	sid           string
	authTime      time.Time
	acr           string // authentication context class of the sign-in
	used          bool
	// issued lists the tokens minted from this code, revoked if the code is
	// replayed (RFC 6749 §4.1.2).
	issuedAccess, issuedRefresh string
}

// accessToken is what the provider remembers about an opaque access token.
type accessToken struct {
	clientID string
	subject  string
	scopes   []string
}

// refreshToken is what the provider remembers about a refresh token.
type refreshToken struct {
	clientID string
	subject  string
	sid      string
	scopes   []string
	authTime time.Time
	acr      string
}

// New validates opts and returns a Provider with a fresh RSA-2048 signing key.
func New(opts Options) (*Provider, error) {
	if opts.Issuer == "" {
		return nil, errors.New("devidp: issuer is required")
	}
	iu, err := url.Parse(opts.Issuer)
	if err != nil {
		return nil, fmt.Errorf("devidp: invalid issuer: %w", err)
	}
	switch {
	case iu.Scheme != "http" && iu.Scheme != "https":
		return nil, fmt.Errorf("devidp: issuer %q must be an http or https URL", opts.Issuer)
	case iu.Host == "":
		return nil, fmt.Errorf("devidp: issuer %q has no host", opts.Issuer)
	case strings.HasSuffix(opts.Issuer, "/"):
		return nil, fmt.Errorf("devidp: issuer %q must not end with a slash", opts.Issuer)
	case iu.RawQuery != "" || iu.Fragment != "" || strings.ContainsAny(opts.Issuer, "?#"):
		return nil, fmt.Errorf("devidp: issuer %q must not have a query or fragment", opts.Issuer)
	case iu.User != nil:
		return nil, fmt.Errorf("devidp: issuer %q must not contain user information", opts.Issuer)
	}
	if opts.ClientID == "" {
		return nil, errors.New("devidp: client id is required")
	}
	if opts.ClientSecret == "" {
		return nil, errors.New("devidp: client secret is required")
	}
	if len(opts.RedirectURIs) == 0 {
		return nil, errors.New("devidp: at least one redirect uri is required")
	}
	for _, u := range opts.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, fmt.Errorf("devidp: redirect uri: %w", err)
		}
	}
	for _, u := range opts.PostLogoutRedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, fmt.Errorf("devidp: post-logout redirect uri: %w", err)
		}
	}
	users := opts.Users
	if users == nil {
		users = DefaultUsers()
	}
	if len(users) == 0 {
		return nil, errors.New("devidp: at least one user is required")
	}
	seen := make(map[string]bool, len(users))
	copied := make([]User, len(users))
	for i, u := range users {
		if u.Subject == "" {
			return nil, fmt.Errorf("devidp: user %d has an empty subject", i)
		}
		if seen[u.Subject] {
			return nil, fmt.Errorf("devidp: duplicate user subject %q", u.Subject)
		}
		seen[u.Subject] = true
		u.Groups = slices.Clone(u.Groups)
		copied[i] = u
	}
	if opts.IDTokenTTL < 0 || opts.AccessTokenTTL < 0 {
		return nil, errors.New("devidp: token lifetimes must not be negative")
	}
	p := &Provider{
		issuer:       opts.Issuer,
		issuerPath:   iu.EscapedPath(),
		clientID:     opts.ClientID,
		clientSecret: opts.ClientSecret,
		redirectURIs: slices.Clone(opts.RedirectURIs),
		logoutURIs:   slices.Clone(opts.PostLogoutRedirectURIs),
		users:        copied,
		now:          opts.Now,
		idTokenTTL:   opts.IDTokenTTL,
		accessTTL:    opts.AccessTokenTTL,
		log:          opts.Logger,
		codes:        newStore[*authCode](maxEntries),
		access:       newStore[*accessToken](maxEntries),
		refresh:      newStore[*refreshToken](maxEntries),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.idTokenTTL == 0 {
		p.idTokenTTL = time.Hour
	}
	if p.accessTTL == 0 {
		p.accessTTL = time.Hour
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.loginCSP = loginCSP(p.redirectURIs)
	key, err := newSigningKey()
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	p.keys = []*signingKey{key}
	return p, nil
}

// checkRedirectURI checks that u is an absolute URI without a fragment, as
// RFC 6749 §3.1.2 requires of redirection endpoints.
func checkRedirectURI(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("invalid %q: %w", u, err)
	}
	if !pu.IsAbs() {
		return fmt.Errorf("%q is not an absolute uri", u)
	}
	if pu.Fragment != "" || strings.Contains(u, "#") {
		return fmt.Errorf("%q must not contain a fragment", u)
	}
	return nil
}

// loginCSP returns the Content-Security-Policy of the sign-in page. Browsers
// apply form-action to the redirects that follow a form submission too, so
// the origins of the registered redirect URIs are allowed next to 'self';
// otherwise the redirect back to the client would be blocked.
func loginCSP(redirectURIs []string) string {
	sources := []string{"'self'"}
	for _, raw := range redirectURIs {
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		src := u.Scheme + ":"
		if u.Host != "" {
			src = u.Scheme + "://" + u.Host
		}
		if !slices.Contains(sources, src) {
			sources = append(sources, src)
		}
	}
	return "default-src 'none'; style-src 'unsafe-inline'; form-action " + strings.Join(sources, " ")
}

// ServeHTTP routes requests by their path below the issuer's path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, p.issuerPath) {
		http.NotFound(w, r)
		return
	}
	switch strings.TrimPrefix(path, p.issuerPath) {
	case "/.well-known/openid-configuration":
		p.handleDiscovery(w, r)
	case "/jwks":
		p.handleJWKS(w, r)
	case "/authorize":
		p.handleAuthorize(w, r)
	case "/token":
		p.handleToken(w, r)
	case "/userinfo":
		p.handleUserinfo(w, r)
	case "/logout":
		p.handleLogout(w, r)
	default:
		http.NotFound(w, r)
	}
}

// endpoint returns the absolute URL of the endpoint at suffix.
func (p *Provider) endpoint(suffix string) string {
	return p.issuer + suffix
}

func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.endpoint("/authorize"),
		"token_endpoint":                        p.endpoint("/token"),
		"userinfo_endpoint":                     p.endpoint("/userinfo"),
		"jwks_uri":                              p.endpoint("/jwks"),
		"end_session_endpoint":                  p.endpoint("/logout"),
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      supportedScopes(),
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"acr_values_supported":                  SupportedACRValues(),
		"claims_supported": []string{
			"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "acr", "nonce", "sid", "at_hash",
			"email", "email_verified", "name", "preferred_username", "groups",
		},
		"request_parameter_supported":     false,
		"request_uri_parameter_supported": false,
		"claims_parameter_supported":      false,
		"backchannel_logout_supported":    false,
		"frontchannel_logout_supported":   false,
	})
}

// userBySubject returns the configured user with the given subject.
func (p *Provider) userBySubject(sub string) (User, bool) {
	for _, u := range p.users {
		if u.Subject == sub {
			return u, true
		}
	}
	return User{}, false
}

// allowMethods reports whether r uses one of methods, answering 405 if not.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
