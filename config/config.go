// Package config holds gatehouse's configuration: the YAML schema as typed
// structs, their defaults, ${VAR} expansion, secrets read from files, and
// validation that names the YAML path and line of every problem.
//
// The package is a leaf: it imports nothing else of gatehouse, and the other
// packages read the section they need (Session, OIDC, Cookie...).
//
// A field's doc comment is its user documentation: what it means, its
// default and its unit. The README's configuration table mirrors it.
package config

import (
	"net/netip"
	"net/url"
	"time"
)

// Config is a loaded and validated gatehouse configuration. Build one with
// Load or Parse; the zero value is not usable.
type Config struct {
	// Listen is the address the proxy listens on, host:port.
	// Default 127.0.0.1:4180. Use ":4180" to listen on every interface
	// (in a container or a Kubernetes pod).
	Listen string `yaml:"listen"`

	// ExternalURL is the URL users reach gatehouse at, e.g.
	// https://app.example.com. Required. The OIDC redirect URI is
	// EXTERNAL_URL/_gatehouse/callback. It must be https unless the host is
	// a loopback address or insecure_allow_http is set.
	ExternalURL string `yaml:"external_url"`

	// Upstream is the URL of the app gatehouse protects, e.g.
	// http://127.0.0.1:8080. Required unless routes or forward_auth are
	// given; with routes, it is the catch-all route for requests no route
	// matches.
	Upstream string `yaml:"upstream"`

	// UpstreamTimeout bounds the wait for the upstream's response headers;
	// a slower upstream gets a 504 page. Default 30s.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`

	// InsecureAllowHTTP allows an http:// external_url or issuer on a host
	// that is not loopback. Cookies then lose the Secure flag and the
	// __Host- prefix, and codes and cookies cross the network in clear text.
	// Default false; logged at WARN when set. For lab setups only.
	InsecureAllowHTTP bool `yaml:"insecure_allow_http"`

	// TrustedProxies are the addresses (CIDRs or single IPs) of proxies in
	// front of gatehouse whose forwarding headers it believes: the original
	// request of a forward-auth call (X-Forwarded-Uri, X-Original-URL...).
	// From any other peer those headers are ignored. Default: loopback
	// (127.0.0.0/8 and ::1), for a proxy on the same host or pod.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// RedirectAllowHosts are hosts, other than the external URL's, that a
	// login may return to: "app.example.com", "app.example.com:8443", or
	// ".example.com" for every subdomain. Hosts under cookie.domain are
	// always allowed.
	RedirectAllowHosts []string `yaml:"redirect_allow_hosts"`

	OIDC        OIDC        `yaml:"oidc"`
	Cookie      Cookie      `yaml:"cookie"`
	Session     Session     `yaml:"session"`
	Headers     Headers     `yaml:"headers"`
	Allow       Allow       `yaml:"allow"`
	Routes      []Route     `yaml:"routes"`
	ForwardAuth ForwardAuth `yaml:"forward_auth"`
	Assertion   Assertion   `yaml:"assertion"`
	Bearer      Bearer      `yaml:"bearer"`
	Server      Server      `yaml:"server"`
	TLS         TLS         `yaml:"tls"`
	Admin       Admin       `yaml:"admin"`
	Log         Log         `yaml:"log"`
	UI          UI          `yaml:"ui"`

	// Derived by validation.

	// External is ExternalURL parsed, without a trailing slash.
	External *url.URL `yaml:"-"`
	// UpstreamURL is Upstream parsed.
	UpstreamURL *url.URL `yaml:"-"`
	// TrustedNets are TrustedProxies parsed.
	TrustedNets []netip.Prefix `yaml:"-"`
	// Warnings are non-fatal findings (risky switches that are on) for the
	// log and for gatehouse check.
	Warnings []string `yaml:"-"`
}

// OIDC is the OpenID Connect client configuration.
type OIDC struct {
	// Issuer is the identity provider's issuer URL, exactly as it appears in
	// its discovery document and in the iss claim of its ID tokens.
	// Required.
	Issuer string `yaml:"issuer"`

	// ClientID is the client ID registered at the identity provider.
	// Required.
	ClientID string `yaml:"client_id"`

	// ClientSecret is the client secret. Give it or ClientSecretFile,
	// not both. Prefer client_secret_file or ${VAR} over a literal.
	ClientSecret string `yaml:"client_secret"`

	// ClientSecretFile is a file holding the client secret (a trailing
	// newline is ignored), e.g. a mounted Kubernetes Secret.
	ClientSecretFile string `yaml:"client_secret_file"`

	// Scopes requested at login. Default [openid, email, profile]. Must
	// include openid. Add groups (Keycloak, Dex, Okta) or offline_access
	// when your identity provider needs them.
	Scopes []string `yaml:"scopes"`

	// GroupsClaim is the ID token claim holding the user's groups: an
	// array of strings or one string. Default groups.
	GroupsClaim string `yaml:"groups_claim"`

	// UserClaim is the ID token claim whose value identifies the user in
	// the user header. Default sub (stable, never reassigned); email or
	// preferred_username are friendlier but may change.
	UserClaim string `yaml:"user_claim"`

	// LogoutAtIdP sends the browser to the identity provider's
	// end_session_endpoint after gatehouse's own logout, when the provider
	// advertises one, so the single sign-on session ends too. Default true.
	LogoutAtIdP *bool `yaml:"logout_at_idp"`

	// PostLogoutRedirectURL is where the identity provider sends the
	// browser after its logout. Default EXTERNAL_URL/_gatehouse/signed-out;
	// register it at the identity provider.
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`

	// InsecureAllowUnverifiedEmail trusts emails the identity provider has
	// not verified: an ID token with email_verified: false, or with no
	// email_verified claim at all (Microsoft Entra ID). Default false: a
	// login with email_verified: false is refused, and an email without the
	// claim is ignored (no email header, no email rule matches), because an
	// unverified email must not pass an email allow list.
	InsecureAllowUnverifiedEmail bool `yaml:"insecure_allow_unverified_email"`

	// Timeout bounds each call to the identity provider (discovery, keys,
	// token exchange). Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Cookie configures the session and login cookies.
type Cookie struct {
	// Name of the session cookie. Default gatehouse. With an https
	// external_url it is sent as __Host-<name> (Secure, Path=/, no Domain).
	// The login cookie is <name>_login, sent as __Host-<name>_login on
	// https even when domain is set (it is never shared).
	Name string `yaml:"name"`

	// Secret keys the cookies (HMAC-SHA256 and AES-256, derived with
	// HKDF): at least 32 random bytes, given raw or base64, e.g. the output
	// of openssl rand -base64 32. Give it or SecretFile, not both.
	Secret string `yaml:"secret"`

	// SecretFile is a file holding the cookie secret.
	SecretFile string `yaml:"secret_file"`

	// PreviousSecrets still open cookies made with older secrets, so a
	// secret can be rotated without signing everyone out. New cookies always
	// use Secret.
	PreviousSecrets []string `yaml:"previous_secrets"`

	// Domain, when set, shares the session cookie with every subdomain of
	// it (e.g. example.com for wiki.example.com and blog.example.com), for
	// several hosts behind one gatehouse or forward-auth across
	// subdomains. The cookie then uses the __Secure- prefix instead of
	// __Host-, and every subdomain, trusted or not, receives it and can
	// plant cookies for it. Default: unset (host-only cookie, the safest).
	Domain string `yaml:"domain"`

	// Persistent gives the session cookie a Max-Age of
	// session.absolute_timeout, so it survives closing the browser.
	// Default true. With false the session cookie has no Max-Age or
	// Expires: it is a browser-session cookie, dropped when the browser
	// closes, for shared machines. The server-side idle_timeout and
	// absolute_timeout still hold either way. Trade-off: browsers that
	// restore the previous session on start ("continue where you left
	// off") keep such cookies too, so this is not a guarantee of sign-out;
	// the idle timeout is what bounds an unattended browser.
	Persistent *bool `yaml:"persistent"`

	// Keys derived by validation: the current secret first, then the
	// previous ones.
	Keys [][]byte `yaml:"-"`
}

// Session configures server-side sessions.
type Session struct {
	// IdleTimeout ends a session that made no request for this long.
	// Default 30m. Activity extends it, never past absolute_timeout.
	IdleTimeout time.Duration `yaml:"idle_timeout"`

	// AbsoluteTimeout ends a session this long after login, whatever its
	// activity. Default 8h (an office day). At most 400 days.
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`

	// MaxSessions bounds the in-memory store; the least recently used
	// session is evicted beyond it. Default 100000.
	MaxSessions int `yaml:"max_sessions"`

	// MaxPerUser bounds the sessions of one user (one subject): a login
	// beyond it ends that user's oldest sessions first, so that one
	// account, however many times it signs in, cannot push other users
	// out of the store. At least 1; with the memory store at most
	// max_sessions. Default 10 (or max_sessions, when that is smaller).
	MaxPerUser int `yaml:"max_per_user"`

	// RefreshBefore refreshes the access token this long before it
	// expires, on the first request that needs it, when the identity
	// provider issued a refresh token; for tokens living less than twice
	// this, after half their lifetime instead, and never more often than
	// every 10s per session. Default 1m. A refresh never extends the
	// session's idle or absolute limits.
	RefreshBefore time.Duration `yaml:"refresh_before"`

	// PreservePosts holds a browser form POST (urlencoded or multipart)
	// that arrives without a live session, from the external URL's own
	// origin only (Origin, or Sec-Fetch-Site: same-origin), encrypted in
	// the session store for the sign-in's lifetime (11m), and replays
	// it to the app once after the sign-in, only when the new session's
	// user is the user of the session that expired. A cross-site POST is
	// never held. When another user signs in the form is dropped with a
	// notice; when the ended session's user is unknown (its cookie named a
	// session already swept or evicted) the user gets a page that offers
	// the fields back with a button (urlencoded forms with single-valued
	// fields) or a notice. Default false: a replayed POST is a write, and
	// held forms are server-side state from unauthenticated requests
	// (apart from the sessions; the memory store holds at most 1000 forms
	// and 64 MiB, the redis store one expiring key each, bounded by Redis's
	// memory). With the redis store any replica replays a form another
	// held.
	PreservePosts bool `yaml:"preserve_posts"`

	// PreservePostsMaxBytes is the largest form body preserve_posts
	// holds; larger POSTs get the ordinary login answer. Default 1048576
	// (1 MiB), at most 16 MiB.
	PreservePostsMaxBytes int `yaml:"preserve_posts_max_bytes"`

	// Store is where sessions live: memory (one replica) or redis (several
	// replicas share sessions; each keeps hot sessions in a local LRU).
	// Default memory.
	Store string `yaml:"store"`

	// TouchInterval throttles the writes that extend a session's idle
	// limit in the store: at most one per session per replica per
	// interval, so idle expiry is exact to within it. Default 1s for the
	// memory store, 1m for redis.
	TouchInterval time.Duration `yaml:"touch_interval"`

	// Redis configures the redis store.
	Redis Redis `yaml:"redis"`

	// SelfService serves /_gatehouse/sessions, where a signed-in user
	// sees their own sessions across devices (browser and OS, IP, when
	// signed in, last active) and signs out one of them or all others.
	// Default true; false answers 404 there.
	SelfService *bool `yaml:"self_service"`

	// Places names networks for the "Your sessions" page
	// (self_service): a session whose sign-in address lies in one of
	// them shows that place's name, the most specific network (longest
	// prefix) winning; an address in none shows no place. IPv4 and IPv6.
	// The address stored with the session is looked up when the page is
	// shown, so a changed list applies to existing sessions. gatehouse
	// makes no outside lookups (no GeoIP). Default empty: no place shown.
	Places []Place `yaml:"places"`

	// NewDevice notices a sign-in from a browser that has not signed in as
	// that user before: gatehouse keeps a device cookie (<cookie.name>_device,
	// __Host- on https; sealed with the cookie secret, 400 days) holding a
	// random device ID and one-way tags of the last 16 users who signed in
	// with that browser, and logs the event new_device (user, address,
	// browser and OS, a tag of the device) and counts it in
	// gatehouse_new_device_logins_total. headers.new_device also tells the
	// app. Nothing is stored on the server. A cleared or tampered cookie
	// counts as a new device. Default false.
	NewDevice bool `yaml:"new_device"`
	// DeviceBinding binds browser sessions to a key the browser keeps
	// (Device Bound Session Credentials): a bound session needs, besides
	// the session cookie, a short-lived bound cookie that only the
	// browser holding the key can renew, so a copied session cookie stops
	// working within device_binding_cookie_ttl. off: never offered.
	// prefer: offered after login and on page loads; browsers that bind
	// get a bound session, others keep an ordinary one. require: a
	// browser session that is not bound device_binding_grace after login
	// gets a page saying so (bearer clients are not affected). It needs
	// an https external_url and no cookie.domain (the bound cookie is
	// __Host-); otherwise prefer acts as off and require is an error.
	// Default prefer.
	DeviceBinding string `yaml:"device_binding"`

	// DeviceBindingCookieTTL is how long a bound cookie is accepted after
	// gatehouse set it; gatehouse tracks this expiry itself (a copied
	// cookie's browser-side expiry can be stripped). Browsers renew it
	// from about two minutes before it lapses, so below 2m they renew it
	// alongside every request. Default 5m; 1m to 1h.
	DeviceBindingCookieTTL time.Duration `yaml:"device_binding_cookie_ttl"`

	// DeviceBindingGrace is how long after login an unbound browser
	// session still works under device_binding: require, for the browser
	// to bind. Default 30s; 1s to 10m.
	DeviceBindingGrace time.Duration `yaml:"device_binding_grace"`

	// DeviceBindingViolation is what a bound session used with a stale
	// bound cookie (one past its expiry: a copy used after the real
	// browser renewed its own) gets: deny refuses the request; end_session
	// also ends the session everywhere, so its owner signs in again.
	// Either way the event is logged (device_binding_violation) and
	// counted. Default deny.
	DeviceBindingViolation string `yaml:"device_binding_violation"`
}

// Place is one entry of session.places: a network and the name the
// "Your sessions" page shows for addresses in it.
type Place struct {
	// Network is a CIDR, e.g. 10.1.0.0/16 or 2001:db8:1::/48, or one
	// address. No host bits may be set after the prefix length.
	Network string `yaml:"network"`
	// Name is what the page shows, e.g. "Berlin office": plain text
	// (escaped on the page), 1 to 64 characters, no control characters.
	Name string `yaml:"name"`

	// Prefix is Network parsed (derived by validation).
	Prefix netip.Prefix `yaml:"-"`
}

// MaxPlaceName is the longest session.places[].name, in characters.
const MaxPlaceName = 64

// Redis configures the redis session store: Redis 7.0 or later, or Valkey
// (gatehouse uses PEXPIRETIME and PEXPIREAT ... GT).
type Redis struct {
	// URL of a single Redis: redis://[user:password@]host:6379/0, or
	// rediss:// for TLS. With sentinel or cluster it gives only the
	// credentials, database and TLS. Give URL or URLFile.
	URL string `yaml:"url"`
	// URLFile is a file holding the URL (it carries the password).
	URLFile string `yaml:"url_file"`
	// Sentinel, when set, finds the master through Redis Sentinel.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// Cluster, when set, talks to a Redis Cluster.
	Cluster RedisCluster `yaml:"cluster"`
	// KeyPrefix starts every key gatehouse writes. Default gatehouse:.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds every Redis command. Default 500ms.
	Timeout time.Duration `yaml:"timeout"`
	// LocalCache is how many sessions each replica keeps in its local
	// LRU; 0 reads Redis on every request. Default 10000.
	LocalCache *int `yaml:"local_cache"`
	// StaleFor lets sessions in the local cache keep serving this long
	// while Redis is unreachable. Default 0: fail closed (503) for every
	// request until Redis answers again.
	StaleFor time.Duration `yaml:"stale_for"`
}

// RedisSentinel locates a master through Sentinel.
type RedisSentinel struct {
	// Master is the master's name in Sentinel.
	Master string `yaml:"master"`
	// Addrs are the Sentinels, host:port.
	Addrs []string `yaml:"addrs"`
}

// RedisCluster lists Redis Cluster nodes.
type RedisCluster struct {
	// Addrs are some of the cluster's nodes, host:port.
	Addrs []string `yaml:"addrs"`
}

// Assertion configures the signed identity assertion: a short-lived JWT
// (ES256) gatehouse adds to every proxied request, so an upstream can
// check who is calling even when someone reaches it without gatehouse.
type Assertion struct {
	// Enabled turns the assertion on. Default true.
	Enabled *bool `yaml:"enabled"`
	// Header carries the assertion. Default X-Gatehouse-Assertion.
	Header string `yaml:"header"`
	// KeyFile is a PEM file with the ECDSA P-256 private key that signs
	// (openssl ecparam -name prime256v1 -genkey -noout -out key.pem).
	// Without it each gatehouse makes an ephemeral key at start: fine for
	// one replica, but replicas then sign with different keys.
	KeyFile string `yaml:"key_file"`
	// PreviousKeyFiles are PEM files of keys that signed before; their
	// public keys stay in /_gatehouse/jwks.json so assertions they signed
	// still verify during a rotation.
	PreviousKeyFiles []string `yaml:"previous_key_files"`
	// Lifetime of an assertion, at most 5m. Default 5m.
	Lifetime time.Duration `yaml:"lifetime"`
	// Audience overrides the aud claim, which is by default the route's
	// upstream origin (e.g. http://127.0.0.1:8080).
	Audience string `yaml:"audience"`
}

// Bearer lets machine clients call routes with a JWT from the identity
// provider instead of a session (Authorization: Bearer <JWT>).
type Bearer struct {
	// Enabled turns bearer tokens on. Default false.
	Enabled bool `yaml:"enabled"`
	// Audiences the token's aud must name one of. Required when enabled.
	Audiences []string `yaml:"audiences"`
	// RequireATJWT accepts only tokens typed at+jwt in their header (the
	// JWT access token profile, RFC 9068 §2.1), so that no other token
	// the provider signs can pass. Turn it on when the provider issues
	// such tokens (Duende IdentityServer does by default). Default false:
	// ID and logout tokens are still refused by their claims.
	RequireATJWT bool `yaml:"require_at_jwt"`
}

// Headers names the identity headers gatehouse sets on requests to the
// upstream. Whatever a client sends under these names (and any look-alike
// with other case or with _ for -) is removed first.
type Headers struct {
	// User carries the user_claim value (default the subject). Default
	// X-Forwarded-User.
	User string `yaml:"user"`
	// Email carries the verified email. Default X-Forwarded-Email.
	Email string `yaml:"email"`
	// Groups carries the groups, comma-separated. Default
	// X-Forwarded-Groups.
	Groups string `yaml:"groups"`
	// Name carries preferred_username, or name when the provider sends no
	// preferred_username. Default X-Forwarded-Preferred-Username.
	Name string `yaml:"name"`
	// NewDevice, when set, is a header sent with the value 1 on the first
	// request to the app after a sign-in that session.new_device saw as
	// coming from a new browser, so the app can notify the user. Whatever
	// a client sends under this name is removed. Default unset (no
	// header); needs session.new_device.
	NewDevice string `yaml:"new_device"`
}

// Allow is an authorization policy. A signed-in user passes when any one
// rule matches. It must hold at least one rule, or any_user: true: an
// empty policy is a configuration error, never "anyone", and a policy
// with no rule lets nobody pass.
//
// The top-level allow is the policy of the catch-all route (upstream), of
// routes without their own, and of forward-auth calls no route matches.
// It is required with a top-level upstream, without routes, or when a
// route that is not wholly public has no allow; it may be left out only
// when every route has its own allow or is wholly public (see
// Route.WholePublic), and forward-auth calls for requests no route
// matches then let nobody pass.
type Allow struct {
	// AnyUser lets every user the identity provider signs in pass. With
	// an open provider (Google, GitHub, a realm with self-registration)
	// that is anyone on the internet. It must be the only rule. Default
	// false.
	AnyUser bool `yaml:"any_user"`
	// Emails allowed, compared case-insensitively.
	Emails []string `yaml:"emails"`
	// EmailDomains allowed: the part after the single @ equals one of these
	// (case-insensitive). A leading "*." also allows subdomains:
	// *.example.com allows a@eu.example.com but not a@example.com.
	EmailDomains []string `yaml:"email_domains"`
	// Groups allowed: the user is in at least one of them (exact match).
	Groups []string `yaml:"groups"`
	// Claims allowed: the ID token claim (a dotted path such as
	// realm_access.roles reaches into objects) holds one of the values.
	// Values compare as strings; a list claim matches when any element
	// does.
	Claims map[string][]string `yaml:"claims"`
}

// Route is one app behind gatehouse. A request goes to the route with the
// most specific matching host (exact, then the longest wildcard, then
// routes without a host), and within it the longest matching path prefix.
type Route struct {
	// Name labels the route in logs; default host+path_prefix.
	Name string `yaml:"name"`
	// Match selects the requests of the route.
	Match RouteMatch `yaml:"match"`
	// Upstream is the app's URL. Without it the route only answers
	// forward-auth calls, and gatehouse does not proxy its requests.
	Upstream string `yaml:"upstream"`
	// Public are path prefixes served without login (static assets, a
	// health check). Compared case-sensitively on segment boundaries, after
	// the path is cleaned; they must lie under match.path_prefix.
	Public []string `yaml:"public"`
	// Allow is the route's policy; when absent the top-level allow applies.
	// When given it needs at least one rule, or any_user: true.
	Allow *Allow `yaml:"allow"`
	// PassAccessToken sends the user's OAuth access token to the upstream
	// in X-Forwarded-Access-Token. Default false.
	PassAccessToken bool `yaml:"pass_access_token"`
	// PassIDToken sends the user's ID token in X-Forwarded-Id-Token.
	// Default false.
	PassIDToken bool `yaml:"pass_id_token"`
	// ExtraHeaders are static headers set on every request to the
	// upstream, e.g. {X-Env: prod}.
	ExtraHeaders map[string]string `yaml:"extra_headers"`
	// PreserveHost sends the client's Host header to the upstream instead
	// of the upstream URL's host. Default false.
	PreserveHost bool `yaml:"preserve_host"`
	// AssertionAudience overrides the assertion's aud for this route.
	AssertionAudience string `yaml:"assertion_audience"`
	// MaxAuthAge asks for a recent sign-in at the identity provider on
	// this route (step-up), e.g. 15m for /admin: a session whose last
	// sign-in (the ID token's auth_time) is older, or unknown, is sent
	// back through the provider with max_age and prompt=login and returns
	// to the same URL with a new session; an API request (not a page
	// load) gets 401 with WWW-Authenticate: Bearer
	// error="insufficient_user_authentication" and max_age (RFC 9470).
	// A provider that ignores max_age gets a refusal page, not a loop.
	// Default unset (any sign-in age).
	MaxAuthAge time.Duration `yaml:"max_auth_age"`
	// ACRValues asks for a sign-in of one of these authentication context
	// classes on this route (step-up), e.g. [mfa], for identity providers
	// that support acr_values: a session whose login reported another acr,
	// or none, is sent back through the provider with acr_values and
	// returns with a new session; the ID token's acr must be one of the
	// values, or the sign-in is refused with a page (no loop). An API
	// request gets 401 with WWW-Authenticate: Bearer
	// error="insufficient_user_authentication" and acr_values (RFC 9470).
	// gatehouse check warns when the provider's discovery does not list
	// them in acr_values_supported. Default unset (any acr).
	ACRValues []string `yaml:"acr_values"`

	// UpstreamURL is Upstream parsed.
	UpstreamURL *url.URL `yaml:"-"`
}

// RouteMatch selects requests by host and path.
type RouteMatch struct {
	// Host is an exact host name (wiki.example.com) or a wildcard
	// (*.example.com, any subdomain at any depth), compared without case
	// and without the port. Empty: any host.
	Host string `yaml:"host"`
	// PathPrefix matches on segment boundaries: /app matches /app and
	// /app/x but not /application. Compared without case (ASCII letters),
	// after the request path is cleaned. Default /.
	PathPrefix string `yaml:"path_prefix"`
}

// ForwardAuth configures /_gatehouse/auth, which answers "may this request
// pass?" for a proxy already in front of the app (nginx auth_request,
// Traefik ForwardAuth, Envoy ext_authz over HTTP).
type ForwardAuth struct {
	// Mode names the proxy in front, which decides where gatehouse reads
	// the original request and how it answers one without a session:
	// nginx (X-Original-URL; 401 with the login URL in X-Gatehouse-Login,
	// for error_page 401), traefik (X-Forwarded-Uri/Host/Method/Proto; 302
	// to the login for a browser, 401 otherwise), envoy (the path after
	// /_gatehouse/auth; 302 or 401). Headers of another proxy's family are
	// ignored. With nginx and traefik, ?mode= on the call may choose the
	// other answer style. Default nginx.
	Mode string `yaml:"mode"`
}

// Server configures the HTTP listener.
type Server struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the size of a request's headers; larger
	// requests get 431. Default 65536 (64 KiB; Go's default is 1 MiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds the wait for in-flight requests on SIGTERM.
	// Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReadBodyTimeout bounds how long a proxied request's body may take
	// to arrive, counted from when gatehouse starts forwarding it; every
	// min_body_rate bytes received extend it by a second, so uploads at
	// any usable speed are unaffected. A client too slow gets 408 and the
	// upstream connection is released. Upgraded connections (WebSockets)
	// are not limited. 0 turns the limit off. Default 10s.
	ReadBodyTimeout time.Duration `yaml:"read_body_timeout"`
	// MinBodyRate is the slowest a request body may arrive, in bytes per
	// second, once read_body_timeout has passed. 0 makes
	// read_body_timeout a fixed limit for the whole body. Default 1024.
	MinBodyRate int `yaml:"min_body_rate"`
}

// TLS makes gatehouse serve HTTPS itself, for a host with no TLS
// proxy in front (a VM before a legacy app). Give cert_file and key_file
// together, or neither: without them gatehouse serves plain HTTP and
// expects TLS to end in front of it. With them, listen serves HTTPS only
// (TLS 1.2 and 1.3 with Go's default cipher suites, HTTP/2 and
// HTTP/1.1), server.* timeouts apply as before, and external_url must be
// https.
//
// The pair is checked at load and by gatehouse check: both files
// readable, PEM, the key matching the certificate, valid now, and the
// certificate naming external_url's host (subjectAltName, wildcards
// count); one expiring within 14 days is a warning. While running,
// gatehouse re-reads the files when their modification time or size
// changes (checked every 2s) and on SIGHUP: new handshakes get the new
// certificate, connections and sessions carry on. A new pair that fails
// a check is refused with an ERROR naming the file and the problem, and
// the previous pair keeps serving. Changing these keys needs a restart.
type TLS struct {
	// CertFile is a PEM file with the server's certificate first, then
	// any intermediates (fullchain.pem from Let's Encrypt, tls.crt from
	// cert-manager). Default: unset (plain HTTP).
	CertFile string `yaml:"cert_file"`
	// KeyFile is a PEM file with the certificate's unencrypted private
	// key (PKCS #8, EC or RSA). Default: unset.
	KeyFile string `yaml:"key_file"`
	// RedirectHTTP, when set, is a second address (e.g. :80 or
	// 127.0.0.1:8080) that answers plain HTTP only with a redirect to
	// the same path on external_url's origin (301 for GET and HEAD, 308
	// otherwise, so the method and body are kept), and
	// /_gatehouse/healthz with ok. It never proxies and serves nothing
	// else. Default: unset (no plain HTTP listener).
	RedirectHTTP string `yaml:"redirect_http"`
}

// Enabled reports whether gatehouse serves HTTPS itself.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Admin configures the admin listener: Prometheus metrics and session
// administration, on an address of its own, apart from user traffic.
type Admin struct {
	// Listen is the admin listener's address. Default: off. Bind it to
	// loopback (127.0.0.1:9090) unless something else must scrape it.
	Listen string `yaml:"listen"`
	// TokenFile holds the token that /sessions calls must present
	// (Authorization: Bearer <token>). Without it session administration
	// is off; metrics need no token.
	TokenFile string `yaml:"token_file"`

	// Token is read from TokenFile by validation.
	Token string `yaml:"-"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json, text, or auto (text on a terminal, JSON otherwise).
	// Default auto.
	Format string `yaml:"format"`
}

// UI is how gatehouse's own pages (sign-out, signed out, 403, errors)
// present themselves.
type UI struct {
	// Title names the application on gatehouse's pages: their header and
	// the browser tab read e.g. "You are signed out · Team wiki". Plain
	// text (escaped on the page), 1 to 60 characters, no control
	// characters. Default "gatehouse".
	Title string `yaml:"title"`
}

// MaxUITitle is the longest ui.title, in characters.
const MaxUITitle = 60

// Defaults.
const (
	DefaultListen          = "127.0.0.1:4180"
	DefaultUpstreamTimeout = 30 * time.Second
	DefaultReadBodyTimeout = 10 * time.Second
	DefaultMinBodyRate     = 1024
	DefaultOIDCTimeout     = 10 * time.Second
	DefaultCookieName      = "gatehouse"
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 8 * time.Hour
	DefaultMaxSessions     = 100000
	DefaultMaxPerUser      = 10
	// DefaultPreservePostsMaxBytes is session.preserve_posts_max_bytes's default.
	DefaultPreservePostsMaxBytes = 1 << 20
	DefaultUserHeader            = "X-Forwarded-User"
	DefaultEmailHeader           = "X-Forwarded-Email"
	DefaultGroupsHeader          = "X-Forwarded-Groups"
	DefaultNameHeader            = "X-Forwarded-Preferred-Username"
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultServerIdleTimeout     = 2 * time.Minute
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultShutdownTimeout       = 30 * time.Second

	// MinSecretBytes is the least number of bytes a cookie secret has.
	MinSecretBytes = 32
	// MaxAbsoluteTimeout is the longest session: browsers cap cookie
	// lifetimes at 400 days (RFC 6265bis).
	MaxAbsoluteTimeout = 400 * 24 * time.Hour
)

// DefaultScopes are requested when oidc.scopes is not set.
func DefaultScopes() []string { return []string{"openid", "email", "profile"} }

// applyDefaults fills every field whose key is absent from the file with
// its default. A key that is present keeps its value, so an explicit 0 is
// refused by validation rather than silently replaced.
func (c *Config) applyDefaults(present func(path string) bool) {
	str := func(path string, p *string, def string) {
		if !present(path) && *p == "" {
			*p = def
		}
	}
	dur := func(path string, p *time.Duration, def time.Duration) {
		if !present(path) {
			*p = def
		}
	}
	num := func(path string, p *int, def int) {
		if !present(path) {
			*p = def
		}
	}
	str("listen", &c.Listen, DefaultListen)
	if !present("trusted_proxies") {
		c.TrustedProxies = []string{"127.0.0.0/8", "::1/128"}
	}
	str("forward_auth.mode", &c.ForwardAuth.Mode, "nginx")
	dur("upstream_timeout", &c.UpstreamTimeout, DefaultUpstreamTimeout)
	if c.OIDC.Scopes == nil {
		c.OIDC.Scopes = DefaultScopes()
	}
	str("oidc.groups_claim", &c.OIDC.GroupsClaim, "groups")
	str("oidc.user_claim", &c.OIDC.UserClaim, "sub")
	if c.Cookie.Persistent == nil {
		t := true
		c.Cookie.Persistent = &t
	}
	if c.Session.SelfService == nil {
		t := true
		c.Session.SelfService = &t
	}
	if c.OIDC.LogoutAtIdP == nil {
		t := true
		c.OIDC.LogoutAtIdP = &t
	}
	dur("oidc.timeout", &c.OIDC.Timeout, DefaultOIDCTimeout)
	str("cookie.name", &c.Cookie.Name, DefaultCookieName)
	dur("session.idle_timeout", &c.Session.IdleTimeout, DefaultIdleTimeout)
	dur("session.absolute_timeout", &c.Session.AbsoluteTimeout, DefaultAbsoluteTimeout)
	dur("session.refresh_before", &c.Session.RefreshBefore, time.Minute)
	str("session.store", &c.Session.Store, "memory")
	str("session.device_binding", &c.Session.DeviceBinding, "prefer")
	dur("session.device_binding_cookie_ttl", &c.Session.DeviceBindingCookieTTL, 5*time.Minute)
	dur("session.device_binding_grace", &c.Session.DeviceBindingGrace, 30*time.Second)
	str("session.device_binding_violation", &c.Session.DeviceBindingViolation, "deny")
	if c.Session.Store == "redis" {
		dur("session.touch_interval", &c.Session.TouchInterval, time.Minute)
	} else {
		dur("session.touch_interval", &c.Session.TouchInterval, time.Second)
	}
	str("session.redis.key_prefix", &c.Session.Redis.KeyPrefix, "gatehouse:")
	dur("session.redis.timeout", &c.Session.Redis.Timeout, 500*time.Millisecond)
	if c.Session.Redis.LocalCache == nil {
		n := 10000
		c.Session.Redis.LocalCache = &n
	}
	if c.Assertion.Enabled == nil {
		t := true
		c.Assertion.Enabled = &t
	}
	str("assertion.header", &c.Assertion.Header, "X-Gatehouse-Assertion")
	dur("assertion.lifetime", &c.Assertion.Lifetime, 5*time.Minute)
	num("session.max_sessions", &c.Session.MaxSessions, DefaultMaxSessions)
	num("session.preserve_posts_max_bytes", &c.Session.PreservePostsMaxBytes, DefaultPreservePostsMaxBytes)
	num("session.max_per_user", &c.Session.MaxPerUser, min(DefaultMaxPerUser, max(c.Session.MaxSessions, 1)))
	str("headers.user", &c.Headers.User, DefaultUserHeader)
	str("headers.email", &c.Headers.Email, DefaultEmailHeader)
	str("headers.groups", &c.Headers.Groups, DefaultGroupsHeader)
	str("headers.name", &c.Headers.Name, DefaultNameHeader)
	dur("server.read_header_timeout", &c.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur("server.idle_timeout", &c.Server.IdleTimeout, DefaultServerIdleTimeout)
	num("server.max_header_bytes", &c.Server.MaxHeaderBytes, DefaultMaxHeaderBytes)
	dur("server.shutdown_timeout", &c.Server.ShutdownTimeout, DefaultShutdownTimeout)
	dur("server.read_body_timeout", &c.Server.ReadBodyTimeout, DefaultReadBodyTimeout)
	num("server.min_body_rate", &c.Server.MinBodyRate, DefaultMinBodyRate)
	str("log.level", &c.Log.Level, "info")
	str("log.format", &c.Log.Format, "auto")
	str("ui.title", &c.UI.Title, "gatehouse")
}

// Secure reports whether cookies get the Secure flag and the __Host- prefix:
// true when the external URL is https.
func (c *Config) Secure() bool { return c.External != nil && c.External.Scheme == "https" }

// CallbackURL is the OIDC redirect URI to register at the identity provider.
func (c *Config) CallbackURL() string { return c.ExternalURL + "/_gatehouse/callback" }
