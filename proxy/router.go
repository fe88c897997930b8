package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/metrics"
)

// route is one app behind gatehouse: where its requests go and who may
// reach it. Immutable once built.
type route struct {
	name     string
	host     string // "" (any host), "wiki.example.com", or "*.example.com"
	prefix   string // normalised path prefix, "/" for everything
	public   []string
	policy   *auth.Policy
	proxy    *upstream           // nil: no upstream (forward-auth only)
	identity *identityHeaders    // identity header names and per-route options
	static   http.Header         // extra static headers for the upstream
	metrics  *metrics.Route      // nil when metrics are off
	proto    []string            // X-Forwarded-Proto value
	slot     *auth.AssertionSlot // the route's assertion audience; nil: none or not known
	audience string              // configured assertion audience, "" for the upstream origin
	// maxAuthAge, when set, is how long ago the user may have last signed
	// in at the identity provider (routes[].max_auth_age, step-up).
	maxAuthAge time.Duration
	// acrValues, when set, are the authentication context classes one of
	// which the user's sign-in must have (routes[].acr_values, step-up).
	acrValues []string
}

// stepUp is what the route asks of a session's sign-in.
func (rt *route) stepUp() auth.StepUpNeed {
	return auth.StepUpNeed{MaxAge: rt.maxAuthAge, ACRValues: rt.acrValues}
}

// isPublic reports whether p (cleaned) lies under one of the route's
// public prefixes. The comparison is case-sensitive and on segment
// boundaries, so "/PUBLIC/x" and "/publicity" are not public: when in
// doubt, gatehouse asks for a session.
func (rt *route) isPublic(p string) bool {
	for _, pre := range rt.public {
		if hasPathPrefix(p, pre) {
			return true
		}
	}
	return false
}

// router finds the route of a request: the most specific host first
// (exact, then the longest wildcard, then routes for any host), and within
// it the longest path prefix, compared case-insensitively so that "/ADMIN"
// is held to the policy of "/admin". Lookups cost one map probe per host
// label and per path segment, whatever the number of routes.
type router struct {
	exact    map[string]*hostRoutes // "wiki.example.com"
	wildcard map[string]*hostRoutes // ".example.com" for "*.example.com"
	any      *hostRoutes
}

// hostRoutes are the routes of one host pattern, by lower-case prefix.
type hostRoutes struct {
	byPrefix map[string]*route
	maxDepth int // most segments in any prefix
}

func newRouter(routes []*route) *router {
	r := &router{exact: map[string]*hostRoutes{}, wildcard: map[string]*hostRoutes{}, any: newHostRoutes()}
	for _, rt := range routes {
		hr := r.any
		switch {
		case strings.HasPrefix(rt.host, "*."):
			hr = bucket(r.wildcard, strings.ToLower(rt.host[1:]))
		case rt.host != "":
			hr = bucket(r.exact, strings.ToLower(rt.host))
		}
		p := config.FoldPath(rt.prefix)
		if _, dup := hr.byPrefix[p]; !dup { // config validation refuses duplicates
			hr.byPrefix[p] = rt
		}
		hr.maxDepth = max(hr.maxDepth, strings.Count(p, "/"))
	}
	return r
}

func newHostRoutes() *hostRoutes { return &hostRoutes{byPrefix: map[string]*route{}} }

func bucket(m map[string]*hostRoutes, key string) *hostRoutes {
	hr := m[key]
	if hr == nil {
		hr = newHostRoutes()
		m[key] = hr
	}
	return hr
}

// match returns the route for host (as sent, maybe with a port) and the
// cleaned path, or nil.
func (r *router) match(host, p string) *route {
	host = normalizeHost(host)
	if hr := r.exact[host]; hr != nil {
		if rt := hr.match(p); rt != nil {
			return rt
		}
	}
	// Wildcards from the longest suffix: for a.b.example.com try
	// .b.example.com, then .example.com, then .com.
	for i := strings.IndexByte(host, '.'); i >= 0; {
		if hr := r.wildcard[host[i:]]; hr != nil {
			if rt := hr.match(p); rt != nil {
				return rt
			}
		}
		j := strings.IndexByte(host[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return r.any.match(p)
}

// match walks p's prefixes, on segment boundaries, from the longest that
// any route has down to "/". Lower-casing happens in a stack buffer, and a
// map lookup by string(bytes) does not allocate.
func (hr *hostRoutes) match(p string) *route {
	if len(hr.byPrefix) == 0 {
		return nil
	}
	var buf [512]byte
	var b []byte
	if len(p) <= len(buf) {
		b = buf[:len(p)]
	} else {
		b = make([]byte, len(p)) // a very long path: correct, if not free
	}
	depth := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == '/' && i > 0 {
			depth++
			if depth > hr.maxDepth {
				b = b[:i]
				break
			}
		}
		b[i] = c
	}
	for {
		if len(b) <= 1 {
			return hr.byPrefix["/"]
		}
		if rt, ok := hr.byPrefix[string(b)]; ok {
			return rt
		}
		i := len(b) - 1
		for i > 0 && b[i] != '/' {
			i--
		}
		b = b[:i]
	}
}

// normalizeHost lower-cases a Host header and drops its port and any
// trailing dot. It allocates only for hosts that are not lower case.
func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
