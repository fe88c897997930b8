package auth

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Step-up by authentication context (routes[].acr_values): a route may ask
// that the user signed in with one of some authentication context classes,
// e.g. "mfa", at providers that support them. The session records the ID
// token's acr at login; a session whose acr is not one of the route's
// values, or unknown, is sent through a fresh login that asks the provider
// for acr_values (OIDC Core §3.1.2.1), and the callback checks that the
// returned ID token's acr is one of them (§2, §3.1.3.7 (12)). An API
// request gets the RFC 9470 §3 challenge naming acr_values. acr_values is
// a request the provider may ignore, so only the returned acr counts:
// a provider that answers with another acr gets a refusal page, never a
// loop.

// StepUpNeed is what a route asks of a session's sign-in: a recent one
// (MaxAge, routes[].max_auth_age) and one of some authentication context
// classes (ACRValues, routes[].acr_values). The zero value asks nothing.
type StepUpNeed struct {
	MaxAge    time.Duration
	ACRValues []string
}

// Asks reports whether the need asks anything.
func (n StepUpNeed) Asks() bool { return n.MaxAge > 0 || len(n.ACRValues) > 0 }

// Satisfied reports whether the session's sign-in meets the need: recent
// enough, and with one of the acr values. An unknown acr meets none.
func (a *Authenticator) Satisfied(s *sessions.Session, n StepUpNeed) bool {
	if n.MaxAge > 0 && !a.RecentAuth(s, n.MaxAge) {
		return false
	}
	return len(n.ACRValues) == 0 || acrMeets(s.ACR, n.ACRValues)
}

func acrMeets(acr string, values []string) bool {
	return acr != "" && slices.Contains(values, acr)
}

// StepUpLoginURLFor is the URL of a login that asks the provider for the
// sign-in n needs and returns to target.
func (a *Authenticator) StepUpLoginURLFor(target string, n StepUpNeed) string {
	u := a.LoginURL(target)
	if n.MaxAge > 0 {
		u += "&max_age=" + strconv.FormatInt(maxAgeSeconds(n.MaxAge), 10)
	}
	if len(n.ACRValues) > 0 {
		u += "&acr_values=" + url.QueryEscape(strings.Join(n.ACRValues, " "))
	}
	return u
}

// StepUpFor answers a request whose session does not meet the route's
// need: a browser navigation is redirected (302) to a login asking for it
// that returns to the same URL; any other request gets 401 with the RFC
// 9470 challenge.
func (a *Authenticator) StepUpFor(w http.ResponseWriter, r *http.Request, n StepUpNeed) {
	login := a.StepUpLoginURLFor(a.returnTarget(r), n)
	w.Header().Set("Cache-Control", "no-store")
	if IsNavigation(r) {
		w.Header().Set("Location", login)
		w.WriteHeader(http.StatusFound)
		return
	}
	StepUpChallengeFor(w, login, n)
}

// StepUpChallengeFor writes the RFC 9470 §3 answer to an API request whose
// session does not meet n: 401, WWW-Authenticate: Bearer
// error="insufficient_user_authentication" with max_age and acr_values as
// n asks, and a JSON body naming the login URL for a browser.
func StepUpChallengeFor(w http.ResponseWriter, login string, n StepUpNeed) {
	if len(n.ACRValues) == 0 {
		StepUpChallenge(w, login, n.MaxAge)
		return
	}
	acr := strings.Join(n.ACRValues, " ") // validated: no quotes, spaces or backslashes
	challenge := `Bearer realm="gatehouse", error="insufficient_user_authentication", error_description="A stronger sign-in is required", acr_values="` + acr + `"`
	body := map[string]any{
		"error":      "insufficient_user_authentication",
		"message":    "This resource needs a stronger sign-in: open login_url in a browser.",
		"acr_values": acr,
		"login_url":  login,
	}
	if n.MaxAge > 0 {
		s := maxAgeSeconds(n.MaxAge)
		challenge += fmt.Sprintf(", max_age=%d", s)
		body["max_age"] = s
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("WWW-Authenticate", challenge)
	web.WriteJSON(w, http.StatusUnauthorized, body)
}

// maxACRParam bounds the acr_values a login link may carry.
const maxACRParam = 1024

// acrParam reads the acr_values a login was started with ("" for none):
// space-separated values of printable ASCII, as routes[].acr_values
// allows.
func acrParam(q url.Values) (string, error) {
	v := q.Get("acr_values")
	if v == "" {
		return "", nil
	}
	fields := strings.Fields(v)
	if len(v) > maxACRParam || len(fields) == 0 || len(fields) > 10 ||
		strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r >= 0x7f || r == '"' || r == '\\' }) {
		return "", &web.Error{Status: http.StatusBadRequest, Code: "bad_acr_values", Title: "Invalid sign-in link",
			Detail: "The sign-in link asks for acr_values that gatehouse does not accept: at most 10 space-separated values of printable ASCII. Open the page you wanted again."}
	}
	return strings.Join(fields, " "), nil
}

// stepUpQuery is the part of a login link that repeats a step-up's asks.
func stepUpQuery(p pendingLogin) string {
	q := ""
	if p.MaxAge > 0 {
		q += "&max_age=" + strconv.FormatInt(p.MaxAge, 10)
	}
	if p.ACR != "" {
		q += "&acr_values=" + url.QueryEscape(p.ACR)
	}
	return q
}

// checkACR refuses the login of a step-up that asked for acr_values (p.ACR
// set) when the ID token's acr is none of them: the provider ignored the
// request or could not meet it. The answer is a page, never another
// redirect; no session is created.
func (a *Authenticator) checkACR(p pendingLogin, s *sessions.Session, retry *web.Link) error {
	if p.ACR == "" || acrMeets(s.ACR, strings.Fields(p.ACR)) {
		return nil
	}
	seen := "did not say how you signed in (no acr claim)"
	if s.ACR != "" {
		seen = fmt.Sprintf("reported a sign-in of class %q", s.ACR)
	}
	return &web.Error{Status: http.StatusForbidden, Code: "acr_not_met", Title: "A stronger sign-in is required",
		Detail: fmt.Sprintf("This page needs a sign-in of class %s (for example with a second factor), so gatehouse asked the identity provider for it, "+
			"but it %s. You are signed out of gatehouse. Try once more; if this keeps happening, ask your administrator: "+
			"the identity provider must support acr_values and return one of them in the acr claim.", quoteList(strings.Fields(p.ACR)), seen),
		Link: retry,
		Err:  fmt.Errorf("step-up login: acr %q is not one of %q (sub %s)", s.ACR, p.ACR, s.Subject)}
}

func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, " or ")
}
