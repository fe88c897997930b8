package proxy

import (
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/httpfield"
	"github.com/gatehouse/gatehouse/sessions"
)

// knownIdentityHeaders are stripped from every client request whatever
// the configuration: the defaults, the names other proxies use (an app
// moved from oauth2-proxy may still read them), and gatehouse's own
// X-Gatehouse- prefix.
var knownIdentityHeaders = []string{
	config.DefaultUserHeader, config.DefaultEmailHeader, config.DefaultGroupsHeader, config.DefaultNameHeader,
	"X-Forwarded-Access-Token", "X-Forwarded-Id-Token",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
	"X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token", "X-Auth-Request-Redirect",
	// Client-address and URL-override headers: apps behind a proxy trust
	// them (IIS and Symfony route by X-Original-URL), and only gatehouse
	// may state them.
	"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "X-Original-Url", "X-Original-Uri",
	"X-Rewrite-Url", "X-Original-Method", "X-Original-Host",
}

// Header prefixes no client may send: gatehouse's own, and every
// X-Forwarded-* (the reverse proxy drops only For, Host and Proto; a
// client's X-Forwarded-Port or -Prefix would otherwise pass, cf. Traefik
// GHSA-3q9r-p662-5j8m). gatehouse sets For, Host and Proto itself.
const (
	ownHeaderPrefix       = "x-gatehouse-"
	forwardedHeaderPrefix = "x-forwarded-"
)

// stripper removes identity headers sent by clients (design invariant 6).
// It matches names after folding case and '_' to '-', because servers
// such as WSGI and PHP fold X-Forwarded_User into X-Forwarded-User
// (GHSA-vjrc-mh2v-45x6). It is immutable and safe for concurrent use.
type stripper struct {
	names map[string]struct{} // normalised
}

func newStripper(extra ...string) *stripper {
	s := &stripper{names: map[string]struct{}{}}
	for _, n := range append(append([]string{}, knownIdentityHeaders...), extra...) {
		s.names[config.NormalizeHeader(n)] = struct{}{}
	}
	return s
}

// add protects one more header name. Only at construction.
func (s *stripper) add(name string) { s.names[config.NormalizeHeader(name)] = struct{}{} }

// protected reports whether a header name is, or looks like, an identity
// header. It does not allocate for names up to 128 bytes.
func (s *stripper) protected(name string) bool {
	var buf [128]byte
	if len(name) > len(buf) {
		n := config.NormalizeHeader(name)
		_, ok := s.names[n]
		return ok || strings.HasPrefix(n, ownHeaderPrefix) || strings.HasPrefix(n, forwardedHeaderPrefix)
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		b[i] = c
	}
	if _, ok := s.names[string(b)]; ok {
		return true
	}
	return hasPrefix(b, ownHeaderPrefix) || hasPrefix(b, forwardedHeaderPrefix)
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

// strip deletes every protected header and declared trailer of r. From a
// trusted proxy, X-Forwarded-For is kept: gatehouse extends that chain.
func (s *stripper) strip(r *http.Request, trustedPeer bool) {
	for k := range r.Header {
		if s.protected(k) && !(trustedPeer && k == "X-Forwarded-For") {
			delete(r.Header, k)
		}
	}
	for k := range r.Trailer {
		if s.protected(k) {
			delete(r.Trailer, k)
		}
	}
}

// identityHeaders sets the upstream's identity headers from a session.
// Names are canonical, set once at start. The values come from the
// session's cache (identityOf), shared by every route.
type identityHeaders struct {
	user, email, groups, name    string
	passAccessToken, passIDToken bool
}

// Token headers, set only for routes that ask for them.
const (
	accessTokenHeader = "X-Forwarded-Access-Token"
	idTokenHeader     = "X-Forwarded-Id-Token"
)

func newIdentityHeaders(h config.Headers, passAccessToken, passIDToken bool) *identityHeaders {
	return &identityHeaders{
		user:            http.CanonicalHeaderKey(h.User),
		email:           http.CanonicalHeaderKey(h.Email),
		groups:          http.CanonicalHeaderKey(h.Groups),
		name:            http.CanonicalHeaderKey(h.Name),
		passAccessToken: passAccessToken,
		passIDToken:     passIDToken,
	}
}

// identityValues are a session's header values, built once per session
// and cached in its sessions.CacheIdentity slot. They depend on the
// session alone, not on the configuration (header names and which tokens
// a route passes are applied in set), so one value serves every route and
// every configuration generation: a reload adds nothing to a session. The
// slices are shared between requests: nothing may append to them (their
// capacity equals their length, so an append would copy) or change their
// elements.
type identityValues struct {
	user, email, groups, name, accessToken, idToken []string
}

func identityOf(s *sessions.Session) *identityValues {
	if v, ok := s.Cached(sessions.CacheIdentity).(*identityValues); ok {
		return v
	}
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	name := s.PreferredUsername
	if name == "" {
		name = s.Name
	}
	v := &identityValues{user: one(s.User), email: one(s.Email), groups: one(strings.Join(s.Groups, ",")), name: one(name),
		accessToken: one(s.AccessToken), idToken: one(s.IDToken)}
	s.SetCached(sessions.CacheIdentity, v)
	return v
}

// set writes the identity of s into h. Values were cleaned of control
// characters when the session was made.
func (ih *identityHeaders) set(h http.Header, s *sessions.Session) {
	v := identityOf(s)
	access, id := v.accessToken, v.idToken
	if !ih.passAccessToken {
		access = nil
	}
	if !ih.passIDToken {
		id = nil
	}
	for _, kv := range [...]struct {
		k string
		v []string
	}{{ih.user, v.user}, {ih.email, v.email}, {ih.groups, v.groups}, {ih.name, v.name},
		{accessTokenHeader, access}, {idTokenHeader, id}} {
		if kv.v != nil {
			h[kv.k] = kv.v
		}
	}
}

// protectConnection removes from the Connection header every token that
// names a header gatehouse sets: the reverse proxy deletes the headers a
// request lists there as hop-by-hop, and "Connection: X-Forwarded-User"
// must not delete the identity gatehouse vouches for (golang/go#50580).
func (s *stripper) protectConnection(h http.Header) {
	lines := h["Connection"]
	for i, line := range lines {
		if !strings.ContainsFunc(line, func(r rune) bool { return r == '-' || r == '_' }) {
			continue // "close", "keep-alive", "Upgrade": nothing to protect
		}
		var kept []string
		for tok, i, ok := httpfield.NextListItem(line, 0, httpfield.UnicodeSpace); ok; tok, i, ok = httpfield.NextListItem(line, i, httpfield.UnicodeSpace) {
			if tok != "" && !s.protected(tok) {
				kept = append(kept, tok)
			}
		}
		lines[i] = strings.Join(kept, ", ")
	}
}

// stripCookies removes the cookies for which own returns true from the
// Cookie header, so the upstream never sees (and cannot replay)
// gatehouse's session cookie.
func stripCookies(h http.Header, own func(string) bool) {
	lines := h["Cookie"]
	n := 0 // lines kept, compacted in place
	for _, line := range lines {
		if kept := withoutOwnCookies(line, own); kept != "" {
			lines[n] = kept
			n++
		}
	}
	switch {
	case n == len(lines):
		// nothing removed, or every line rewritten in place
	case n == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = lines[:n]
	}
}

// withoutOwnCookies returns a Cookie line without gatehouse's cookies. When
// they are at the start or the end of the line (the browser's usual
// order puts the oldest cookie first) the result is a substring of the
// line and costs no allocation. The line is read by httpfield.NextCookie,
// as auth reads it when it looks the session up.
func withoutOwnCookies(line string, own func(string) bool) string {
	// Find the span of pairs to keep; fall back to building a new line
	// only when an own cookie sits between kept ones.
	first, end := -1, 0 // the kept span: from the first kept pair to the end of the last
	gap := false        // an own cookie between two kept ones
	seenOwnAfterKept := false
	for p, i, ok := httpfield.NextCookie(line, 0); ok; p, i, ok = httpfield.NextCookie(line, i) {
		if own(p.Name) {
			if first >= 0 {
				seenOwnAfterKept = true
			}
			continue
		}
		if seenOwnAfterKept {
			gap = true
		}
		if first < 0 {
			first = p.Start
		}
		end = p.End
	}
	switch {
	case first < 0:
		return ""
	case !gap:
		return line[first:end]
	}
	var b strings.Builder
	for p, i, ok := httpfield.NextCookie(line, 0); ok; p, i, ok = httpfield.NextCookie(line, i) {
		if own(p.Name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Trimmed(line))
	}
	return b.String()
}
