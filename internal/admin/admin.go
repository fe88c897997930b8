// Package admin is gatehouse's admin API, served on the admin listener
// (admin.listen) apart from user traffic: the metrics, and session
// administration behind the admin token.
package admin

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/metrics"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Admin endpoints, on the admin listener only.
const (
	MetricsPath  = "/metrics"
	SessionsPath = "/sessions"
)

// Options are the admin API's collaborators.
type Options struct {
	// Store holds the sessions it lists and revokes; required.
	Store sessions.Store
	// Metrics are served on /metrics and count admin revocations;
	// required.
	Metrics *metrics.Metrics
	// Token is the admin token (admin.token_file); "" turns session
	// administration off (404). /metrics needs no token.
	Token string
	// Logger receives revocations and store failures; default: discard.
	Logger *slog.Logger
}

// api is the admin API over one store.
type api struct {
	store   sessions.Store
	metrics *metrics.Metrics
	token   string
	log     *slog.Logger
}

// Handler serves the admin listener: GET /metrics (Prometheus text
// format, no token) and, when admin.token_file is set, session
// administration with "Authorization: Bearer <token>":
//
//	GET    /sessions?sub=SUB         the live sessions of a user (never tokens)
//	DELETE /sessions/HANDLE          revoke one session
//	DELETE /sessions?sub=SUB         revoke every session of a user
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g := &api{store: o.Store, metrics: o.Metrics, token: o.Token, log: o.Logger}
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, g.metrics.Handler())
	mux.HandleFunc("GET "+SessionsPath, g.adminAuth(g.listSessions))
	mux.HandleFunc("DELETE "+SessionsPath, g.adminAuth(g.revokeSubject))
	mux.HandleFunc("DELETE "+SessionsPath+"/{handle}", g.adminAuth(g.revokeHandle))
	return mux
}

// Server returns the admin listener's server on listen (admin.listen),
// or nil when it is "".
func Server(listen string, o Options) *http.Server {
	if listen == "" {
		return nil
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Addr: listen, Handler: Handler(o),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
}

// adminAuth requires the admin token, compared in constant time.
func (g *api) adminAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := g.token
		if token == "" {
			web.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "disabled", "message": "Session administration is off: set admin.token_file."})
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse admin"`)
			web.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "message": "Send the admin token: Authorization: Bearer <token>."})
			return
		}
		next(w, r)
	}
}

func (g *api) admin(w http.ResponseWriter) (sessions.Admin, bool) {
	a, ok := g.store.(sessions.Admin)
	if !ok {
		web.WriteJSON(w, http.StatusNotImplemented, map[string]string{"error": "unsupported", "message": "This session store cannot be administered."})
	}
	return a, ok
}

func (g *api) listSessions(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": "Name the user: ?sub=<subject>."})
		return
	}
	a, ok := g.admin(w)
	if !ok {
		return
	}
	list, err := a.ListBySubject(r.Context(), sub)
	if err != nil {
		g.log.Warn("admin: list sessions", "err", err)
		web.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "store_unavailable", "message": "The session store did not answer."})
		return
	}
	if list == nil {
		list = []sessions.Info{}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"sub": sub, "sessions": list})
}

func (g *api) revokeHandle(w http.ResponseWriter, r *http.Request) {
	a, ok := g.admin(w)
	if !ok {
		return
	}
	handle := r.PathValue("handle")
	found, err := a.DeleteByHandle(r.Context(), handle)
	if err != nil {
		g.revokeFailed(w, "admin: revoke session", err)
		return
	}
	if !found {
		web.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "No session has this handle (already ended?)."})
		return
	}
	g.log.Info("session revoked", "event", "logout", "reason", "admin", "handle", handle, "peer", r.RemoteAddr)
	g.metrics.Logout("admin")
	web.WriteJSON(w, http.StatusOK, map[string]any{"revoked": 1})
}

func (g *api) revokeSubject(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": "Name the user: ?sub=<subject>, or DELETE /sessions/<handle>."})
		return
	}
	n, err := g.store.DeleteBySubject(r.Context(), sub)
	if err != nil {
		g.revokeFailed(w, "admin: revoke sessions", err)
		return
	}
	g.log.Info("sessions revoked", "event", "logout", "reason", "admin", "sub", sub, "sessions", n, "peer", r.RemoteAddr)
	for range n {
		g.metrics.Logout("admin")
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"revoked": n})
}

// revokeFailed answers a revocation the store could not do: 503, saying
// whether the store keeps retrying it, never "revoked".
func (g *api) revokeFailed(w http.ResponseWriter, what string, err error) {
	retrying := errors.Is(err, sessions.ErrRetrying)
	g.log.Warn(what+" failed: the session store did not answer", "retrying", retrying, "err", err)
	msg := "The session store did not answer: the revocation is not confirmed. Try again."
	if retrying {
		msg = "The session store did not answer: the revocation is not confirmed yet. gatehouse keeps retrying in the background; check with GET /sessions?sub=<subject>, or try again."
	}
	w.Header().Set("Retry-After", "2")
	web.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "store_unavailable", "message": msg, "retrying": retrying})
}
