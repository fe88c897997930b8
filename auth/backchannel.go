package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// BackchannelLogoutPath receives OpenID Connect Back-Channel Logout 1.0
// calls; register EXTERNAL_URL/_gatehouse/backchannel-logout at the
// identity provider.
const BackchannelLogoutPath = Prefix + "backchannel-logout"

const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// Logout tokens issued more than logoutTokenMaxAge ago, or more than
// iatSkew in the future, are refused (BCL §2.6 step 4 allows an iat
// window; providers are encouraged to keep exp within two minutes).
const logoutTokenMaxAge = 5 * time.Minute

// jtiCache remembers the jti of accepted logout tokens until they expire,
// so a replayed token is refused (BCL §2.6). Bounded: when full, entries
// past their expiry are dropped first, then the whole cache (a replay
// after that is harmless: logout is idempotent).
type jtiCache struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const maxJTIs = 100000

// seen records jti until exp and reports whether it was already there.
func (c *jtiCache) seen(jti string, exp, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]time.Time{}
	}
	if until, ok := c.m[jti]; ok && now.Before(until) {
		return true
	}
	if len(c.m) >= maxJTIs {
		for k, until := range c.m {
			if !now.Before(until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxJTIs {
			clear(c.m)
		}
	}
	c.m[jti] = exp
	return false
}

// forget drops jti, so that the provider may send its token again (the
// logout it asked for was not done).
func (c *jtiCache) forget(jti string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, jti)
}

// handleBackchannelLogout verifies a logout token as OpenID Connect
// Back-Channel Logout 1.0 §2.6 requires and ends the sessions it names:
// with a sid and a sub, every session that has both (a sid alone must not
// end another user's session); with a sid only, every session with it;
// with a sub only, every session of that subject. An invalid token gets
// 400 with an error (§2.8); success, including "nobody was signed in",
// gets 200.
func (a *Authenticator) handleBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	fail := func(desc string, err error) {
		a.log.Warn("back-channel logout refused", "event", "backchannel_logout", "result", "refused", "reason", desc, "err", err)
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": desc})
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		fail("the body is not a form", err)
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		fail("no logout_token", nil)
		return
	}
	d, err := a.idp.get(r.Context())
	if err != nil {
		web.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "identity provider keys not loaded"})
		return
	}
	// Signature with the provider's keys (asymmetric algorithms only, so
	// never alg=none), iss, aud, exp, the back-channel logout event, no
	// nonce, jti present, sub or sid present.
	verifier, keys := d.verifierFor(true)
	lt, err := verifier.VerifyLogout(a.idp.ctx(r.Context()), raw)
	if keys.fetchErr != nil {
		web.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "identity provider keys unavailable"})
		return
	}
	if err != nil {
		fail("the logout token is not valid", err)
		return
	}
	var extra struct {
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := lt.Claims(&extra); err != nil || extra.Events == nil {
		fail("events is not a JSON object", err)
		return
	}
	// §2.4: the event's value is a JSON object (usually {}).
	if ev := extra.Events[backchannelEvent]; len(ev) == 0 || ev[0] != '{' {
		fail("the back-channel logout event is not a JSON object", nil)
		return
	}
	now := a.now()
	switch {
	case lt.IssuedAt.IsZero():
		fail("no iat", nil)
		return
	case lt.IssuedAt.After(now.Add(iatSkew)):
		fail("iat is in the future", nil)
		return
	case lt.IssuedAt.Before(now.Add(-logoutTokenMaxAge)):
		fail("iat is too old", nil)
		return
	}
	if a.jtis.seen(lt.TokenID, lt.Expiry, now) {
		fail("the logout token was already used (jti)", nil)
		return
	}
	var n int
	by := "sid"
	switch {
	case lt.SessionID != "" && lt.Subject != "":
		// Both named: both must match. A token with bob's sid and alice's
		// sub ends nobody's session rather than bob's.
		by = "sid+sub"
		n, err = a.store.DeleteByIdPSessionOfSubject(r.Context(), lt.SessionID, lt.Subject)
	case lt.SessionID != "":
		n, err = a.store.DeleteByIdPSession(r.Context(), lt.SessionID)
	default:
		by = "sub"
		n, err = a.store.DeleteBySubject(r.Context(), lt.Subject)
	}
	if err != nil {
		// Not done: never 200. The provider may send the same token again
		// (its jti is forgotten); the redis store also keeps retrying by
		// itself when it says so (ErrRetrying).
		a.jtis.forget(lt.TokenID)
		desc := "session store unavailable: the logout is not confirmed; send the logout token again"
		if errors.Is(err, sessions.ErrRetrying) {
			desc = "session store unavailable: the logout is not confirmed yet; gatehouse keeps retrying, and the logout token may be sent again"
		}
		a.log.Warn("back-channel logout failed: the session store did not answer", "event", "backchannel_logout", "result", "store_unavailable",
			"by", by, "sub", lt.Subject, "retrying", errors.Is(err, sessions.ErrRetrying), "err", err)
		w.Header().Set("Retry-After", retryAfter)
		web.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": desc})
		return
	}
	a.log.Info("back-channel logout", "event", "logout", "reason", "backchannel", "by", by,
		"sub", lt.Subject, "sessions", n, "jti_prefix", prefix(lt.TokenID, 8))
	for range n {
		a.obs.Logout("backchannel")
	}
	w.WriteHeader(http.StatusOK)
}

func prefix(s string, n int) string {
	if len(s) > n {
		return strings.Clone(s[:n])
	}
	return s
}
