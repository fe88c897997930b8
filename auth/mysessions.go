package auth

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// SessionsPath is the "Your sessions" page (session.self_service).
const SessionsPath = Prefix + "sessions"

// selfService reports whether session.self_service is on (the default).
func (a *Authenticator) selfService() bool {
	return a.cfg.Session.SelfService == nil || *a.cfg.Session.SelfService
}

// SessionsURL is the "Your sessions" page's path, or "" when it is off.
func (a *Authenticator) SessionsURL() string {
	if !a.selfService() {
		return ""
	}
	return SessionsPath
}

// sessionsLink is the link to the "Your sessions" page, nil when it is off.
func (a *Authenticator) sessionsLink() *web.Link {
	if !a.selfService() {
		return nil
	}
	return &web.Link{Text: "Your sessions", URL: SessionsPath}
}

// UserSession is one of a user's sessions as /_gatehouse/sessions
// answers it in JSON: never the session ID or a token. Handle names the
// session for signing it out.
type UserSession struct {
	Handle     string    `json:"handle"`
	Browser    string    `json:"browser"`
	OS         string    `json:"os"`
	IP         string    `json:"ip,omitempty"`
	Place      string    `json:"place,omitempty"` // session.places: IP's network's name; omitted when none
	SignedIn   time.Time `json:"signed_in"`
	LastActive time.Time `json:"last_active"`
	ThisDevice bool      `json:"this_device"`
	// DeviceBound: the session is bound to its browser's key
	// (session.device_binding).
	DeviceBound bool `json:"device_bound"`
}

// handleMySessions answers GET /_gatehouse/sessions: the signed-in
// user's live sessions across devices, as a page with sign-out buttons
// or, for Accept: application/json, as JSON.
func (a *Authenticator) handleMySessions(w http.ResponseWriter, r *http.Request) error {
	s, err := a.selfServiceSession(w, r)
	if s == nil {
		return err
	}
	list, err := a.listOwn(w, r, s)
	if err != nil {
		return err
	}
	if wantsJSON(r) {
		web.WriteJSON(w, http.StatusOK, map[string]any{"sub": s.Subject, "user": s.User, "sessions": list})
		return nil
	}
	items := make([]web.SessionItem, 0, len(list))
	others := 0
	for _, u := range list {
		if !u.ThisDevice {
			others++
		}
		items = append(items, web.SessionItem{Handle: u.Handle, Browser: u.Browser, OS: u.OS, IP: orDash(u.IP), Place: u.Place,
			SignedIn: shownTime(u.SignedIn), LastActive: shownTime(u.LastActive), ThisDevice: u.ThisDevice,
			DeviceBound: u.DeviceBound})
	}
	detail := fmt.Sprintf("You are signed in as %s, with %d active %s. Sign out any you do not recognise.", whoText(s), len(list), plural(len(list), "session", "sessions"))
	if n, err := strconv.Atoi(r.URL.Query().Get("ended")); err == nil && n >= 0 {
		detail = fmt.Sprintf("Signed out of %d other %s. %s", n, plural(n, "session", "sessions"), detail)
	}
	a.pages.Render(w, web.Page{
		Status: http.StatusOK, Title: "Your sessions", Detail: detail,
		Sessions: &web.SessionList{Action: a.origin + SessionsPath, CSRF: a.csrfToken(s.ID), Items: items, Others: others},
		Link:     &web.Link{Text: "Sign out of this device", URL: LogoutPath},
	}, a.formOrigins()...)
	return nil
}

// handleEndMySessions answers POST /_gatehouse/sessions: with handle=H it
// ends that one of the user's sessions, with others=1 every session of
// the user but this one. The post must come from gatehouse's own form:
// Origin, when sent, is gatehouse's, and the CSRF token is the one bound
// to this session (the sign-out form's). A handle that is not one of the
// signed-in user's own sessions is refused and nothing ends: a user can
// end only their own sessions. Each end goes through the store's
// revocation (redis: deleted and announced to every replica), and a
// store error is a 503, never "signed out".
func (a *Authenticator) handleEndMySessions(w http.ResponseWriter, r *http.Request) error {
	back := &web.Link{Text: "Your sessions", URL: SessionsPath}
	if err := a.parseOwnForm(w, r,
		&web.Error{Status: http.StatusForbidden, Code: "cross_site", Title: "Sign-out refused",
			Detail: "The request came from another site. Use the buttons on the Your sessions page.", Link: back},
		&web.Error{Status: http.StatusBadRequest, Code: "bad_form", Title: "Form unreadable",
			Detail: "Use the buttons on the Your sessions page.", Link: back}); err != nil {
		return err
	}
	s, err := a.selfServiceSession(w, r)
	if s == nil {
		return err
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(a.csrfToken(s.ID))) {
		return &web.Error{Status: http.StatusForbidden, Code: "csrf", Title: "Sign-out not confirmed",
			Detail: "The form was not gatehouse's own. Use the buttons on the Your sessions page.",
			Link:   &web.Link{Text: "Your sessions", URL: SessionsPath}}
	}
	list, err := a.listOwn(w, r, s)
	if err != nil {
		return err
	}
	targets, err := pickTargets(list, r.PostForm.Get("handle"), r.PostForm.Get("others") != "")
	if err != nil {
		return err
	}
	admin := a.store.(sessions.Admin) // listOwn checked
	ended := 0
	for _, h := range targets {
		found, err := admin.DeleteByHandle(r.Context(), h)
		if err != nil {
			w.Header().Set("Retry-After", retryAfter)
			detail := fmt.Sprintf("gatehouse could not reach its session store, so it cannot confirm that the session ended (%d of %d confirmed). Try again in a moment.", ended, len(targets))
			if errors.Is(err, sessions.ErrRetrying) {
				detail += " gatehouse keeps trying in the background."
			}
			return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Sign-out not confirmed",
				Detail: detail,
				Link:   &web.Link{Text: "Your sessions", URL: SessionsPath}, Err: err}
		}
		if found {
			ended++
			a.obs.Logout("user_other")
		}
	}
	a.log.Info("sessions ended by their user", "event", "logout", "reason", "user_other", "request_id", web.RequestID(r),
		"sub", s.Subject, "user", s.User, "session", s.ID.LogID(), "sessions", ended)
	if wantsJSON(r) {
		web.WriteJSON(w, http.StatusOK, map[string]any{"ended": ended})
		return nil
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, fmt.Sprintf("%s?ended=%d", SessionsPath, ended), http.StatusSeeOther)
	return nil
}

// pickTargets returns the handles a post asks to end: one of the user's
// other sessions (handle), or all of them (others). A handle that is not
// among the user's own sessions is refused.
func pickTargets(list []UserSession, handle string, others bool) ([]string, error) {
	var out []string
	for _, u := range list {
		switch {
		case others && !u.ThisDevice:
			out = append(out, u.Handle)
		case !others && handle != "" && u.Handle == handle:
			if u.ThisDevice {
				return nil, &web.Error{Status: http.StatusBadRequest, Code: "this_device", Title: "This is your current session",
					Detail: "To end the session of this browser, use Sign out.", Link: &web.Link{Text: "Sign out", URL: LogoutPath}}
			}
			return []string{u.Handle}, nil
		}
	}
	if !others {
		// Unknown, already ended, or another user's: the same answer, so
		// the page tells nothing about sessions that are not the user's.
		return nil, &web.Error{Status: http.StatusNotFound, Code: "not_found", Title: "No such session",
			Detail: "None of your sessions has this name; it may have ended already.", Link: &web.Link{Text: "Your sessions", URL: SessionsPath}}
	}
	return out, nil
}

// selfServiceSession finds the request's session for the sessions page.
// Without one it answers itself (the login challenge) and returns nil,
// nil; a store it cannot read is an error (fail closed).
func (a *Authenticator) selfServiceSession(w http.ResponseWriter, r *http.Request) (*sessions.Session, error) {
	s, err := a.Session(r)
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, sessions.ErrUnavailable):
		return nil, storeUnavailable(w, err)
	case IsNoSession(err):
		a.Challenge(w, r)
		return nil, nil
	}
	return nil, err
}

// listOwn lists the live sessions of s's user, newest sign-in last.
func (a *Authenticator) listOwn(w http.ResponseWriter, r *http.Request, s *sessions.Session) ([]UserSession, error) {
	admin, ok := a.store.(sessions.Admin)
	if !ok {
		return nil, &web.Error{Status: http.StatusNotImplemented, Code: "unsupported", Title: "Not available",
			Detail: "This session store cannot list sessions."}
	}
	infos, err := admin.ListBySubject(r.Context(), s.Subject)
	if err != nil {
		return nil, storeUnavailable(w, err)
	}
	me := s.ID.Handle()
	where := newPlaces(a.cfg.Session.Places)
	out := make([]UserSession, 0, len(infos))
	for _, in := range infos {
		if in.Subject != s.Subject { // the stores index by subject; check anyway
			continue
		}
		b, o := ParseUserAgent(in.UserAgent)
		out = append(out, UserSession{Handle: in.Handle, Browser: b, OS: o, IP: in.ClientIP, Place: where.name(in.ClientIP),
			SignedIn: in.Created, LastActive: in.LastSeen, ThisDevice: in.Handle == me, DeviceBound: in.DeviceBound})
	}
	return out, nil
}

// storeUnavailable is the answer when the store cannot be read: 503,
// never an empty list or "no session" (fail closed).
func storeUnavailable(w http.ResponseWriter, err error) error {
	w.Header().Set("Retry-After", retryAfter)
	return &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Session store unavailable",
		Detail: "gatehouse cannot read your sessions right now. Try again in a moment.", Err: err}
}

// wantsJSON reports whether the client asked for JSON rather than a page.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json") && !web.WantsHTML(r)
}

func shownTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func orDash(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
