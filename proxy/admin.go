package proxy

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Admin endpoints, on the admin listener only.
const (
	AdminMetricsPath  = "/metrics"
	AdminSessionsPath = "/sessions"
)

// AdminHandler serves the admin listener: GET /metrics (Prometheus text
// format, no token) and, when admin.token_file is set, session
// administration with "Authorization: Bearer <token>":
//
//	GET    /sessions?sub=SUB         the live sessions of a user (never tokens)
//	DELETE /sessions/HANDLE          revoke one session
//	DELETE /sessions?sub=SUB         revoke every session of a user
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+AdminMetricsPath, g.Metrics.Handler())
	mux.HandleFunc("GET "+AdminSessionsPath, g.adminAuth(g.listSessions))
	mux.HandleFunc("DELETE "+AdminSessionsPath, g.adminAuth(g.revokeSubject))
	mux.HandleFunc("DELETE "+AdminSessionsPath+"/{handle}", g.adminAuth(g.revokeHandle))
	return mux
}

// AdminServer returns the admin listener's server, or nil when
// admin.listen is not set.
func (g *Gateway) AdminServer() *http.Server {
	cfg := g.cfg.Load()
	if cfg.Admin.Listen == "" {
		return nil
	}
	return &http.Server{
		Addr: cfg.Admin.Listen, Handler: g.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}

// adminAuth requires the admin token, compared in constant time.
func (g *Gateway) adminAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := g.cfg.Load().Admin.Token
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

func (g *Gateway) admin(w http.ResponseWriter) (sessions.Admin, bool) {
	a, ok := g.Store.(sessions.Admin)
	if !ok {
		web.WriteJSON(w, http.StatusNotImplemented, map[string]string{"error": "unsupported", "message": "This session store cannot be administered."})
	}
	return a, ok
}

func (g *Gateway) listSessions(w http.ResponseWriter, r *http.Request) {
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

func (g *Gateway) revokeHandle(w http.ResponseWriter, r *http.Request) {
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
	g.Metrics.Logout("admin")
	web.WriteJSON(w, http.StatusOK, map[string]any{"revoked": 1})
}

func (g *Gateway) revokeSubject(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": "Name the user: ?sub=<subject>, or DELETE /sessions/<handle>."})
		return
	}
	n, err := g.Store.DeleteBySubject(r.Context(), sub)
	if err != nil {
		g.revokeFailed(w, "admin: revoke sessions", err)
		return
	}
	g.log.Info("sessions revoked", "event", "logout", "reason", "admin", "sub", sub, "sessions", n, "peer", r.RemoteAddr)
	for range n {
		g.Metrics.Logout("admin")
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"revoked": n})
}

// revokeFailed answers a revocation the store could not do: 503, saying
// whether the store keeps retrying it, never "revoked".
func (g *Gateway) revokeFailed(w http.ResponseWriter, what string, err error) {
	retrying := errors.Is(err, sessions.ErrRetrying)
	g.log.Warn(what+" failed: the session store did not answer", "retrying", retrying, "err", err)
	msg := "The session store did not answer: the revocation is not confirmed. Try again."
	if retrying {
		msg = "The session store did not answer: the revocation is not confirmed yet. gatehouse keeps retrying in the background; check with GET /sessions?sub=<subject>, or try again."
	}
	w.Header().Set("Retry-After", "2")
	web.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "store_unavailable", "message": msg, "retrying": retrying})
}
