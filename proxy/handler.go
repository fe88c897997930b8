// Package proxy is gatehouse's request path: it strips client identity
// headers, serves gatehouse's own endpoints, routes the request, finds the
// session, applies the route's policy, sets the identity headers and
// reverse-proxies to the route's upstream, answering failures with clear
// pages. It also answers forward-auth calls from a proxy in front.
package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/internal/direct"
	"github.com/gatehouse/gatehouse/sessions"
)

// Handler is gatehouse's http.Handler. It serves with the configuration
// it was last given: Reload swaps in a new one atomically, while requests
// in flight finish with the old. Safe for concurrent use.
type Handler struct {
	cur atomic.Pointer[gate]
}

// ServeHTTP serves r with the current configuration.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.cur.Load().ServeHTTP(w, r) }

// Auth returns the current authenticator.
func (h *Handler) Auth() *auth.Authenticator { return h.cur.Load().auth }

// Asserter returns the identity assertion signer, nil when assertions are
// off.
func (h *Handler) Asserter() *auth.Asserter { return h.cur.Load().asserter }

// gate is gatehouse's request path for one configuration. Immutable once
// built.
type gate struct {
	auth     *auth.Authenticator
	pages    *web.Pages     // gatehouse's own pages, under ui.title
	internal *http.ServeMux // /_gatehouse/...
	strip    *stripper
	router   *router
	fallback *route // policy for forward-auth calls no route matches
	trusted  []netip.Prefix
	faMode   string // forward_auth.mode
	buffers  *bufferPool
	log      *slog.Logger
	metrics  *metrics.Metrics
	own      *metrics.Route // outcomes of requests no route serves
	values   *valueCache    // X-Forwarded-For and -Host values
	// pools are the direct path's upstream connections; nil: every
	// request goes through the configured http.RoundTripper.
	pools           *direct.Pools
	upstreamTimeout time.Duration
	body            bodyLimit // how slowly a request body may arrive

	asserter     *auth.Asserter // nil when assertions are off
	assertHeader string
	// faSlots are the assertion slots of forward-auth answers for routes
	// without one of their own. Key: the audience (the route's
	// assertion audience, or the original request's origin). Lifetime:
	// this configuration's. Bounded: faSlotCount counts the entries, at
	// most maxFASlots.
	newDevice   string       // headers.new_device, canonical; "" when off
	faSlots     sync.Map     // audience → *auth.AssertionSlot
	faSlotCount atomic.Int32 // entries in faSlots
}

// ServeHTTP runs one request down the path the design describes: give it
// a request ID, answer forward-auth calls (they read forwarding headers),
// strip client identity headers, clean the path, serve /_gatehouse/,
// route, then the three named steps: identify (302 or 401 without a
// session), decide (403, or a step-up login), forward.
func (h *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	trusted := h.isTrusted(r.RemoteAddr)
	h.requestID(w, r, trusted)
	if isForwardAuth(r.URL.Path) {
		h.forwardAuth(w, r)
		return
	}
	h.strip.strip(r, trusted)
	clean, rewrite, err := cleanRequestPath(r.URL)
	if err != nil {
		h.own.Count(metrics.BadRequest)
		h.badPath(w, r, err)
		return
	}
	if rewrite {
		// The upstream gets the path the decision is made on.
		r.URL.Path, r.URL.RawPath = clean, ""
	}
	if strings.HasPrefix(clean, auth.Prefix) || clean == strings.TrimSuffix(auth.Prefix, "/") {
		h.internal.ServeHTTP(w, r)
		return
	}
	// Judged on every reading of what the upstream is sent (r.URL, as
	// the direct path and the reverse proxy both write it).
	rt, public, err := h.judgePath(r.Host, clean, r.URL, nil)
	if err != nil {
		h.own.Count(metrics.BadRequest)
		h.pages.Fail(w, r, h.log, ambiguousPath(err))
		return
	}
	if rt == nil || rt.proxy == nil {
		h.own.Count(metrics.NotFound)
		h.notFound(w, r, rt)
		return
	}
	if public {
		h.forward(w, r, rt, nil)
		return
	}
	s := h.identify(w, r, rt, h.challenge)
	if s == nil {
		return
	}
	switch h.decide(rt, s) {
	case deny:
		h.denied(w, r, rt, s, clean)
		return
	case stepUp:
		h.stepUpNeeded(r, rt, s)
		h.auth.StepUpFor(w, r, rt.stepUp())
		return
	}
	h.auth.OfferBinding(w, r, s)
	h.metrics.Overhead(time.Since(start))
	h.forward(w, r, rt, s)
}

// denied answers a signed-in user whom the route's policy refuses: the
// log line names the route, the rules the user failed and what the user
// had; the 403 page (or JSON) shows the user their identity as seen.
// via names the endpoint when it is not the proxy itself.
func (h *gate) denied(w http.ResponseWriter, r *http.Request, rt *route, s *sessions.Session, path string, via ...any) {
	rt.metrics.Count(metrics.Forbidden)
	attrs := append([]any{"event", "denied", "request_id", web.RequestID(r), "route", rt.name, "sub", s.Subject, "user", s.User, "path", path},
		rt.policy.DenialAttrs(s)...)
	h.log.Info("access denied", append(attrs, via...)...)
	h.auth.Forbidden(w, r, s)
}

// stepUpNeeded counts and logs a request whose route wants a more recent
// sign-in than its session has (routes[].max_auth_age), or another kind
// (routes[].acr_values).
func (h *gate) stepUpNeeded(r *http.Request, rt *route, s *sessions.Session, via ...any) {
	if auth.IsNavigation(r) {
		rt.metrics.Count(metrics.LoginRedirect)
	} else {
		rt.metrics.Count(metrics.Unauthenticated)
	}
	authTime := "unknown"
	if !s.AuthTime.IsZero() {
		authTime = s.AuthTime.UTC().Format(time.RFC3339)
	}
	h.log.Info("recent sign-in required", append([]any{"event", "step_up", "request_id", web.RequestID(r), "route", rt.name,
		"sub", s.Subject, "auth_time", authTime, "max_auth_age", rt.maxAuthAge.String(), "acr", s.ACR, "acr_values", strings.Join(rt.acrValues, " ")}, via...)...)
}

// RequestIDHeader carries the request ID to the upstream and back to the
// client.
const RequestIDHeader = web.RequestIDHeader

// requestID gives the request an ID: a trusted proxy's X-Request-Id when it
// sent a sane one, else a fresh one. The upstream receives it, the
// response carries it, and every log line and error page names it.
func (h *gate) requestID(w http.ResponseWriter, r *http.Request, trusted bool) {
	v := r.Header[RequestIDHeader]
	if !trusted || len(v) != 1 || !web.ValidRequestID(v[0]) {
		v = web.NewRequestIDValue()
		r.Header[RequestIDHeader] = v
	}
	w.Header()[RequestIDHeader] = v
}

// identify is the request path's identify step, shared by proxied
// requests and forward-auth answers: it asks auth who is calling
// (auth.Identify) and returns the session, or answers the request and
// returns nil. Each kind of error is named: a store that could not answer
// gets a 503, a refused bearer token the RFC 6750 401, a request without
// a session challenge (the caller's way of asking for a login), and an
// error of no known kind a 500, never a login.
func (h *gate) identify(w http.ResponseWriter, r *http.Request, rt *route, challenge func(http.ResponseWriter, *http.Request, *route, error)) *sessions.Session {
	s, err := h.auth.Identify(r)
	if err != nil {
		h.noIdentity(w, r, rt, err, challenge)
		return nil
	}
	return s
}

// noIdentity answers a request identify found no session for, by the
// kind of err. (Apart from identify so that the errors.As target is
// allocated only when there is an error.)
func (h *gate) noIdentity(w http.ResponseWriter, r *http.Request, rt *route, err error, challenge func(http.ResponseWriter, *http.Request, *route, error)) {
	var be *auth.BearerError
	var de *auth.BindingError
	switch {
	case errors.As(err, &de):
		rt.metrics.Count(metrics.Forbidden)
		h.auth.AnswerBinding(w, r, de)
	case errors.Is(err, sessions.ErrUnavailable):
		rt.metrics.Count(metrics.StoreDown)
		h.storeUnavailable(w, r, h.log, err)
	case errors.Is(err, auth.ErrNoSession):
		challenge(w, r, rt, err)
	case errors.As(err, &be):
		rt.metrics.Count(metrics.Unauthenticated)
		h.log.Info("bearer token refused", "event", "login_failure", "reason", "invalid_bearer", "request_id", web.RequestID(r), "detail", be.Description, "err", be.Err)
		auth.BearerChallenge(w, err)
	default:
		rt.metrics.Count(metrics.InternalError)
		h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusInternalServerError, Code: "session_check_failed",
			Title:  "Something went wrong",
			Detail: "gatehouse could not check your session. Try again; if it keeps happening, tell your administrator the request ID below.", Err: err})
	}
}

// challenge answers a proxied request without a session: a form POST is
// held until sign-in (session.preserve_posts) when it can be, else the
// login challenge (302 for a browser navigation, 401 otherwise).
func (h *gate) challenge(w http.ResponseWriter, r *http.Request, rt *route, err error) {
	if h.auth.HoldForm(w, r, err) {
		rt.metrics.Count(metrics.LoginRedirect)
		return
	}
	if auth.IsNavigation(r) {
		rt.metrics.Count(metrics.LoginRedirect)
	} else {
		rt.metrics.Count(metrics.Unauthenticated)
	}
	h.auth.Challenge(w, r)
}

// verdict is the decide step's answer.
type verdict int

const (
	allow  verdict = iota
	deny           // the route's policy refuses the user: 403
	stepUp         // the route wants a more recent sign-in (max_auth_age)
)

// decide is the request path's decide step: may session s reach route
// rt? Its policy first, then how recently s signed in when the route asks
// (routes[].max_auth_age).
func (h *gate) decide(rt *route, s *sessions.Session) verdict {
	if !rt.policy.Allows(s) {
		return deny
	}
	if need := rt.stepUp(); need.Asks() && !h.auth.Satisfied(s, need) {
		return stepUp
	}
	return allow
}

// replayHeld forwards a form held until sign-in (session.preserve_posts)
// with the new session s, judged like any request: the path is cleaned
// and routed, and the route's policy must allow s.
func (h *gate) replayHeld(w http.ResponseWriter, r *http.Request, s *sessions.Session) {
	clean, rewrite, err := cleanRequestPath(r.URL)
	if err != nil {
		h.badPath(w, r, err)
		return
	}
	if rewrite {
		r.URL.Path, r.URL.RawPath = clean, ""
	}
	if strings.HasPrefix(clean, auth.Prefix) {
		h.notFound(w, r, nil)
		return
	}
	rt, public, err := h.judgePath(r.Host, clean, r.URL, nil)
	switch {
	case err != nil:
		h.pages.Fail(w, r, h.log, ambiguousPath(err))
		return
	case rt == nil || rt.proxy == nil:
		h.notFound(w, r, rt)
		return
	case !public && !rt.policy.Allows(s):
		h.denied(w, r, rt, s, clean)
		return
	}
	h.forward(w, r, rt, s)
}

// forward proxies r to the route's upstream with the identity of s (nil on
// a public path). The headers are set on the incoming request, whose
// client-sent identity headers are already gone; the Connection header is
// cleaned first so it cannot name them as hop-by-hop, and gatehouse's own
// cookies are taken out so the upstream never sees (and cannot replay)
// them.
func (h *gate) forward(w http.ResponseWriter, r *http.Request, rt *route, s *sessions.Session) {
	h.strip.protectConnection(r.Header)
	stripCookies(r.Header, h.auth.IsOwnCookie)
	h.forwarded(r, rt)
	for k, v := range rt.static {
		r.Header[k] = v
	}
	if s != nil {
		rt.identity.set(r.Header, s)
		h.tellNewDevice(r, s)
		if !h.assert(r.Header, s, rt.slot) {
			h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusInternalServerError, Code: "assertion_failed",
				Title: "Something went wrong", Detail: "gatehouse could not sign the identity assertion. Try again."})
			return
		}
	}
	rt.proxy.ServeHTTP(w, h.body.limitBody(w, r))
}

// forwarded states what gatehouse saw of the client, as X-Forwarded-For,
// -Host and -Proto. The values go on the incoming request: the reverse
// proxy drops these names from its copy before Rewrite, which puts the
// same slices back. The copy is thus made with room for them, and the
// values, cached per connection address and per host, cost no allocation
// on a kept-alive connection.
func (h *gate) forwarded(r *http.Request, rt *route) {
	hdr := r.Header
	if prior := hdr["X-Forwarded-For"]; len(prior) > 0 { // only kept from a trusted proxy
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			hdr["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		}
	} else if v := h.values.peer(r.RemoteAddr); v != nil {
		hdr["X-Forwarded-For"] = v
	}
	hdr["X-Forwarded-Host"] = h.values.host(r.Host)
	hdr["X-Forwarded-Proto"] = rt.proto
}

// assert sets the signed identity assertion for slot's audience, when
// assertions are on. It reports false only when signing failed.
func (h *gate) assert(hdr http.Header, s *sessions.Session, slot *auth.AssertionSlot) bool {
	if h.asserter == nil || slot == nil {
		return true
	}
	v, err := h.asserter.Value(s, slot)
	if err != nil {
		h.log.Error("identity assertion", "err", err)
		return false
	}
	hdr[h.assertHeader] = v
	return true
}

// isTrusted reports whether the peer is one of trusted_proxies.
func (h *gate) isTrusted(remoteAddr string) bool {
	if len(h.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range h.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// storeUnavailable answers a request whose session the store could not
// look up: 503, never the login (the session may well be live).
func (h *gate) storeUnavailable(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	w.Header().Set("Retry-After", "2")
	h.pages.Fail(w, r, log, &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable",
		Title:  "Session store unavailable",
		Detail: "gatehouse cannot check your session right now. Try again in a moment.", Err: err})
}

func (h *gate) badPath(w http.ResponseWriter, r *http.Request, err error) {
	h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusBadRequest, Code: "bad_path",
		Title:  "This address cannot be served",
		Detail: "gatehouse refuses this address because " + err.Error() + ". Check the link.", Err: err})
}

func (h *gate) notFound(w http.ResponseWriter, r *http.Request, rt *route) {
	detail := "No application is configured at this address."
	if rt != nil {
		detail = "This address is protected through forward-auth only; gatehouse does not serve it directly."
	}
	h.pages.Fail(w, r, h.log, &web.Error{Status: http.StatusNotFound, Code: "no_route", Title: "Not found", Detail: detail})
}

// registerOwn adds gatehouse's health endpoints and a 404 page for unknown
// /_gatehouse/ paths.
func (h *gate) registerOwn(mux *http.ServeMux) {
	mux.HandleFunc("GET "+auth.Prefix+"healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+auth.Prefix+"readyz", func(w http.ResponseWriter, r *http.Request) {
		if !h.auth.Ready() {
			web.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "identity provider discovery not loaded yet"})
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
	mux.Handle(auth.Prefix, h.pages.Adapt(h.log, func(w http.ResponseWriter, r *http.Request) error {
		return &web.Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Detail: "There is no gatehouse page at this address."}
	}))
}
