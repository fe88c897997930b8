package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/dbsc"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// Device binding (session.device_binding, W3C Device Bound Session
// Credentials). A browser that binds its session registers a public key
// at DBSCRegisterPath; from then on the session cookie alone never
// suffices: every request needs a bound cookie that gatehouse set at most
// session.device_binding_cookie_ttl ago, and only the browser holding the
// private key can get a new one, at DBSCRefreshPath, by signing a
// single-use challenge. A thief who copied the cookies is refused once
// the bound cookie's server-side expiry passes.
//
// Nothing of it costs a store access on the request path: the bound
// cookie is sealed with the cookie keys (purpose "dbsc bound") and holds
// the session's binding tag and its expiry, so checking it is a MAC check
// (cached per cookie value) on any replica. Challenges are sealed the same
// way (purpose "dbsc challenge", with the tag, an expiry and a nonce) and
// made single use with the store's used-states set, shared in Redis, so a
// replayed challenge fails on every replica.

// Device binding endpoints.
const (
	DBSCRegisterPath = Prefix + "dbsc/register"
	DBSCRefreshPath  = Prefix + "dbsc/refresh"
)

// Device binding modes (session.device_binding).
const (
	BindingOff     = "off"
	BindingPrefer  = "prefer"
	BindingRequire = "require"
)

const (
	// challengeTTL is how long a challenge may be signed after it was
	// issued; browsers sign at once.
	challengeTTL = 2 * time.Minute
	// boundLeeway absorbs the time a request carrying a bound cookie
	// takes to arrive after the browser's copy lapses.
	boundLeeway = 5 * time.Second
	// tagBytes is the length of a binding tag.
	tagBytes = 16
	// bindingSettle is how long after binding a request without a bound
	// cookie still passes: requests the browser sent while it was
	// registering, before it had the cookie. A stale or foreign bound
	// cookie is never let through.
	bindingSettle = 10 * time.Second
	// offerPause is how long after the callback's registration offer
	// pages do not make another (the browser may be registering).
	offerPause = 10 * time.Second
	// maxBoundCookies bounds the bound cookies one request may make
	// gatehouse open.
	maxBoundCookies = 4
)

// binding is an Authenticator's device binding; nil when it is off.
type binding struct {
	mode       string
	endSession bool // device_binding_violation: end_session
	ttl, grace time.Duration
	bound      *sessions.Codec // the bound cookie
	challenges *sessions.Codec
	attrs      string // the bound cookie's attributes, as the browser is told
}

// newBinding sets device binding up, or returns nil when it is off or
// cannot work with this configuration (http, or a cookie shared with
// subdomains: the bound cookie is __Host-).
func newBinding(cfg Config, secure bool) (*binding, error) {
	mode := cfg.Session.DeviceBinding
	if mode == "" || mode == BindingOff || !secure || cfg.Cookie.Domain != "" {
		return nil, nil
	}
	b := &binding{mode: mode, endSession: cfg.Session.DeviceBindingViolation == "end_session",
		ttl: cfg.Session.DeviceBindingCookieTTL, grace: cfg.Session.DeviceBindingGrace,
		attrs: "Path=/; Secure; HttpOnly; SameSite=Lax"}
	if b.ttl <= 0 {
		b.ttl = 5 * time.Minute
	}
	if b.grace <= 0 {
		b.grace = 30 * time.Second
	}
	var err error
	// Expiry is checked against the embedded time (the injected clock),
	// securecookie's own max age only bounds it further.
	if b.bound, err = sessions.NewCodec("__Host-"+cfg.Cookie.Name+"_bound", "dbsc bound", cfg.Cookie.Keys, cfg.Session.AbsoluteTimeout); err != nil {
		return nil, err
	}
	if b.challenges, err = sessions.NewCodec("dbsc-challenge", "dbsc challenge", cfg.Cookie.Keys, 2*challengeTTL); err != nil {
		return nil, err
	}
	return b, nil
}

// DeviceBinding returns the effective device binding mode: off, prefer or
// require (off also when the configuration cannot bind).
func (a *Authenticator) DeviceBinding() string {
	if a.dbsc == nil {
		return BindingOff
	}
	return a.dbsc.mode
}

// BoundCookieName is the bound cookie's name, empty when binding is off.
func (a *Authenticator) BoundCookieName() string {
	if a.dbsc == nil {
		return ""
	}
	return a.dbsc.bound.Name()
}

// bindingTag names a session's binding without revealing its ID: the
// session_identifier the browser is told, and what bound cookies and
// challenges are tied to.
func bindingTag(id sessions.ID) [tagBytes]byte {
	var buf [len("gatehouse dbsc\x00") + sessions.IDBytes]byte
	n := copy(buf[:], "gatehouse dbsc\x00")
	copy(buf[n:], id[:])
	h := sha256.Sum256(buf[:])
	var t [tagBytes]byte
	copy(t[:], h[:])
	return t
}

// cachedBindingTag is bindingTag(s.ID), cached in the session: a bound
// session's every request needs it.
func cachedBindingTag(s *sessions.Session) *[tagBytes]byte {
	if t, ok := s.Cached(sessions.CacheBindingTag).(*[tagBytes]byte); ok {
		return t
	}
	t := bindingTag(s.ID)
	s.SetCached(sessions.CacheBindingTag, &t)
	return &t
}

// BindingID is the session_identifier of a session's browser binding.
func BindingID(id sessions.ID) string {
	t := bindingTag(id)
	return hex.EncodeToString(t[:])
}

// BindingError refuses a request for its device binding: a bound session
// without a fresh bound cookie, or, under device_binding: require, a
// browser session that did not bind in time. It unwraps to the page the
// user sees.
type BindingError struct {
	// Reason is a stable code: missing (no bound cookie), invalid (one
	// that does not open or belongs to another session), stale (past its
	// expiry), unbound (require, not bound within the grace).
	Reason string
	// Ended reports that the session was ended for it
	// (device_binding_violation: end_session).
	Ended bool
	id    sessions.ID
	page  *web.Error
}

func (e *BindingError) Error() string { return "device binding: " + e.Reason }

// Unwrap returns the page.
func (e *BindingError) Unwrap() error { return e.page }

// checkBound lets a bound session through only with a fresh bound cookie
// of its own; unbound sessions, and everything when binding is off, pass.
func (a *Authenticator) checkBound(r *http.Request, s *sessions.Session) error {
	b := a.dbsc
	if b == nil || s.DeviceKey == "" {
		return nil
	}
	now := a.now()
	tag := cachedBindingTag(s)
	reason := "missing"
	tried := 0
	name := b.bound.Name()
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != "" && tried < maxBoundCookies; {
			var v string
			var found bool
			if v, rest, found = nextCookie(rest, name); !found {
				break
			}
			tried++
			// A bound cookie is 32 bytes, as a session ID: OpenID caches
			// it per value, so a request costs one map lookup.
			p, err := b.bound.OpenID(v)
			if err != nil || subtle.ConstantTimeCompare(p[:tagBytes], tag[:]) != 1 {
				if reason == "missing" {
					reason = "invalid"
				}
				continue
			}
			exp := time.Unix(0, int64(binary.BigEndian.Uint64(p[tagBytes:])))
			if now.Before(exp.Add(boundLeeway)) {
				return nil
			}
			reason = "stale"
		}
	}
	if reason == "missing" && now.Before(s.BoundAt.Add(bindingSettle)) {
		return nil
	}
	return a.bindingViolation(r, s, reason)
}

// bindingViolation logs and counts a bound session refused for reason,
// ends it for a stale cookie under device_binding_violation: end_session,
// and returns the error to answer.
func (a *Authenticator) bindingViolation(r *http.Request, s *sessions.Session, reason string) error {
	e := &BindingError{Reason: reason, id: s.ID}
	action := "deny"
	if reason == "stale" && a.dbsc.endSession {
		action = "end_session"
		if err := a.store.Delete(r.Context(), s.ID); err != nil {
			a.log.Warn("device binding violation: could not end the session", "request_id", web.RequestID(r), "session", s.ID.LogID(), "err", err)
		} else {
			e.Ended = true
			a.obs.Logout("device_binding_violation")
		}
	}
	a.log.Warn("device-bound session used without a fresh bound cookie", "event", "device_binding_violation", "reason", reason,
		"action", action, "request_id", web.RequestID(r), "sub", s.Subject, "user", s.User, "session", s.ID.LogID(),
		"client_ip", clientAddr(r), "path", r.URL.Path)
	a.bindingEvent("violation", reason)
	e.page = &web.Error{Status: http.StatusForbidden, Code: "device_binding_" + reason, Title: "Session bound to another browser",
		Detail: "This session is bound to the browser that signed in, and this request did not prove it comes from there. " +
			"If this is your browser, reload the page; if it keeps happening, sign in again.",
		Link: &web.Link{Text: "Sign in again", URL: StartPath + "?rd=" + "/"}}
	if e.Ended {
		e.page.Detail = "This session was bound to the browser that signed in, and was used from elsewhere, so gatehouse ended it. Sign in again."
	}
	return e
}

// clientAddr is the peer address, for the violation's log line.
func clientAddr(r *http.Request) string {
	if i := strings.LastIndexByte(r.RemoteAddr, ':'); i > 0 {
		return r.RemoteAddr[:i]
	}
	return r.RemoteAddr
}

// RequireBinding refuses a browser session that is still unbound
// device_binding_grace after login, under device_binding: require. Call
// it for cookie sessions only: bearer clients are never bound.
func (a *Authenticator) RequireBinding(r *http.Request, s *sessions.Session) error {
	b := a.dbsc
	if b == nil || b.mode != BindingRequire || s.DeviceKey != "" || a.now().Before(s.Created.Add(b.grace)) {
		return nil
	}
	a.bindingEvent("violation", "unbound")
	return &BindingError{Reason: "unbound", id: s.ID, page: &web.Error{Status: http.StatusForbidden, Code: "device_binding_required",
		Title: "This browser cannot bind the session",
		Detail: "This site accepts only sessions bound to the browser (Device Bound Session Credentials), and this browser did not bind " +
			"its session. Use a current Chrome or Edge, or ask your administrator; reload to try again."}}
}

// AnswerBinding answers a request refused with a *BindingError: the page
// (403, or JSON for API clients), with a fresh registration offer for an
// unbound session, or, for a bound one still alive, a challenge its real
// browser can sign at refresh.
func (a *Authenticator) AnswerBinding(w http.ResponseWriter, r *http.Request, err *BindingError) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if a.dbsc != nil {
		switch {
		case err.Reason == "unbound":
			if c, cerr := a.newChallenge(err.id); cerr == nil {
				h.Set(dbsc.RegistrationHeader, dbsc.RegistrationValue(DBSCRegisterPath, c))
			}
		case !err.Ended:
			if c, cerr := a.newChallenge(err.id); cerr == nil {
				h.Set(dbsc.ChallengeHeader, dbsc.ChallengeValue(c, BindingID(err.id)))
			}
		}
	}
	a.pages.Fail(w, r, a.log, err)
}

// OfferBinding offers a browser whose session is not bound yet to bind
// it: a Secure-Session-Registration header with a fresh challenge, on
// page loads only (a challenge costs a seal; other requests have no use
// for it), and never on a navigation from another site: Chromium sends
// the registration that follows such a navigation without the session
// cookie (SameSite=Lax), so it could only fail (measured). When the
// login's callback made an offer (offerAtLogin), pages do not repeat it
// for offerPause, so a browser does not register twice with two keys.
func (a *Authenticator) OfferBinding(w http.ResponseWriter, r *http.Request, s *sessions.Session) {
	if a.dbsc == nil || s.DeviceKey != "" || !IsNavigation(r) || crossSite(r) {
		return
	}
	now := a.now()
	o, _ := s.Cached(sessions.CacheBindingOffer).(*offer)
	if o != nil && now.Before(o.until) {
		if !o.atLogin {
			w.Header()[dbsc.RegistrationHeader] = o.value
		}
		return
	}
	c, err := a.newChallenge(s.ID)
	if err != nil {
		a.log.Warn("device binding: could not make a challenge", "err", err)
		return
	}
	o = &offer{value: []string{dbsc.RegistrationValue(DBSCRegisterPath, c)}, until: now.Add(challengeTTL / 2)}
	s.SetCached(sessions.CacheBindingOffer, o)
	w.Header()[dbsc.RegistrationHeader] = o.value
}

// offer is a session's cached registration offer: a browser that does
// not bind (most) would otherwise cost a sealed challenge per page load.
// The offer is the same for up to half the challenge's lifetime; a
// browser registers at the first one it sees. atLogin marks the
// callback's offer, which pages do not repeat until it lapses.
type offer struct {
	value   []string // the header value, ready to set
	until   time.Time
	atLogin bool
}

// crossSite reports whether a request is a navigation the browser says
// came from another site (Sec-Fetch-Site), such as the return from an
// identity provider on another site: the browser withholds SameSite=Lax
// cookies from the registration it would make.
func crossSite(r *http.Request) bool {
	v := r.Header["Sec-Fetch-Site"]
	return len(v) == 1 && v[0] == "cross-site"
}

// offerAtLogin offers binding to the browser that just signed in, on the
// callback's answer, unless the sign-in came back from another site (the
// identity provider's), where the registration could only fail; then
// the first page load from this site offers it. The offer is remembered
// on the session, so pages served by this replica do not repeat it while
// the browser may be registering (another replica may: a second
// registration then finds the session bound and is refused).
func (a *Authenticator) offerAtLogin(w http.ResponseWriter, r *http.Request, s *sessions.Session) {
	if a.dbsc == nil || crossSite(r) {
		return
	}
	c, err := a.newChallenge(s.ID)
	if err != nil {
		a.log.Warn("device binding: could not make a challenge", "err", err)
		return
	}
	v := []string{dbsc.RegistrationValue(DBSCRegisterPath, c)}
	s.SetCached(sessions.CacheBindingOffer, &offer{value: v, until: a.now().Add(offerPause), atLogin: true})
	w.Header()[dbsc.RegistrationHeader] = v
}

// newChallenge seals a challenge for the session: its tag, an expiry and
// a nonce.
func (a *Authenticator) newChallenge(id sessions.ID) (string, error) {
	var p [tagBytes + 8 + 16]byte
	t := bindingTag(id)
	copy(p[:], t[:])
	binary.BigEndian.PutUint64(p[tagBytes:], uint64(a.now().Add(challengeTTL).UnixNano()))
	_, _ = rand.Read(p[tagBytes+8:])
	return a.dbsc.challenges.Seal(p[:])
}

// errChallenge is a challenge that is not one gatehouse issued for this
// session, unexpired, unused.
var errChallenge = errors.New("challenge not issued for this session, expired or used")

// consumeChallenge checks that c was issued for the session and has not
// expired, then marks it used in the store (single use on every replica).
// A store failure is returned as is.
func (a *Authenticator) consumeChallenge(r *http.Request, c string, id sessions.ID) error {
	p, err := a.dbsc.challenges.Open(c)
	if err != nil || len(p) != tagBytes+8+16 {
		return errChallenge
	}
	t := bindingTag(id)
	if subtle.ConstantTimeCompare(p[:tagBytes], t[:]) != 1 {
		return errChallenge
	}
	if !a.now().Before(time.Unix(0, int64(binary.BigEndian.Uint64(p[tagBytes:])))) {
		return errChallenge
	}
	first, err := a.store.ConsumeState(r.Context(), "dbsc challenge\x00"+c, challengeTTL)
	if err != nil {
		return err
	}
	if !first {
		return errChallenge
	}
	return nil
}

// BoundCookie returns a bound cookie for the session with the ID, fresh
// for session.device_binding_cookie_ttl from now, as the binding endpoints
// set it; load tests and benchmarks use it too. It fails when device
// binding is off.
func (a *Authenticator) BoundCookie(id sessions.ID) (*http.Cookie, error) {
	b := a.dbsc
	if b == nil {
		return nil, errors.New("device binding is off")
	}
	var p sessions.ID // 32 bytes: tag, expiry, 8 random bytes
	t := bindingTag(id)
	copy(p[:], t[:])
	binary.BigEndian.PutUint64(p[tagBytes:], uint64(a.now().Add(b.ttl).UnixNano()))
	_, _ = rand.Read(p[tagBytes+8:])
	v, err := b.bound.SealID(p)
	if err != nil {
		return nil, err
	}
	return &http.Cookie{Name: b.bound.Name(), Value: v, Path: "/", MaxAge: int(b.ttl / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}, nil
}

// setBoundCookie gives the browser a bound cookie for the session.
func (a *Authenticator) setBoundCookie(w http.ResponseWriter, id sessions.ID) error {
	c, err := a.BoundCookie(id)
	if err != nil {
		return err
	}
	http.SetCookie(w, c)
	return nil
}

// clearBoundCookie removes the bound cookie from the browser.
func (a *Authenticator) clearBoundCookie(w http.ResponseWriter) {
	if a.dbsc != nil {
		a.clearCookie(w, a.dbsc.bound.Name(), "/")
	}
}

// BindingObserver is told about device binding events, for metrics:
// event is bound, refresh or violation; reason a stable code.
type BindingObserver interface {
	DeviceBinding(event, reason string)
}

func (a *Authenticator) bindingEvent(event, reason string) {
	if o, ok := a.obs.(BindingObserver); ok {
		o.DeviceBinding(event, reason)
	}
}
