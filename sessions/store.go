package sessions

import (
	"context"
	"log/slog"
	"time"
)

// Store keeps sessions on the server. Implementations are safe for
// concurrent use. Every method that reads a session enforces idle and
// absolute expiry itself, so no caller can forget to.
type Store interface {
	// Create stores a new session. s.ID, s.Created must be set; its
	// last-seen time is set to s.Created.
	Create(ctx context.Context, s *Session) error

	// Get returns the live session with the ID and records activity
	// (throttled). It returns ErrNotFound, or an *ExpiredError after
	// deleting a session that passed a limit.
	Get(ctx context.Context, id ID) (*Session, error)

	// Replace swaps the stored session that has s.ID for s (after a token
	// refresh), keeping the stored Created and last-seen times. It returns
	// ErrNotFound when that session is gone.
	Replace(ctx context.Context, s *Session) error

	// Delete removes the session; deleting a missing one is not an error.
	Delete(ctx context.Context, id ID) error

	// DeleteByIdPSession removes every session whose IdPSessionID is sid
	// and returns how many it removed (OIDC back-channel logout by sid).
	DeleteByIdPSession(ctx context.Context, sid string) (int, error)

	// DeleteBySubject removes every session of the subject and returns how
	// many it removed (back-channel logout by sub).
	DeleteBySubject(ctx context.Context, subject string) (int, error)

	// DeleteByIdPSessionOfSubject removes every session whose
	// IdPSessionID is sid and whose Subject is subject, checking and
	// deleting each atomically, and returns how many it removed
	// (back-channel logout naming both: a sid alone must not end another
	// user's session).
	DeleteByIdPSessionOfSubject(ctx context.Context, sid, subject string) (int, error)

	// ConsumeState records that a login state was used and reports
	// whether this was its first use within ttl (single use, RFC 9700
	// §4.7.1). The record is kept hashed, apart from the sessions (a
	// flood of logins cannot evict one), and expires after ttl. An error
	// (store unavailable, or the memory store's ErrTooManyLogins) means
	// the login must not go on.
	ConsumeState(ctx context.Context, state string, ttl time.Duration) (first bool, err error)

	// HoldForm keeps a sealed form (session.preserve_posts) under id until
	// ttl passes, apart from the sessions, keyed by a hash of id. It
	// reports false when the store may hold no more forms (the memory
	// store: MaxHeldForms, MaxHeldFormBytes). An error (store
	// unavailable) means the form was not held.
	HoldForm(ctx context.Context, id, sealed []byte, ttl time.Duration) (bool, error)

	// TakeForm removes the form held under id and returns it, or
	// ErrNotFound when none is (never held, expired, taken already). Of
	// two takes of one form, at this replica or another, only one gets
	// it. Any other error is a store failure, never "no form".
	TakeForm(ctx context.Context, id []byte) ([]byte, error)

	// Len returns the number of stored sessions, expired ones not yet
	// swept included.
	Len() int
}

// Admin is what session administration needs of a store: list a user's
// sessions and revoke one by its handle. Both stores implement it.
type Admin interface {
	// ListBySubject describes the live sessions of a subject.
	ListBySubject(ctx context.Context, subject string) ([]Info, error)
	// DeleteByHandle revokes the session with the handle (ID.Handle) and
	// reports whether there was one.
	DeleteByHandle(ctx context.Context, handle string) (bool, error)
}

// Options configures a store's expiry.
type Options struct {
	// IdleTimeout and AbsoluteTimeout are the limits; both must be positive.
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// TouchInterval throttles last-seen updates: at most one per session
	// per interval, so idle expiry is exact to within it. Default 1s.
	TouchInterval time.Duration
	// Now is the clock; default time.Now. Tests move it instead of sleeping.
	Now func() time.Time
	// OnEnd, when set, is called after a session ends other than by an
	// explicit Delete: "idle" or "absolute" expiry, "evicted", or
	// "max_per_user" (a login of the same user beyond MaxPerUser).
	OnEnd func(s *Session, reason string)
	// MaxPerUser bounds the sessions of one subject: a Create beyond it
	// first ends that subject's oldest sessions (by Created), so one
	// account's logins cannot evict other users' sessions. 0: no bound.
	MaxPerUser int
	// AdminKeys seal and open the admin description of a session in
	// stores that encrypt values (redis), the first sealing: 32-byte keys,
	// e.g. derived from the cookie secrets. Without them the redis store
	// cannot list sessions for administration.
	AdminKeys [][]byte
	// MaxUsedStates bounds the memory store's set of used login states
	// (ConsumeState); default DefaultMaxUsedStates. The Redis store keeps
	// them as expiring keys and ignores it.
	MaxUsedStates int
	// Logger receives what a store does by itself in the background (the
	// redis store's retried revocations); default: discard.
	Logger *slog.Logger
	// OnRevocationRetry, when set, is told the outcome of each background
	// retry of a revocation the store could not do at once (redis only):
	// "success", "error" (will retry), "gave_up", "dropped" (not queued:
	// the queue was full or the store closed) or "abandoned" (the store
	// closed with it pending).
	OnRevocationRetry func(outcome string)
	// OnUnavailable, when set, is called for each store I/O that failed
	// (redis: a command or pipeline that returned ErrUnavailable), for
	// gatehouse_redis_errors_total.
	OnUnavailable func()
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TouchInterval <= 0 {
		o.TouchInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}
