package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	pathpkg "path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// validator checks a decoded configuration, fills its derived fields and
// collects every problem with its YAML path and line.
type validator struct {
	lines    map[string]int
	null     map[string]bool // paths given with no value
	problems []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Line: v.lines[path], Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate(c *Config) {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		v.add("listen", "%q is not host:port; write e.g. 127.0.0.1:4180 or :4180", c.Listen)
	}
	c.External = v.externalURL(c)
	if c.External != nil {
		c.ExternalURL = c.External.String()
	}
	if c.Upstream != "" || (len(c.Routes) == 0 && v.lines["forward_auth"] == 0) {
		c.UpstreamURL = v.upstreamURL("upstream", c.Upstream)
	}
	v.positive("upstream_timeout", c.UpstreamTimeout)
	v.trustedProxies(c)
	v.redirectHosts(c)
	if m := c.ForwardAuth.Mode; m != "nginx" && m != "traefik" && m != "envoy" {
		v.add("forward_auth.mode", "%q is not a mode; use nginx (401 + X-Gatehouse-Login), traefik or envoy (302 to the login)", m)
	}
	if c.InsecureAllowHTTP {
		c.Warnings = append(c.Warnings, "insecure_allow_http is set: cookies and authorization codes may cross the network unencrypted")
	}
	v.oidc(c)
	v.cookie(c)
	v.session(&c.Session)
	v.deviceBinding(c)
	v.headers(&c.Headers)
	v.newDevice(c)
	if v.lines["allow"] != 0 {
		v.allow("allow", &c.Allow)
	}
	v.routes(c)
	v.requirePolicies(c)
	v.assertion(c)
	v.bearer(c)
	v.server(&c.Server)
	v.admin(c)
	v.tlsSection(c)
	v.log(&c.Log)
	v.ui(&c.UI)
}

// ui checks ui.title: it is shown on every page gatehouse serves, so it
// must be short, one line, and readable.
func (v *validator) ui(u *UI) {
	t := u.Title
	switch n := utf8.RuneCountInString(t); {
	case !utf8.ValidString(t):
		v.add("ui.title", "%q is not valid UTF-8", t)
	case strings.TrimSpace(t) == "":
		v.add("ui.title", "must name the application, e.g. \"Team wiki\" (got %q); leave it out for \"gatehouse\"", t)
	case n > MaxUITitle:
		v.add("ui.title", "is %d characters; use at most %d (got %q)", n, MaxUITitle, t)
	case strings.IndexFunc(t, unicode.IsControl) >= 0:
		v.add("ui.title", "must be one line of text without control characters (got %q)", t)
	}
}

func (v *validator) admin(c *Config) {
	a := &c.Admin
	if a.Listen == "" {
		if a.TokenFile != "" {
			v.add("admin.token_file", "set admin.listen too; the admin endpoints live on their own listener")
		}
		return
	}
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		v.add("admin.listen", "%q is not host:port; write e.g. 127.0.0.1:9090", a.Listen)
		return
	}
	if a.Listen == c.Listen {
		v.add("admin.listen", "must differ from listen (%s): admin endpoints stay off the user-facing port", c.Listen)
	}
	if a.TokenFile != "" {
		tok, err := readSecretFile(a.TokenFile)
		switch {
		case err != nil:
			v.add("admin.token_file", "cannot read %s: %v", a.TokenFile, err)
		case len(strings.TrimSpace(string(tok))) < 16:
			v.add("admin.token_file", "the token is shorter than 16 characters; use e.g. openssl rand -hex 32")
		default:
			a.Token = strings.TrimSpace(string(tok))
		}
	}
	if !IsLoopback(host) {
		c.Warnings = append(c.Warnings, fmt.Sprintf("admin.listen %s is not loopback: metrics are readable by anyone who reaches it", a.Listen))
	}
}

func (v *validator) log(l *Log) {
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, l.Level) {
		v.add("log.level", "%q is not a level; use debug, info, warn or error", l.Level)
	}
	if !slices.Contains([]string{"auto", "json", "text"}, l.Format) {
		v.add("log.format", "%q is not a format; use auto, json or text", l.Format)
	}
}

func (v *validator) assertion(c *Config) {
	a := &c.Assertion
	if !*a.Enabled {
		return
	}
	if a.Lifetime < time.Second || a.Lifetime > 5*time.Minute {
		v.add("assertion.lifetime", "must be between 1s and 5m (got %s)", a.Lifetime)
	}
	if !ValidToken(a.Header) || !strings.HasPrefix(NormalizeHeader(a.Header), "x-") {
		v.add("assertion.header", "%q is not a header name starting with X-; e.g. X-Gatehouse-Assertion", a.Header)
	}
	for i, f := range append([]string{a.KeyFile}, a.PreviousKeyFiles...) {
		if f == "" {
			continue
		}
		path := "assertion.key_file"
		if i > 0 {
			path = fmt.Sprintf("assertion.previous_key_files[%d]", i-1)
		}
		if _, err := readSecretFile(f); err != nil {
			v.add(path, "cannot read %s: %v", f, err)
		}
	}
	if a.KeyFile == "" && c.Session.Store == "redis" {
		c.Warnings = append(c.Warnings, "assertion.key_file is not set while sessions are shared through redis: each replica would sign identity assertions with its own ephemeral key, and an upstream would have to trust every replica's /_gatehouse/jwks.json. Set assertion.key_file to one key for all replicas.")
	}
	if a.Audience != "" && strings.ContainsFunc(a.Audience, func(r rune) bool { return r <= ' ' }) {
		v.add("assertion.audience", "%q holds whitespace", a.Audience)
	}
}

func (v *validator) bearer(c *Config) {
	b := &c.Bearer
	if !b.Enabled {
		return
	}
	if len(b.Audiences) == 0 {
		v.add("bearer.audiences", "required when bearer.enabled; list the audiences (aud) machine tokens must carry, e.g. [gatehouse-api]")
	}
	for i, a := range b.Audiences {
		if a == "" {
			v.add(fmt.Sprintf("bearer.audiences[%d]", i), "empty audience")
		}
	}
}

// httpURL parses an absolute http(s) URL and reports what is wrong with it.
func (v *validator) httpURL(path, raw, example string) *url.URL {
	if raw == "" {
		v.add(path, "required; e.g. %s", example)
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		v.add(path, "%q is not an absolute http(s) URL; e.g. %s", raw, example)
		return nil
	}
	if u.User != nil {
		v.add(path, "must not carry a user name or password (%q); pass credentials another way", u.Redacted())
		return nil
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		v.add(path, "must not have a query or fragment (%q)", raw)
		return nil
	}
	if strings.HasSuffix(u.Host, ":") {
		v.add(path, "empty port in %q; drop the colon or give a port", raw)
		return nil
	}
	return u
}

// requireTLS refuses plain http to a host that is not loopback, unless
// insecure_allow_http is set (RFC 9700 §2.6: authorization responses never
// travel over unencrypted connections).
func (v *validator) requireTLS(path string, u *url.URL, c *Config) {
	if u == nil || u.Scheme == "https" || c.InsecureAllowHTTP || IsLoopback(u.Hostname()) {
		return
	}
	v.add(path, "http:// is allowed only for localhost and 127.0.0.1; use https://%s, or set insecure_allow_http: true for a lab", u.Host)
}

// IsLoopback reports whether host names this machine: localhost or a
// loopback IP address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) externalURL(c *Config) *url.URL {
	u := v.httpURL("external_url", c.ExternalURL, "https://app.example.com")
	if u == nil {
		return nil
	}
	if u.Path != "" && u.Path != "/" {
		v.add("external_url", "must not have a path (%q): gatehouse serves its own endpoints at /_gatehouse/ on the host's root", u.Path)
		return nil
	}
	v.requireTLS("external_url", u, c)
	u.Path = ""
	u.RawPath = ""
	u.Host = strings.ToLower(u.Host)
	return u
}

func (v *validator) upstreamURL(path, raw string) *url.URL {
	return v.httpURL(path, raw, "http://127.0.0.1:8080")
}

func (v *validator) positive(path string, d interface{ Nanoseconds() int64 }) {
	if d.Nanoseconds() <= 0 {
		v.add(path, "must be positive")
	}
}

// atLeast refuses a duration under min (cookie lifetimes count whole
// seconds).
func (v *validator) atLeast(path string, d, min time.Duration) {
	if d <= 0 {
		v.add(path, "must be positive")
	} else if d < min {
		v.add(path, "must be at least %s (got %s)", min, d)
	}
}

func (v *validator) oidc(c *Config) {
	o := &c.OIDC
	if u := v.httpURL("oidc.issuer", o.Issuer, "https://login.example.com/realms/main"); u != nil {
		v.requireTLS("oidc.issuer", u, c)
	}
	if o.ClientID == "" {
		v.add("oidc.client_id", "required; the client ID registered at your identity provider")
	}
	o.ClientSecret = v.secret("oidc.client_secret", o.ClientSecret, o.ClientSecretFile)
	if o.ClientSecret == "" && o.ClientSecretFile == "" {
		v.add("oidc.client_secret", "required; give client_secret (e.g. ${OIDC_CLIENT_SECRET}) or client_secret_file")
	}
	if !slices.Contains(o.Scopes, "openid") {
		v.add("oidc.scopes", "must include openid (got %v)", o.Scopes)
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			v.add(fmt.Sprintf("oidc.scopes[%d]", i), "%q is not a scope; one scope per list item, no spaces", s)
		}
	}
	if o.PostLogoutRedirectURL != "" {
		v.httpURL("oidc.post_logout_redirect_url", o.PostLogoutRedirectURL, "https://app.example.com/_gatehouse/signed-out")
	} else if c.External != nil {
		o.PostLogoutRedirectURL = c.ExternalURL + "/_gatehouse/signed-out"
	}
	v.positive("oidc.timeout", o.Timeout)
	if o.InsecureAllowUnverifiedEmail {
		c.Warnings = append(c.Warnings, "oidc.insecure_allow_unverified_email is set: emails the identity provider has not verified pass email allow lists")
	}
}

// secret resolves a value given inline or in a file (exactly one of them)
// and returns it; problems are recorded at path or path_file.
func (v *validator) secret(path, inline, file string) string {
	filePath := path + "_file"
	if inline != "" && file != "" {
		v.add(path, "give %s or %s, not both", lastKey(path), lastKey(filePath))
		return ""
	}
	if file == "" {
		return inline
	}
	data, err := readSecretFile(file)
	if err != nil {
		v.add(filePath, "cannot read %s: %v", file, err)
		return ""
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		v.add(filePath, "%s is empty", file)
	}
	return s
}

// maxSecretFileBytes bounds a secret file: a secret is short, and a path
// such as /dev/zero must not exhaust memory.
const maxSecretFileBytes = 64 << 10

// readSecretFile reads a regular file of at most maxSecretFileBytes.
func readSecretFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if len(data) > maxSecretFileBytes {
		return nil, fmt.Errorf("larger than %d bytes; a secret file holds one secret", maxSecretFileBytes)
	}
	return data, nil
}

func lastKey(path string) string { return path[strings.LastIndexByte(path, '.')+1:] }

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (v *validator) cookie(c *Config) {
	k := &c.Cookie
	if k.Domain != "" {
		k.Domain = strings.ToLower(strings.TrimPrefix(k.Domain, "."))
		switch {
		case !validHostname(k.Domain) || !strings.Contains(k.Domain, "."):
			v.add("cookie.domain", "%q is not a domain to share the cookie under; write e.g. example.com", k.Domain)
		case c.External != nil && c.External.Hostname() != k.Domain && !strings.HasSuffix(c.External.Hostname(), "."+k.Domain):
			v.add("cookie.domain", "external_url's host %s is not under %s, so browsers would refuse the cookie", c.External.Hostname(), k.Domain)
		}
	}
	if !ValidToken(k.Name) {
		v.add("cookie.name", "%q is not a cookie name; use letters, digits, - and _", k.Name)
	} else if strings.HasPrefix(strings.ToLower(k.Name), "__host-") || strings.HasPrefix(strings.ToLower(k.Name), "__secure-") {
		v.add("cookie.name", "%q: leave out the prefix; gatehouse adds __Host- itself when external_url is https", k.Name)
	}
	secret := v.secret("cookie.secret", k.Secret, k.SecretFile)
	if secret == "" && k.SecretFile == "" {
		v.add("cookie.secret", "required; at least %d random bytes, e.g. openssl rand -base64 32", MinSecretBytes)
		return
	}
	path := "cookie.secret"
	if k.SecretFile != "" {
		path = "cookie.secret_file"
	}
	if key, ok := v.cookieKey(path, secret); ok {
		k.Keys = append(k.Keys, key)
	}
	for i, s := range k.PreviousSecrets {
		if key, ok := v.cookieKey(fmt.Sprintf("cookie.previous_secrets[%d]", i), s); ok {
			k.Keys = append(k.Keys, key)
		}
	}
}

// cookieKey turns a secret into key material: base64 when it decodes to
// enough bytes, else the raw bytes.
func (v *validator) cookieKey(path, secret string) ([]byte, bool) {
	if secret == "" {
		return nil, false
	}
	key := DecodeSecret(secret)
	if len(key) < MinSecretBytes {
		if b, ok := decodeBase64(secret); ok && len(secret) >= 16 {
			v.add(path, "%d characters (%d bytes as base64); need at least %d bytes, e.g. openssl rand -base64 32", len(secret), len(b), MinSecretBytes)
		} else {
			v.add(path, "%d bytes; need at least %d, e.g. openssl rand -base64 32", len(key), MinSecretBytes)
		}
		return nil, false
	}
	return key, true
}

// DecodeSecret returns the bytes of a secret: its base64 decoding (standard
// or URL alphabet, padded or not) when it is valid base64 of at least
// MinSecretBytes bytes, else the string's own bytes.
func DecodeSecret(s string) []byte {
	if b, ok := decodeBase64(s); ok && len(b) >= MinSecretBytes {
		return b
	}
	return []byte(s)
}

// decodeBase64 decodes s in any of the four base64 alphabets and paddings.
func decodeBase64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

func (v *validator) session(s *Session) {
	v.atLeast("session.idle_timeout", s.IdleTimeout, time.Second)
	v.atLeast("session.absolute_timeout", s.AbsoluteTimeout, time.Second)
	if s.IdleTimeout > s.AbsoluteTimeout {
		v.add("session.idle_timeout", "must not be longer than session.absolute_timeout (got %s > %s)", s.IdleTimeout, s.AbsoluteTimeout)
	}
	if s.AbsoluteTimeout > MaxAbsoluteTimeout {
		v.add("session.absolute_timeout", "at most 400 days (browsers cap cookie lifetimes there); got %s", s.AbsoluteTimeout)
	}
	if s.MaxSessions < 1 {
		v.add("session.max_sessions", "must be at least 1 (got %d)", s.MaxSessions)
	}
	switch {
	case s.MaxPerUser < 1:
		v.add("session.max_per_user", "must be at least 1 (got %d); it bounds the sessions one user's logins keep, so that they cannot push other users out", s.MaxPerUser)
	case s.Store != "redis" && s.MaxSessions >= 1 && s.MaxPerUser > s.MaxSessions:
		v.add("session.max_per_user", "must not exceed session.max_sessions (got %d > %d)", s.MaxPerUser, s.MaxSessions)
	}
	if s.RefreshBefore < 0 {
		v.add("session.refresh_before", "must not be negative")
	}
	if s.PreservePostsMaxBytes < 1 || s.PreservePostsMaxBytes > 16<<20 {
		v.add("session.preserve_posts_max_bytes", "must be between 1 and 16777216 bytes (got %d)", s.PreservePostsMaxBytes)
	}
	v.positive("session.touch_interval", s.TouchInterval)
	if s.IdleTimeout > 0 && s.TouchInterval > s.IdleTimeout/2 {
		if v.lines["session.touch_interval"] != 0 {
			v.add("session.touch_interval", "must be at most half of session.idle_timeout (got %s for %s), or a busy session could expire between touches", s.TouchInterval, s.IdleTimeout)
		} else {
			s.TouchInterval = s.IdleTimeout / 2 // the default, shortened for a short idle limit
		}
	}
	switch s.Store {
	case "memory":
	case "redis":
		v.redis(&s.Redis)
	default:
		v.add("session.store", "%q is not a store; use memory (one replica) or redis (several)", s.Store)
	}
	v.places(s)
}

func (v *validator) redis(r *Redis) {
	r.URL = v.secret("session.redis.url", r.URL, r.URLFile)
	sentinel, cluster := r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0, len(r.Cluster.Addrs) > 0
	switch {
	case sentinel && cluster:
		v.add("session.redis", "give sentinel or cluster, not both")
	case sentinel && (r.Sentinel.Master == "" || len(r.Sentinel.Addrs) == 0):
		v.add("session.redis.sentinel", "needs master (its name in Sentinel) and addrs (the Sentinels)")
	case !sentinel && !cluster && r.URL == "" && r.URLFile == "":
		v.add("session.redis.url", "required for the redis store; e.g. redis://127.0.0.1:6379/0, or url_file")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			v.add("session.redis.url", "not a redis:// or rediss:// URL")
		} else if u.Host == "" && !sentinel && !cluster {
			v.add("session.redis.url", "has no host; e.g. redis://127.0.0.1:6379/0")
		}
	}
	for i, a := range append(append([]string{}, r.Sentinel.Addrs...), r.Cluster.Addrs...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			path := fmt.Sprintf("session.redis.sentinel.addrs[%d]", i)
			if i >= len(r.Sentinel.Addrs) {
				path = fmt.Sprintf("session.redis.cluster.addrs[%d]", i-len(r.Sentinel.Addrs))
			}
			v.add(path, "%q is not host:port", a)
		}
	}
	if r.KeyPrefix == "" {
		v.add("session.redis.key_prefix", "must not be empty; it keeps gatehouse's keys apart")
	}
	if r.Timeout < 10*time.Millisecond || r.Timeout > 10*time.Second {
		v.add("session.redis.timeout", "must be between 10ms and 10s (got %s)", r.Timeout)
	}
	if *r.LocalCache < 0 {
		v.add("session.redis.local_cache", "must not be negative")
	}
	if r.StaleFor < 0 {
		v.add("session.redis.stale_for", "must not be negative")
	}
}

// reservedHeaders may not carry identity: they mean something to HTTP or
// to the reverse proxy itself.
var reservedHeaders = []string{
	"Authorization", "Connection", "Content-Length", "Content-Type", "Cookie", "Host",
	"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Te",
	"Trailer", "Transfer-Encoding", "Upgrade", "X-Forwarded-For", "X-Forwarded-Host",
	"X-Forwarded-Proto", "Forwarded",
}

func (v *validator) headers(h *Headers) {
	seen := map[string]string{}
	for _, f := range []struct{ path, name string }{
		{"headers.user", h.User}, {"headers.email", h.Email},
		{"headers.groups", h.Groups}, {"headers.name", h.Name},
	} {
		v.headerName(f.path, f.name, seen)
	}
	if h.NewDevice != "" {
		v.headerName("headers.new_device", h.NewDevice, seen)
	}
}

// headerName checks one identity header name; seen maps normalised names
// to the path that used them.
func (v *validator) headerName(path, name string, seen map[string]string) {
	if !ValidToken(name) {
		v.add(path, "%q is not a header name; use letters, digits and -", name)
		return
	}
	norm := NormalizeHeader(name)
	for _, r := range reservedHeaders {
		if NormalizeHeader(r) == norm {
			v.add(path, "%q is reserved by HTTP; choose another name such as X-Forwarded-User", name)
			return
		}
	}
	if other, dup := seen[norm]; dup {
		v.add(path, "%q is already used by %s; each identity header needs its own name", name, other)
		return
	}
	seen[norm] = path
}

// NormalizeHeader folds a header name to the form its look-alikes share:
// lower case, with _ as -. Servers such as WSGI and PHP fold _ into - and
// ignore case, so X-Auth_Request_User arrives as X-Auth-Request-User
// (GHSA-vjrc-mh2v-45x6).
func NormalizeHeader(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// allowFix is how to write a policy, for the messages that ask for one.
const allowFix = "list who may pass (emails, email_domains, groups or claims), or write allow: {any_user: true} to let every user the identity provider signs in pass"

// allow checks an allow section that the file gives: it must hold at
// least one rule, or any_user: true alone. An empty policy is refused, not
// read as "anyone" (fail closed).
func (v *validator) allow(path string, a *Allow) {
	if v.null[path] {
		v.add(path, "has no value, and an empty policy would let nobody in; %s", allowFix)
		return
	}
	for _, l := range []struct {
		key   string
		given bool
	}{{"emails", a.Emails != nil && len(a.Emails) == 0}, {"email_domains", a.EmailDomains != nil && len(a.EmailDomains) == 0},
		{"groups", a.Groups != nil && len(a.Groups) == 0}, {"claims", a.Claims != nil && len(a.Claims) == 0}} {
		if l.given {
			v.add(path+"."+l.key, "an empty list allows nobody and is not \"anyone\"; list at least one value, or remove the key")
		}
	}
	rules := len(a.Emails) + len(a.EmailDomains) + len(a.Groups) + len(a.Claims)
	switch {
	case a.AnyUser && rules > 0:
		v.add(path+".any_user", "true together with other rules is ambiguous: any_user lets every signed-in user pass, so the rules would mean nothing; keep any_user: true alone, or remove it and keep the rules")
	case !a.AnyUser && rules == 0 && !v.hasEmptyList(path):
		v.add(path, "has no rule, and an empty policy would let nobody in; %s", allowFix)
	}
	for i, e := range a.Emails {
		p := fmt.Sprintf("%s.emails[%d]", path, i)
		local, domain, ok := strings.Cut(e, "@")
		if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
			v.add(p, "%q is not an email address; write one address with a single @", e)
		}
	}
	for i, d := range a.EmailDomains {
		p := fmt.Sprintf("%s.email_domains[%d]", path, i)
		host := strings.TrimPrefix(d, "*.")
		if strings.Contains(d, "@") || !validHostname(host) {
			v.add(p, "%q is not a domain; write example.com, or *.example.com for its subdomains", d)
		}
	}
	for i, g := range a.Groups {
		if g == "" {
			v.add(fmt.Sprintf("%s.groups[%d]", path, i), "empty group name")
		}
	}
	for _, name := range sortedKeys(a.Claims) {
		p := path + ".claims." + name
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			v.add(p, "%q is not a claim name; write a name, or a dotted path such as realm_access.roles", name)
		}
		if len(a.Claims[name]) == 0 {
			v.add(p, "no values; list the values that allow, e.g. [admin]")
		}
	}
}

// hasEmptyList reports whether the allow section at path gives a list
// key with an empty list, which allow reports on its own.
func (v *validator) hasEmptyList(path string) bool {
	for _, k := range []string{"emails", "email_domains", "groups", "claims"} {
		if v.lines[path+"."+k] != 0 && !v.null[path+"."+k] {
			return true
		}
	}
	return false
}

// requirePolicies refuses a configuration where a request that needs a
// policy would find none: the top-level allow is required when the
// top-level upstream catches requests, when there are no routes (every
// forward-auth call is judged by it), or when a route that is not wholly
// public has no allow of its own. Only when every route is wholly public
// or has its own allow may the top-level allow be left out; forward-auth
// calls for a request no route matches then let nobody pass (403).
func (v *validator) requirePolicies(c *Config) {
	if v.lines["allow"] != 0 {
		return // given: allow checked it
	}
	fix := "add a top-level allow: " + allowFix
	if c.UpstreamURL != nil {
		v.add("allow", "required: upstream (line %d) sends every request that no route matches through the top-level policy, and there is none; %s", v.lines["upstream"], fix)
		return
	}
	if len(c.Routes) == 0 {
		v.add("allow", "required: every forward-auth call is judged by the top-level policy, and there is none; %s", fix)
		return
	}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if v.lines[p+".allow"] == 0 && !r.WholePublic() {
			v.add(p, "route %s has no allow and there is no top-level allow, so nobody could pass it; give the route an allow, or %s", r.Name, fix)
		}
	}
}

// WholePublic reports whether a route serves every path it matches
// without login: one of its public prefixes is its own path_prefix. Route
// matching ignores case and public prefixes do not, so that holds only
// when the prefix is / or has no letters: path_prefix /docs with public
// [/docs] still sends /DOCS/x through the route's policy.
func (r *Route) WholePublic() bool {
	for _, p := range r.Public {
		if p == r.Match.PathPrefix && strings.ToLower(p) == strings.ToUpper(p) {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (v *validator) trustedProxies(c *Config) {
	for i, s := range c.TrustedProxies {
		p := fmt.Sprintf("trusted_proxies[%d]", i)
		prefix, err := netip.ParsePrefix(s)
		if err != nil {
			addr, err2 := netip.ParseAddr(s)
			if err2 != nil {
				v.add(p, "%q is not an IP address or CIDR; write e.g. 10.0.0.0/8 or 192.0.2.7", s)
				continue
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		prefix = prefix.Masked()
		if prefix.Bits() == 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("trusted_proxies has %s: every client may then state the original request of a forward-auth call", s))
		}
		c.TrustedNets = append(c.TrustedNets, prefix)
	}
}

func (v *validator) redirectHosts(c *Config) {
	for i, h := range c.RedirectAllowHosts {
		p := fmt.Sprintf("redirect_allow_hosts[%d]", i)
		host := strings.TrimPrefix(h, ".")
		if name, port, err := net.SplitHostPort(host); err == nil {
			if !validPort(port) {
				v.add(p, "%q has a bad port", h)
				continue
			}
			host = name
		}
		if !validHostname(host) {
			v.add(p, "%q is not a host; write app.example.com, app.example.com:8443, or .example.com for every subdomain", h)
		}
	}
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// routes checks every route and appends the top-level upstream as the
// catch-all route, so that Routes is the complete routing table.
func (v *validator) routes(c *Config) {
	seen := map[string]string{}
	for i := range c.Routes {
		v.route(c, i, seen)
	}
	if c.UpstreamURL == nil {
		return
	}
	if other, dup := seen["\x00/"]; dup {
		v.add("upstream", "%s already catches every request (no host, path_prefix /); drop upstream or that route", other)
		return
	}
	allow := c.Allow
	c.Routes = append(c.Routes, Route{
		Name: "default", Match: RouteMatch{PathPrefix: "/"}, Upstream: c.Upstream,
		Allow: &allow, UpstreamURL: c.UpstreamURL,
	})
}

func (v *validator) route(c *Config, i int, seen map[string]string) {
	r := &c.Routes[i]
	p := fmt.Sprintf("routes[%d]", i)
	host := strings.ToLower(r.Match.Host)
	if host != "" && !validHostname(strings.TrimPrefix(host, "*.")) {
		v.add(p+".match.host", "%q is not a host; write wiki.example.com or *.example.com, without a port", r.Match.Host)
	}
	r.Match.Host = host
	prefixOK := true
	if r.Match.PathPrefix == "" {
		r.Match.PathPrefix = "/"
	} else if clean, ok := v.pathPrefix(p+".match.path_prefix", r.Match.PathPrefix); ok {
		r.Match.PathPrefix = clean
	} else {
		prefixOK = false
	}
	if r.Name == "" {
		r.Name = host + r.Match.PathPrefix
	}
	key := host + "\x00" + FoldPath(r.Match.PathPrefix)
	if other, dup := seen[key]; dup {
		v.add(p+".match", "same host and path_prefix as %s; merge them", other)
	} else {
		seen[key] = p
	}
	if r.Upstream != "" {
		r.UpstreamURL = v.upstreamURL(p+".upstream", r.Upstream)
	}
	if _, given := v.lines[p+".max_auth_age"]; given || r.MaxAuthAge != 0 {
		// Zero is refused like every duration: leave the key out for no limit.
		v.atLeast(p+".max_auth_age", r.MaxAuthAge, time.Second)
		if r.MaxAuthAge > 400*24*time.Hour {
			v.add(p+".max_auth_age", "at most 400 days (got %s); leave it out for no limit", r.MaxAuthAge)
		}
	}
	v.acrValues(p+".acr_values", r.ACRValues)
	for j, pub := range r.Public {
		pp := fmt.Sprintf("%s.public[%d]", p, j)
		if clean, ok := v.pathPrefix(pp, pub); ok {
			if prefixOK && !underPrefix(clean, r.Match.PathPrefix) {
				v.add(pp, "%s is outside the route's path_prefix %s, so it can never match", clean, r.Match.PathPrefix)
			}
			r.Public[j] = clean
		}
	}
	if r.Allow == nil && !v.null[p+".allow"] {
		allow := c.Allow
		r.Allow = &allow
	} else {
		if r.Allow == nil {
			r.Allow = &Allow{}
		}
		v.allow(p+".allow", r.Allow)
	}
	for _, name := range sortedKeys(r.ExtraHeaders) {
		hp := p + ".extra_headers." + name
		norm := NormalizeHeader(name)
		switch {
		case !ValidToken(name):
			v.add(hp, "%q is not a header name", name)
		case slices.ContainsFunc(reservedHeaders, func(h string) bool { return NormalizeHeader(h) == norm }),
			strings.HasPrefix(norm, "x-forwarded-"), strings.HasPrefix(norm, "x-gatehouse-"),
			slices.Contains([]string{NormalizeHeader(c.Headers.User), NormalizeHeader(c.Headers.Email), NormalizeHeader(c.Headers.Groups), NormalizeHeader(c.Headers.Name)}, norm),
			c.Headers.NewDevice != "" && NormalizeHeader(c.Headers.NewDevice) == norm:
			v.add(hp, "%q is set by gatehouse or by HTTP itself; choose another name", name)
		case strings.ContainsFunc(r.ExtraHeaders[name], func(r rune) bool { return r < ' ' || r == 0x7f }):
			v.add(hp, "the value holds a control character")
		}
	}
}

// pathPrefix checks a configured path prefix and returns it cleaned: a
// leading slash, no trailing slash (but "/").
func (v *validator) pathPrefix(path, p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		v.add(path, "%q must start with /", p)
		return "", false
	}
	if strings.ContainsAny(p, "?#%\\") || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.add(path, "%q: write the plain path, without ?, #, %%-escapes, backslashes or spaces", p)
		return "", false
	}
	trimmed := p
	if len(trimmed) > 1 {
		trimmed = strings.TrimSuffix(trimmed, "/")
	}
	if pathpkg.Clean(trimmed) != trimmed {
		v.add(path, "%q has dot segments or repeated slashes; write %s", p, pathpkg.Clean(trimmed))
		return "", false
	}
	// Servers that read such a prefix otherwise (Tomcat cuts ";x", IIS
	// drops a trailing dot or an NTFS stream ":x") would never agree with gatehouse on it, so
	// every request under it would be refused as ambiguous.
	if strings.Contains(p, ";") {
		v.add(path, "%q: a ';' starts a path parameter, which Tomcat, Jetty and Spring cut off; write the path without it", p)
		return "", false
	}
	for seg := range strings.SplitSeq(trimmed, "/") {
		if strings.HasSuffix(seg, ".") || strings.Contains(seg, ":") {
			v.add(path, "%q: the segment %q ends in a dot or holds a ':', which IIS and NTFS drop; write the path without it", p, seg)
			return "", false
		}
	}
	return trimmed, true
}

// underPrefix reports whether p lies under prefix on a segment boundary,
// ignoring case as route matching does.
func underPrefix(p, prefix string) bool {
	p, prefix = FoldPath(p), FoldPath(prefix)
	return prefix == "/" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// FoldPath lower-cases the ASCII letters of a path or path prefix, and
// nothing else: route matching compares prefixes this way, so that
// "/ADMIN" is held to the policy of "/admin", and the proxy's router and
// this validation must fold alike.
func FoldPath(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ClaimNames returns the claims any route's policy looks at, which a
// session must keep from the ID token.
func (c *Config) ClaimNames() []string {
	set := map[string]bool{}
	for name := range c.Allow.Claims { // the forward-auth fallback's policy
		set[name] = true
	}
	for _, r := range c.Routes {
		if r.Allow != nil {
			for name := range r.Allow.Claims {
				set[name] = true
			}
		}
	}
	return sortedKeys(set)
}

func (v *validator) server(s *Server) {
	v.positive("server.read_header_timeout", s.ReadHeaderTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.positive("server.shutdown_timeout", s.ShutdownTimeout)
	if s.ReadBodyTimeout < 0 {
		v.add("server.read_body_timeout", "must be 0 (no limit) or positive (got %s)", s.ReadBodyTimeout)
	}
	if s.MinBodyRate < 0 {
		v.add("server.min_body_rate", "must be 0 (a fixed limit) or a positive number of bytes per second (got %d)", s.MinBodyRate)
	}
	if s.MaxHeaderBytes < 4096 || s.MaxHeaderBytes > http.DefaultMaxHeaderBytes {
		v.add("server.max_header_bytes", "must be between 4096 and %d (got %d)", http.DefaultMaxHeaderBytes, s.MaxHeaderBytes)
	}
}

// ValidToken reports whether s is a non-empty RFC 9110 token, as header
// names are.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (v *validator) deviceBinding(c *Config) {
	s := &c.Session
	switch s.DeviceBinding {
	case "off", "prefer":
	case "require":
		if !c.Secure() || c.Cookie.Domain != "" {
			v.add("session.device_binding", "require needs an https external_url and no cookie.domain (the bound cookie is __Host-, and browsers bind only over https); use prefer or off")
		}
	default:
		v.add("session.device_binding", "%q is not a mode; use off, prefer or require", s.DeviceBinding)
	}
	if s.DeviceBindingCookieTTL < time.Minute || s.DeviceBindingCookieTTL > time.Hour {
		v.add("session.device_binding_cookie_ttl", "must be between 1m and 1h (got %s)", s.DeviceBindingCookieTTL)
	}
	if s.DeviceBindingGrace < time.Second || s.DeviceBindingGrace > 10*time.Minute {
		v.add("session.device_binding_grace", "must be between 1s and 10m (got %s)", s.DeviceBindingGrace)
	}
	switch s.DeviceBindingViolation {
	case "deny", "end_session":
	default:
		v.add("session.device_binding_violation", "%q is not an action; use deny or end_session", s.DeviceBindingViolation)
	}
}
