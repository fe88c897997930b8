// Package proxy is gatehouse's request path: it strips client identity
// headers, serves gatehouse's own endpoints, finds the session, applies
// the policy, sets the identity headers and reverse-proxies to the
// upstream, answering failures with clear pages.
package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Handler is gatehouse's http.Handler. It is safe for concurrent use.
type Handler struct {
	auth           *auth.Authenticator
	internal       *http.ServeMux // /_gatehouse/...
	strip          *stripper
	identity       *identityHeaders
	forwardedProto []string
	policy         *auth.Policy
	proxy          *httputil.ReverseProxy
	buffers        *bufferPool
	log            *slog.Logger
}

// ServeHTTP runs one request down the path the design describes:
// strip client identity headers, serve /_gatehouse/, find the session
// (302 or 401 without one), check the policy (403), proxy.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.strip.strip(r)
	if strings.HasPrefix(r.URL.Path, auth.Prefix) || r.URL.Path == strings.TrimSuffix(auth.Prefix, "/") {
		h.internal.ServeHTTP(w, r)
		return
	}
	s, err := h.auth.Session(r)
	if err != nil {
		if isStoreFailure(err) {
			web.Fail(w, r, h.log, &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable",
				Title:  "Session store unavailable",
				Detail: "gatehouse cannot check your session right now. Try again in a moment.", Err: err})
			return
		}
		h.auth.Challenge(w, r)
		return
	}
	if !h.policy.Allows(s) {
		h.log.Info("access denied", "event", "denied", "sub", s.Subject, "user", s.User, "path", r.URL.Path)
		h.auth.Forbidden(w, r, s)
		return
	}
	h.forward(w, r, s)
}

// forward proxies r with the identity of s (nil on a public path). The
// headers are set on the incoming request, whose client-sent identity
// headers are already gone; the Connection header is cleaned first so it
// cannot name them as hop-by-hop, and gatehouse's own cookies are taken
// out so the upstream never sees (and cannot replay) them.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, s *sessions.Session) {
	h.strip.protectConnection(r.Header)
	stripCookies(r.Header, h.auth.IsOwnCookie)
	if s != nil {
		h.identity.set(r.Header, s)
	}
	h.proxy.ServeHTTP(w, r)
}

// isStoreFailure tells a store that could not answer from a session that
// is simply not there.
func isStoreFailure(err error) bool {
	return !errors.Is(err, auth.ErrNoSession) && !errors.Is(err, sessions.ErrNotFound) && !errors.Is(err, sessions.ErrExpired)
}

// registerOwn adds gatehouse's health endpoints and a 404 page for unknown
// /_gatehouse/ paths.
func (h *Handler) registerOwn(mux *http.ServeMux) {
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
	mux.Handle(auth.Prefix, web.Adapt(h.log, func(w http.ResponseWriter, r *http.Request) error {
		return &web.Error{Status: http.StatusNotFound, Code: "not_found", Title: "Not found",
			Detail: "There is no gatehouse page at this address."}
	}))
}
