package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// ForwardAuthPath answers "may this request pass?" for a proxy in front of
// the app. Envoy's ext_authz appends the original path to it
// (/_gatehouse/auth/admin?x=1).
const ForwardAuthPath = auth.Prefix + "auth"

// LoginHeader carries the login URL on a 401 forward-auth answer, for
// nginx's error_page 401 recipe.
const LoginHeader = "X-Gatehouse-Login"

func isForwardAuth(p string) bool {
	return p == ForwardAuthPath || strings.HasPrefix(p, ForwardAuthPath+"/")
}

// original is the request a forward-auth call asks about.
type original struct {
	method, scheme, host string
	url                  *url.URL // path and query
}

// originalRequest works out the request a forward-auth call is about, from
// the one source forward_auth.mode names, and no other:
//   - nginx: X-Original-URL (and X-Original-Method) from a trusted proxy;
//   - traefik: X-Forwarded-Uri, -Host, -Method, -Proto from a trusted
//     proxy;
//   - envoy: the call itself, its method and Host, and the path after
//     /_gatehouse/auth (ext_authz appends the original path).
//
// Headers of the other families are ignored: nginx's auth_request passes
// every client header on, so believing Traefik's headers in nginx mode
// would let a client name the path to be judged. Forwarding headers from a
// peer that is not in trusted_proxies are never believed
// (GHSA-7x63-xv5r-3p2x): such a call is refused rather than answered for
// some default path, so a proxy missing from trusted_proxies fails closed.
func (h *gate) originalRequest(r *http.Request) (original, error) {
	o := original{method: http.MethodGet, scheme: h.auth.External().Scheme, host: r.Host}
	hdr := r.Header
	var uri string
	switch h.faMode {
	case "nginx":
		if !h.isTrusted(r.RemoteAddr) {
			return o, errUntrustedForwarder
		}
		raw := hdr.Get("X-Original-Url")
		if raw == "" {
			return o, errNoOriginal("X-Original-URL")
		}
		u, err := url.Parse(raw)
		if err != nil {
			return o, errBadOriginal
		}
		if u.Host != "" {
			o.scheme, o.host = strings.ToLower(u.Scheme), u.Host
		}
		uri = u.RequestURI()
		o.method = firstNonEmpty(hdr.Get("X-Original-Method"), http.MethodGet)
	case "traefik":
		if !h.isTrusted(r.RemoteAddr) {
			return o, errUntrustedForwarder
		}
		uri = hdr.Get("X-Forwarded-Uri")
		if uri == "" {
			return o, errNoOriginal("X-Forwarded-Uri")
		}
		o.method = firstNonEmpty(hdr.Get("X-Forwarded-Method"), http.MethodGet)
		o.scheme = strings.ToLower(firstNonEmpty(hdr.Get("X-Forwarded-Proto"), o.scheme))
		o.host = firstNonEmpty(hdr.Get("X-Forwarded-Host"), o.host)
	default: // envoy
		uri = strings.TrimPrefix(r.URL.EscapedPath(), ForwardAuthPath)
		if uri == "" {
			return o, errNoOriginal("the original path after " + ForwardAuthPath)
		}
		if r.URL.RawQuery != "" {
			uri += "?" + r.URL.RawQuery
		}
		o.method = r.Method // the scheme stays the external URL's: no header is believed
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || (o.scheme != "http" && o.scheme != "https") {
		return o, errBadOriginal
	}
	o.url = u
	return o, nil
}

func errNoOriginal(what string) error {
	return &web.Error{Status: http.StatusBadRequest, Code: "no_original_request",
		Title:  "Original request missing",
		Detail: "The forward-auth call does not say which request to check: " + what + " is missing. Check the proxy's forward-auth configuration and forward_auth.mode."}
}

var (
	errUntrustedForwarder = &web.Error{Status: http.StatusForbidden, Code: "untrusted_forwarder",
		Title:  "Forward-auth call from an untrusted proxy",
		Detail: "gatehouse does not believe the forwarding headers of this peer. Add the proxy's address to trusted_proxies."}
	errBadOriginal = &web.Error{Status: http.StatusBadRequest, Code: "bad_original_request",
		Title:  "Original request unreadable",
		Detail: "The forwarding headers do not describe a request gatehouse can check."}
)

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// forwardAuth answers a forward-auth call: 200 with the identity headers
// when the original request may pass; 403 when the user is signed in but
// not allowed; without a session, 401 with the login URL in
// X-Gatehouse-Login (nginx) or a 302 to the login (traefik, envoy; API
// clients still get 401). It makes no upstream call: one cookie decode,
// one store lookup.
func (h *gate) forwardAuth(w http.ResponseWriter, r *http.Request) {
	o, err := h.originalRequest(r)
	if err != nil {
		h.log.Warn("forward-auth refused", "peer", r.RemoteAddr, "reason", web.Code(err))
		h.pages.Fail(w, r, h.log, err)
		return
	}
	clean, _, err := cleanRequestPath(o.url)
	if err != nil {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	// The proxy in front sends the app the original path: that is what
	// every reading is of.
	rt, public, err := h.judgePath(o.host, clean, o.url, h.fallback)
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		h.pages.Fail(w, r, h.log, ambiguousPath(err))
		return
	}
	if public {
		rt.metrics.Count(metrics.FAAllowed)
		w.WriteHeader(http.StatusOK)
		return
	}
	s := h.identify(w, r, rt, func(w http.ResponseWriter, r *http.Request, rt *route, _ error) {
		h.forwardAuthChallenge(w, r, rt, o)
	})
	if s == nil {
		return
	}
	switch h.decide(rt, s) {
	case deny:
		// The page (who you are, how to sign out) reaches the browser
		// where the proxy passes the body on (Traefik, Envoy).
		h.denied(w, r, rt, s, clean, "via", "forward-auth")
		return
	case stepUp:
		h.forwardAuthStepUp(w, r, rt, s, o)
		return
	}
	rt.identity.set(w.Header(), s)
	for k, v := range rt.static {
		w.Header()[k] = v
	}
	if !h.assert(w.Header(), s, h.forwardAuthSlot(rt, o)) {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.auth.OfferBinding(w, r, s) // reaches the browser where the proxy passes it (Envoy's allowed_client_headers_on_success)
	rt.metrics.Count(metrics.FAAllowed)
	w.WriteHeader(http.StatusOK)
}

// forwardAuthSlot is the assertion audience of a forward-auth answer: the
// route's, or the original request's origin for routes without an
// upstream.
func (h *gate) forwardAuthSlot(rt *route, o original) *auth.AssertionSlot {
	if h.asserter == nil {
		return nil
	}
	if rt.slot != nil {
		return rt.slot
	}
	aud := rt.audience
	if aud == "" {
		aud = o.scheme + "://" + strings.ToLower(o.host)
	}
	if v, ok := h.faSlots.Load(aud); ok {
		return v.(*auth.AssertionSlot)
	}
	// The host comes from the forwarding proxy: keep at most maxFASlots,
	// so a stream of invented hosts cannot grow the map.
	if h.faSlotCount.Add(1) > maxFASlots {
		h.faSlotCount.Add(-1)
		return h.asserter.Slot(aud)
	}
	v, loaded := h.faSlots.LoadOrStore(aud, h.asserter.Slot(aud))
	if loaded {
		h.faSlotCount.Add(-1)
	}
	return v.(*auth.AssertionSlot)
}

// maxFASlots bounds the forward-auth audiences a gate keeps a slot for.
const maxFASlots = 1024

// forwardAuthStepUp answers a forward-auth call whose session signed in
// longer ago than the route's max_auth_age, or without one of its
// acr_values: as forwardAuthChallenge, with a login that asks for max_age
// or acr_values, and the RFC 9470 challenge on a 401.
func (h *gate) forwardAuthStepUp(w http.ResponseWriter, r *http.Request, rt *route, s *sessions.Session, o original) {
	login := h.auth.StepUpLoginURLFor(o.scheme+"://"+strings.ToLower(o.host)+o.url.RequestURI(), rt.stepUp())
	navigation := (o.method == http.MethodGet || o.method == http.MethodHead) && auth.IsNavigation(&http.Request{Method: http.MethodGet, Header: r.Header})
	h.stepUpNeeded(&http.Request{Method: o.method, Header: r.Header}, rt, s, "via", "forward-auth")
	w.Header().Set(LoginHeader, login)
	if h.forwardAuthMode(r) != "nginx" && navigation {
		w.Header().Set("Location", login)
		w.WriteHeader(http.StatusFound)
		return
	}
	auth.StepUpChallengeFor(w, login, rt.stepUp())
}

// forwardAuthMode is the proxy a forward-auth call comes from: the
// configured mode, or the call's ?mode= outside envoy mode.
func (h *gate) forwardAuthMode(r *http.Request) string {
	mode := h.faMode
	if mode != "envoy" { // in envoy mode the query is the original request's
		if m := r.URL.Query().Get("mode"); m == "nginx" || m == "traefik" || m == "envoy" {
			mode = m
		}
	}
	return mode
}

// forwardAuthChallenge answers a forward-auth call without a session.
func (h *gate) forwardAuthChallenge(w http.ResponseWriter, r *http.Request, rt *route, o original) {
	login := h.auth.LoginURL(o.scheme + "://" + strings.ToLower(o.host) + o.url.RequestURI())
	mode := h.forwardAuthMode(r)
	navigation := (o.method == http.MethodGet || o.method == http.MethodHead) && auth.IsNavigation(&http.Request{Method: http.MethodGet, Header: r.Header})
	w.Header().Set(LoginHeader, login)
	redirect := mode != "nginx" && navigation
	if redirect {
		rt.metrics.Count(metrics.LoginRedirect)
	} else {
		rt.metrics.Count(metrics.Unauthenticated)
	}
	auth.ChallengeTo(w, login, redirect)
}
