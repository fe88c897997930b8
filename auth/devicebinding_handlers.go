package auth

import (
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/dbsc"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// registerBinding adds the device binding endpoints when binding is on.
func (a *Authenticator) registerBinding(mux *http.ServeMux) {
	if a.dbsc == nil {
		return
	}
	mux.HandleFunc("POST "+DBSCRegisterPath, a.handleBindRegister)
	mux.HandleFunc("POST "+DBSCRefreshPath, a.handleBindRefresh)
}

// bindingFail answers a binding endpoint's refusal as JSON, logs it and
// counts it.
func (a *Authenticator) bindingFail(w http.ResponseWriter, r *http.Request, event string, status int, reason string, err error) {
	a.bindingEvent(event, reason)
	attrs := []any{"event", "device_binding_" + event + "_failed", "reason", reason, "request_id", web.RequestID(r)}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	a.log.Info("device binding refused", attrs...)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, status, map[string]string{"error": reason, "request_id": web.RequestID(r)})
}

// handleBindRegister binds the request's session to the key in its
// Secure-Session-Response proof: the proof must verify with that key and
// sign a challenge gatehouse issued for this session, unexpired and
// unused. It answers the bound cookie and the session instructions. A
// session already bound to another key is never bound again.
func (a *Authenticator) handleBindRegister(w http.ResponseWriter, r *http.Request) {
	s, err := a.lookupSession(r)
	switch {
	case errors.Is(err, sessions.ErrUnavailable):
		a.bindingFail(w, r, "bound", http.StatusServiceUnavailable, "store_unavailable", err)
		return
	case err != nil:
		a.bindingFail(w, r, "bound", http.StatusUnauthorized, "no_session", err)
		return
	}
	proof, err := dbsc.VerifyRegistration(r.Header.Get(dbsc.ResponseHeader))
	if err != nil {
		a.bindingFail(w, r, "bound", http.StatusBadRequest, proofReason(err), err)
		return
	}
	if s.DeviceKey != "" && subtle.ConstantTimeCompare([]byte(s.DeviceKey), []byte(proof.Key.JWK)) != 1 {
		a.bindingFail(w, r, "bound", http.StatusForbidden, "already_bound", nil)
		return
	}
	if err := a.consumeChallenge(r, proof.Challenge, s.ID); err != nil {
		a.challengeFail(w, r, "bound", err)
		return
	}
	if s.DeviceKey == "" {
		c := s.Clone()
		c.DeviceKey, c.BoundAt = proof.Key.JWK, a.now()
		if err := a.store.Replace(r.Context(), c); err != nil {
			if errors.Is(err, sessions.ErrUnavailable) {
				a.bindingFail(w, r, "bound", http.StatusServiceUnavailable, "store_unavailable", err)
			} else {
				a.bindingFail(w, r, "bound", http.StatusUnauthorized, "no_session", err)
			}
			return
		}
		s = c
	}
	if err := a.answerBound(w, s.ID); err != nil {
		a.bindingFail(w, r, "bound", http.StatusInternalServerError, "internal_error", err)
		return
	}
	a.bindingEvent("bound", "")
	a.log.Info("session bound to a device key", "event", "device_bound", "request_id", web.RequestID(r), "sub", s.Subject,
		"user", s.User, "session", s.ID.LogID(), "alg", proof.Key.Alg(), "key_thumbprint", proof.Key.Thumbprint())
}

// handleBindRefresh renews the bound cookie of a bound session. Without a
// proof it answers 403 with a challenge for the browser to sign; with one,
// it verifies the signature with the stored key (one verification, no
// call to the identity provider) and answers a new bound cookie. A browser
// session gatehouse no longer has (signed out, revoked, expired, or
// another session now) is told to end: {"continue": false}.
func (a *Authenticator) handleBindRefresh(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(dbsc.SessionIDHeader)
	if !validBindingID(id) {
		a.bindingFail(w, r, "refresh", http.StatusBadRequest, "bad_session_id", nil)
		return
	}
	s, err := a.lookupSession(r)
	switch {
	case errors.Is(err, sessions.ErrUnavailable):
		a.bindingFail(w, r, "refresh", http.StatusServiceUnavailable, "store_unavailable", err)
		return
	case err == nil && s.DeviceKey != "" && BindingID(s.ID) == id:
	case err == nil || IsNoSession(err):
		// Ends the browser's session: the server has none for it.
		a.bindingEvent("refresh", "ended")
		// The bound cookie is left alone: it may be the current
		// session's, under the same name.
		a.log.Info("device binding ended at refresh", "event", "device_binding_refresh", "result", "ended", "request_id", web.RequestID(r))
		w.Header().Set("Cache-Control", "no-store")
		web.WriteJSON(w, http.StatusOK, dbsc.End(id))
		return
	default:
		a.bindingFail(w, r, "refresh", http.StatusInternalServerError, "internal_error", err)
		return
	}
	raw := r.Header.Get(dbsc.ResponseHeader)
	if raw == "" {
		c, err := a.newChallenge(s.ID)
		if err != nil {
			a.bindingFail(w, r, "refresh", http.StatusInternalServerError, "internal_error", err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set(dbsc.ChallengeHeader, dbsc.ChallengeValue(c, id))
		w.WriteHeader(http.StatusForbidden)
		return
	}
	key, err := dbsc.ParseJWK([]byte(s.DeviceKey))
	if err != nil {
		a.bindingFail(w, r, "refresh", http.StatusInternalServerError, "stored_key", err)
		return
	}
	proof, err := dbsc.VerifyRefresh(raw, key)
	if err != nil {
		a.bindingFail(w, r, "refresh", http.StatusForbidden, proofReason(err), err)
		return
	}
	if err := a.consumeChallenge(r, proof.Challenge, s.ID); err != nil {
		a.challengeFail(w, r, "refresh", err)
		return
	}
	if err := a.answerBound(w, s.ID); err != nil {
		a.bindingFail(w, r, "refresh", http.StatusInternalServerError, "internal_error", err)
		return
	}
	a.bindingEvent("refresh", "success")
	a.log.Debug("bound cookie renewed", "event", "device_binding_refresh", "result", "success", "request_id", web.RequestID(r), "session", s.ID.LogID())
}

// challengeFail answers a proof whose challenge did not pass.
func (a *Authenticator) challengeFail(w http.ResponseWriter, r *http.Request, event string, err error) {
	if errors.Is(err, errChallenge) {
		a.bindingFail(w, r, event, http.StatusBadRequest, "challenge", err)
		return
	}
	a.bindingFail(w, r, event, http.StatusServiceUnavailable, "store_unavailable", err)
}

// answerBound sets a fresh bound cookie and writes the session
// instructions.
func (a *Authenticator) answerBound(w http.ResponseWriter, id sessions.ID) error {
	if err := a.setBoundCookie(w, id); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	web.WriteJSON(w, http.StatusOK, dbsc.Session(BindingID(id), DBSCRefreshPath, a.dbsc.bound.Name(), a.dbsc.attrs))
	return nil
}

// validBindingID reports whether id looks like a BindingID (hex).
func validBindingID(id string) bool {
	if len(id) != 2*tagBytes {
		return false
	}
	for i := range len(id) {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// proofReason is the stable code of a refused proof.
func proofReason(err error) string {
	var pe *dbsc.ProofError
	if errors.As(err, &pe) {
		return "proof_" + pe.Reason
	}
	return "proof"
}
