package auth

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/sessions"
)

// Identify finds who is calling: the one step of the request path that
// turns a request into a session. A machine client's bearer token, when
// bearer tokens are on (bearer.audiences) and the request carries one;
// else the session cookie, looked up in the store (idle and absolute
// expiry enforced there), then refreshed when its access token is due.
// A check that binds a session to the client belongs here too, so that
// proxied requests and forward-auth answers get it alike.
//
// Its errors are of exactly one of these kinds, each tested positively:
//   - errors.Is(err, sessions.ErrUnavailable): the store could not
//     answer; the session may well be live, so never a login (503);
//   - errors.Is(err, ErrNoSession): the request has no session: no
//     cookie that opens, a session not there or expired, or one that a
//     rejected or failed refresh ended (the login challenge);
//   - errors.As(err, new(*BearerError)): a bearer token refused (401 with
//     WWW-Authenticate: Bearer, never a login);
//   - errors.As(err, new(*BindingError)): a session bound to a device
//     without its fresh bound cookie, or one not bound in time under
//     device_binding: require (AnswerBinding: 403 and, for the real
//     browser, a refresh challenge; never a login);
//   - anything else is a fault gatehouse cannot explain (500, never a
//     login): fail closed.
func (a *Authenticator) Identify(r *http.Request) (*sessions.Session, error) {
	if a.BearerEnabled() {
		if _, ok := BearerToken(r); ok {
			return a.BearerSession(r.Context(), r)
		}
	}
	s, err := a.Session(r)
	if err != nil {
		return nil, err
	}
	if err := a.RequireBinding(r, s); err != nil {
		return nil, err
	}
	return a.Refresh(r.Context(), s)
}

// ErrNoSession means the request has no session. Returned alone, it says
// that no session cookie opens; as a kind (errors.Is), it also covers a
// session that is not there or has expired and one that a refresh ended
// (ErrRefreshRejected, ErrRefreshFailed): those, and only those, get the
// login. An error of this kind never wraps sessions.ErrUnavailable.
var ErrNoSession = errors.New("no session cookie")

// noSession gives err the kind ErrNoSession, keeping its message and its
// chain (a *sessions.ExpiredError still names the user). An error that
// says the store could not answer keeps its own kind: a session the store
// could not end is not gone.
func noSession(err error) error {
	if err == nil || errors.Is(err, sessions.ErrUnavailable) || errors.Is(err, ErrNoSession) {
		return err
	}
	return &noSessionError{err}
}

type noSessionError struct{ err error }

func (e *noSessionError) Error() string        { return e.err.Error() }
func (e *noSessionError) Unwrap() error        { return e.err }
func (e *noSessionError) Is(target error) bool { return target == ErrNoSession }

// Session returns the live session of the request: its session cookie
// opened with the cookie keys, then looked up in the store, which enforces
// idle and absolute expiry, and, for a session bound to a device, its
// fresh bound cookie checked (devicebinding.go). Errors: of kind
// ErrNoSession (no cookie that opens, or sessions.ErrNotFound or a
// *sessions.ExpiredError from the store), a *BindingError, or a store
// failure.
//
// When the request carries several cookies with the session cookie's
// exact name (an old cookie beside a new one, or one set for a parent
// domain), the first that opens to a live session is used, trying at most
// maxSessionCookies; case variants of the name are never read (RFC
// 6265bis: __HOST-x is not __Host-x).
func (a *Authenticator) Session(r *http.Request) (*sessions.Session, error) {
	s, err := a.lookupSession(r)
	if err == nil {
		if err = a.checkBound(r, s); err != nil {
			return nil, err
		}
	}
	return s, err
}

// lookupSession is Session without the device binding check, for the
// binding endpoints themselves.
func (a *Authenticator) lookupSession(r *http.Request) (*sessions.Session, error) {
	name := a.cookie.Name()
	tried := 0
	err := ErrNoSession
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && tried < maxSessionCookies; {
			var v string
			var found bool
			v, rest, found = nextCookie(rest, name)
			if !found {
				break
			}
			id, oerr := a.cookie.OpenID(v)
			if oerr != nil {
				continue
			}
			tried++
			s, gerr := a.store.Get(r.Context(), id)
			if gerr == nil {
				return s, nil
			}
			if isNotThere(gerr) {
				gerr = noSession(gerr)
			}
			if lookupRank(gerr) > lookupRank(err) {
				err = gerr // a store failure outranks "not found"
			}
		}
	}
	return nil, err
}

// maxSessionCookies bounds the session cookies one request may make
// gatehouse look up.
const maxSessionCookies = 4

func isNotThere(err error) bool {
	return errors.Is(err, sessions.ErrNotFound) || errors.Is(err, sessions.ErrExpired)
}

// lookupRank orders the errors of looking sessions up, so that Session
// reports the gravest: a store failure, then an error of no known kind,
// then a session that is not there, then no cookie.
func lookupRank(err error) int {
	switch {
	case errors.Is(err, sessions.ErrUnavailable):
		return 3
	case isNotThere(err):
		return 1
	case errors.Is(err, ErrNoSession):
		return 0
	}
	return 2
}

// IsNoSession reports whether err is of the kind ErrNoSession: the
// request has no session, and gets the login. Such an error never says
// that the store could not answer.
func IsNoSession(err error) bool { return errors.Is(err, ErrNoSession) }

func (a *Authenticator) sessionID(r *http.Request) (sessions.ID, bool) {
	ids := a.sessionIDs(r)
	if len(ids) == 0 {
		return sessions.ID{}, false
	}
	return ids[0], true
}

// sessionIDs returns the IDs of the request's session cookies that open,
// at most maxSessionCookies, as Session tries them.
func (a *Authenticator) sessionIDs(r *http.Request) []sessions.ID {
	name := a.cookie.Name()
	var ids []sessions.ID
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && len(ids) < maxSessionCookies; {
			var v string
			var found bool
			v, rest, found = nextCookie(rest, name)
			if !found {
				break
			}
			if id, err := a.cookie.OpenID(v); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}
