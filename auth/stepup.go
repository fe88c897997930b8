package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Step-up (routes[].max_auth_age): a route may ask that the user signed in
// at the identity provider recently. The session records auth_time from the
// ID token at login; a session whose auth_time is older than the route
// allows, or unknown, is sent through a fresh login that asks the provider
// for max_age and prompt=login (OIDC Core §3.1.2.1), and the callback
// checks the returned auth_time (§3.1.3.7 (13)). The fresh login replaces
// the session, as every login does: the session ends when the step-up
// login starts, and a different user signing in gets their own session.

// maxStepUpAge bounds the max_age a login may ask for (400 days, the
// longest session.absolute_timeout).
const maxStepUpAge = 400 * 24 * time.Hour

// authTimeSkew is the clock difference tolerated between gatehouse and the
// identity provider when judging auth_time, both in the callback and on
// the route, so the two never disagree (which would loop).
const authTimeSkew = iatSkew

// RecentAuth reports whether the session's last sign-in at the identity
// provider is within maxAge. An unknown sign-in time (a provider that
// sends no auth_time, a session stored by an earlier version, a bearer
// token without it) is not recent: fail closed.
func (a *Authenticator) RecentAuth(s *sessions.Session, maxAge time.Duration) bool {
	return authTimeWithin(s.AuthTime, a.now(), maxAge)
}

func authTimeWithin(at, now time.Time, maxAge time.Duration) bool {
	if at.IsZero() || at.After(now.Add(authTimeSkew)) {
		return false
	}
	return now.Sub(at) <= maxAge+authTimeSkew
}

// maxAgeSeconds is max_age as sent to the provider: whole seconds, at
// least 1.
func maxAgeSeconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}

// StepUpLoginURL is the URL of a login that asks the provider for a sign-in
// within maxAge and returns to target.
func (a *Authenticator) StepUpLoginURL(target string, maxAge time.Duration) string {
	return a.LoginURL(target) + "&max_age=" + strconv.FormatInt(maxAgeSeconds(maxAge), 10)
}

// StepUp answers a request whose session signed in longer ago than the
// route's max_auth_age: a browser navigation is redirected (302) to a
// login asking for max_age and prompt=login that returns to the same URL;
// any other request gets 401 with the RFC 9470 challenge.
func (a *Authenticator) StepUp(w http.ResponseWriter, r *http.Request, maxAge time.Duration) {
	login := a.StepUpLoginURL(a.returnTarget(r), maxAge)
	w.Header().Set("Cache-Control", "no-store")
	if IsNavigation(r) {
		w.Header().Set("Location", login)
		w.WriteHeader(http.StatusFound)
		return
	}
	StepUpChallenge(w, login, maxAge)
}

// StepUpChallenge writes the RFC 9470 §3 answer to an API request that
// needs a more recent sign-in: 401, WWW-Authenticate: Bearer
// error="insufficient_user_authentication" with max_age, and a JSON body
// naming the login URL for a browser.
func StepUpChallenge(w http.ResponseWriter, login string, maxAge time.Duration) {
	n := maxAgeSeconds(maxAge)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`Bearer realm="gatehouse", error="insufficient_user_authentication", error_description="A more recent sign-in is required", max_age=%d`, n))
	web.WriteJSON(w, http.StatusUnauthorized, map[string]any{
		"error":     "insufficient_user_authentication",
		"message":   "This resource needs a recent sign-in: open login_url in a browser.",
		"max_age":   n,
		"login_url": login,
	})
}

// stepUpParam reads the max_age a login was started with ("" for none).
func stepUpParam(q url.Values) (int64, error) {
	v := q.Get("max_age")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > int64(maxStepUpAge/time.Second) {
		return 0, &web.Error{Status: http.StatusBadRequest, Code: "bad_max_age", Title: "Invalid sign-in link",
			Detail: fmt.Sprintf("The sign-in link asks for max_age %q; it must be a whole number of seconds from 1 to %d. Open the page you wanted again.", v, int64(maxStepUpAge/time.Second))}
	}
	return n, nil
}

// authTimeClaim reads auth_time (seconds since the epoch) from the ID
// token's claims; zero when absent or not a number.
func authTimeClaim(claims map[string]json.RawMessage) time.Time {
	raw, ok := claims["auth_time"]
	if !ok {
		return time.Time{}
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || f <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}

// checkStepUp refuses the login of a step-up (p.MaxAge set) whose ID token
// does not show a sign-in within max_age: the provider ignored max_age and
// prompt=login, or sent no auth_time (OIDC Core §3.1.3.7 (13)). The answer
// is a page, never another redirect, so a provider that ignores the
// request cannot make the browser loop; no session is created.
func (a *Authenticator) checkStepUp(p pendingLogin, s *sessions.Session, retry *web.Link) error {
	if p.MaxAge <= 0 {
		return nil
	}
	maxAge := time.Duration(p.MaxAge) * time.Second
	if authTimeWithin(s.AuthTime, a.now(), maxAge) {
		return nil
	}
	seen := "did not say when you last signed in (no auth_time)"
	reason := "missing"
	if !s.AuthTime.IsZero() {
		seen = "reported your last sign-in at " + s.AuthTime.UTC().Format(time.RFC3339)
		reason = "too old"
	}
	return &web.Error{Status: http.StatusForbidden, Code: "reauthentication_not_done", Title: "A recent sign-in is required",
		Detail: fmt.Sprintf("This page needs you to have signed in within the last %s, so gatehouse asked the identity provider to sign you in again, "+
			"but it %s. You are signed out of gatehouse. Try once more; if this keeps happening, ask your administrator: "+
			"the identity provider must honour max_age or prompt=login and send auth_time.", maxAge, seen),
		Link: retry,
		Err:  fmt.Errorf("step-up login: auth_time %s (max_age %ds, sub %s)", reason, p.MaxAge, s.Subject)}
}
