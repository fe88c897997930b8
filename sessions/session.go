// Package sessions holds gatehouse's server-side sessions: the Session
// value, the Store interface with its in-memory LRU implementation, idle
// and absolute expiry, and the cookie codec that seals a session ID into
// the browser's cookie.
//
// It knows nothing of HTTP routes or OpenID Connect: the store deals in
// IDs and values, and package auth does the cookie I/O.
package sessions

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// IDBytes is the length of a session ID: 256 bits from crypto/rand (OWASP
// asks for at least 64).
const IDBytes = 32

// ID identifies a session. It is a secret: whoever holds it is signed in.
// It travels only inside the sealed cookie and is never logged; use
// LogID for logs.
type ID [IDBytes]byte

// NewID returns a fresh random session ID.
func NewID() ID {
	var id ID
	// crypto/rand.Read never returns an error on supported platforms and
	// panics rather than return weak randomness.
	_, _ = rand.Read(id[:])
	return id
}

// LogID returns a short, one-way tag of the ID that is safe to log and
// lets an operator correlate log lines of one session.
func (id ID) LogID() string {
	h := sha256.Sum256(id[:])
	return hex.EncodeToString(h[:6])
}

// Handle names a session for administration (list, revoke) without
// revealing its ID: the hex of a one-way hash, the same that names the
// session's key in the redis store.
func (id ID) Handle() string { return lookupDigest(id).hex() }

// Info describes a session for administration; it never holds a token.
type Info struct {
	Handle    string    `json:"handle"`
	Subject   string    `json:"sub"`
	User      string    `json:"user"`
	Email     string    `json:"email,omitempty"`
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"last_seen"`
	ClientIP  string    `json:"client_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	// DeviceBound reports that the session is bound to a browser's
	// device key (session.device_binding).
	DeviceBound bool `json:"device_bound,omitempty"`
}

// Info returns the session's administrative description.
func (s *Session) Info() Info {
	return Info{Handle: s.ID.Handle(), Subject: s.Subject, User: s.User, Email: s.Email,
		Created: s.Created.UTC(), LastSeen: s.LastSeen().UTC(), ClientIP: s.ClientIP, UserAgent: s.UserAgent,
		DeviceBound: s.DeviceKey != ""}
}

// String hides the ID, so that a session ID printed by mistake reveals
// nothing.
func (id ID) String() string { return "sid:" + id.LogID() }

// GoString hides the ID from %#v.
func (id ID) GoString() string { return id.String() }

// Format hides the ID from every fmt verb (%d, %x, %v...).
func (id ID) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(id.String())) }

// LogValue hides the ID from log/slog.
func (id ID) LogValue() slog.Value { return slog.StringValue(id.String()) }

// Session is one signed-in user's server-side state. Its identity and
// token fields do not change after it is stored: a token refresh stores a
// new Session with the same ID and Created. Only the last-seen time
// changes, atomically, so a *Session may be shared between goroutines.
type Session struct {
	ID ID

	// Identity, from the ID token at login.
	Issuer            string
	Subject           string
	User              string // value of the configured user claim
	Email             string // empty unless the provider sent one
	EmailVerified     bool
	Name              string
	PreferredUsername string
	Groups            []string
	// IdPSessionID is the sid claim: the identity provider's session, for
	// back-channel logout. Empty when the provider sends none.
	IdPSessionID string
	// Claims holds the ID token claims that policies look at (only those),
	// as strings: a list claim keeps every element.
	Claims map[string][]string

	// Tokens. They never leave the server.
	IDToken      string
	AccessToken  string
	RefreshToken string
	AccessExpiry time.Time // zero when unknown
	// RefreshAt is when the tokens are due for a refresh, chosen when they
	// were issued (package auth). Zero: session.refresh_before before
	// AccessExpiry (sessions stored by earlier versions).
	RefreshAt time.Time

	// Created is the login time; the absolute lifetime counts from it.
	Created time.Time

	// AuthTime is when the user last signed in at the identity provider
	// (the ID token's auth_time claim). Zero when unknown: the provider
	// sent none, or the session was stored by an earlier version. Routes
	// with max_auth_age treat unknown as too old (fail closed).
	AuthTime time.Time

	// ACR is the authentication context class the identity provider
	// reported at login (the ID token's acr claim, OIDC Core §2), e.g.
	// "mfa". Empty when unknown: routes with acr_values treat it as not
	// meeting any value (fail closed).
	ACR string

	// NewDevice is set on a session whose login came from a browser that
	// had not signed in as its subject before (session.new_device); the
	// proxy tells the app once (headers.new_device) and then clears it.
	NewDevice bool

	// Client facts at login, for session administration: the address
	// gatehouse saw (or a trusted proxy reported) and the User-Agent,
	// bounded.
	ClientIP  string
	UserAgent string

	// DeviceKey is the public key the session is bound to (Device Bound
	// Session Credentials), as its canonical JWK JSON; empty while the
	// session is not bound. Once set, only deleting the session removes
	// it: Replace keeps a stored key when the new value has none, so a
	// token refresh racing a binding cannot unbind the session.
	DeviceKey string
	// BoundAt is when the session was bound; zero while it is not.
	BoundAt time.Time

	lastSeen atomic.Int64 // unix nanoseconds of the last (throttled) touch

	// caches holds what other packages compute from the session (header
	// values, signed assertions), so the hot path does not rebuild it per
	// request: one cell per CacheSlot, replaced, never added to. A
	// refreshed session is a new Session, so caches never outlive the
	// data they derive from, and a configuration reload cannot make them
	// grow.
	caches [cacheSlots]atomic.Value
}

// CacheSlot names one of a session's cache cells. Each belongs to one
// concern of another package, which declares there what it keeps in it
// and for how long; a cell always holds values of one type.
type CacheSlot int

// Cache slots.
const (
	// CacheIdentity is package proxy's identity header values
	// (proxy/headers.go): derived from the session alone, kept for its
	// lifetime.
	CacheIdentity CacheSlot = iota
	// CacheAssertions is package auth's signed identity assertions
	// (auth/assertion.go): a few audiences, each until shortly before its
	// assertion expires, dropped when the signer changes.
	CacheAssertions
	// CacheBindingOffer is package auth's device binding offer
	// (auth/devicebinding.go): the registration header of an unbound
	// session, reused on page loads while its challenge is fresh.
	CacheBindingOffer
	// CacheBindingTag is package auth's device binding tag of a bound
	// session (auth/devicebinding.go): a hash of its ID, kept for its
	// lifetime.
	CacheBindingTag

	cacheSlots
)

// Cached returns the value in slot, nil when it is empty. Safe for
// concurrent use; it neither locks nor allocates.
func (s *Session) Cached(slot CacheSlot) any { return s.caches[slot].Load() }

// SetCached replaces the value in slot. v must be non-nil and of the
// same type as every other value the slot holds.
func (s *Session) SetCached(slot CacheSlot, v any) { s.caches[slot].Store(v) }

// Clone returns a copy of the session's data (not its caches), for a
// refresh to fill in and store with Replace.
func (s *Session) Clone() *Session {
	c := &Session{
		ID: s.ID, Issuer: s.Issuer, Subject: s.Subject, User: s.User, Email: s.Email,
		EmailVerified: s.EmailVerified, Name: s.Name, PreferredUsername: s.PreferredUsername,
		Groups: s.Groups, IdPSessionID: s.IdPSessionID, Claims: s.Claims,
		IDToken: s.IDToken, AccessToken: s.AccessToken, RefreshToken: s.RefreshToken,
		AccessExpiry: s.AccessExpiry, RefreshAt: s.RefreshAt, Created: s.Created, ClientIP: s.ClientIP, UserAgent: s.UserAgent,
		AuthTime: s.AuthTime, ACR: s.ACR, NewDevice: s.NewDevice,
		DeviceKey: s.DeviceKey, BoundAt: s.BoundAt,
	}
	c.lastSeen.Store(s.lastSeen.Load())
	return c
}

// LastSeen returns the time of the session's last recorded activity. It is
// updated at most once per the store's touch interval.
func (s *Session) LastSeen() time.Time { return time.Unix(0, s.lastSeen.Load()) }

// SetLastSeen records activity at t.
func (s *Session) SetLastSeen(t time.Time) { s.lastSeen.Store(t.UnixNano()) }

// DisplayName is what pages show for the user: the preferred username, the
// name, the email or, failing all, the subject.
func (s *Session) DisplayName() string {
	for _, v := range []string{s.PreferredUsername, s.Name, s.Email} {
		if v != "" {
			return v
		}
	}
	return s.Subject
}

// ErrNotFound means no session has the ID: it never existed, was
// revoked, or was evicted.
var ErrNotFound = errors.New("session not found")

// ErrExpired matches every *ExpiredError with errors.Is.
var ErrExpired = errors.New("session expired")

// Limit names the expiry limit a session passed.
type Limit string

// Limits.
const (
	LimitIdle     Limit = "idle"
	LimitAbsolute Limit = "absolute"
)

// ExpiredError reports a session that passed its idle or absolute limit.
// The store has deleted it by the time this error is returned.
type ExpiredError struct {
	Limit Limit
	At    time.Time // when the limit passed
	// Subject is the expired session's subject, for callers that must
	// know whose session ended (a held form replays only to the same
	// user). Never shown to the client.
	Subject string
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("session expired: %s timeout passed at %s", e.Limit, e.At.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrExpired) true.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// checkExpiry returns an *ExpiredError when s has passed a limit at now.
func checkExpiry(s *Session, now time.Time, idle, absolute time.Duration) error {
	if end := s.Created.Add(absolute); !now.Before(end) {
		return &ExpiredError{Limit: LimitAbsolute, At: end, Subject: s.Subject}
	}
	if end := s.LastSeen().Add(idle); !now.Before(end) {
		return &ExpiredError{Limit: LimitIdle, At: end, Subject: s.Subject}
	}
	return nil
}
