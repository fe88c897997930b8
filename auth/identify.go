package auth

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/sessions"
)

// ErrNoSession means the request carries no session cookie that opens.
var ErrNoSession = errors.New("no session cookie")

// Session returns the live session of the request: its session cookie
// opened with the cookie keys, then looked up in the store, which enforces
// idle and absolute expiry. Errors: ErrNoSession, sessions.ErrNotFound, an
// *sessions.ExpiredError, or a store failure.
//
// When the request carries several cookies with the session cookie's
// exact name (an old cookie beside a new one, or one set for a parent
// domain), the first that opens to a live session is used, trying at most
// maxSessionCookies; case variants of the name are never read (RFC
// 6265bis: __HOST-x is not __Host-x).
func (a *Authenticator) Session(r *http.Request) (*sessions.Session, error) {
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

// IsNoSession reports whether err says that the request has no session:
// no cookie that opens (ErrNoSession), a session that is not there or
// has expired, one whose refresh the provider rejected, or one whose
// tokens expired while no refresh succeeded (ErrRefreshFailed). Those, and
// only those, get the login. Check sessions.ErrUnavailable first: an
// error may wrap both a rejected refresh and a store that could not end
// the session, and then the store failure is what to answer.
func IsNoSession(err error) bool {
	return errors.Is(err, ErrNoSession) || isNotThere(err) || errors.Is(err, ErrRefreshRejected) ||
		errors.Is(err, ErrRefreshFailed)
}

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
