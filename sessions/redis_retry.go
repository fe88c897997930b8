package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRetrying is wrapped, beside ErrUnavailable, by the error of a
// revocation (Delete, DeleteBy*, DeleteByHandle) that Redis could not do
// at once and that the store keeps retrying in the background. Without
// it, nothing retries: the caller must say so, or retry itself.
var ErrRetrying = errors.New("the store keeps retrying in the background")

// Bounds of the background retries of revocations. Each revocation is
// retried with a backoff that doubles from retryMinBackoff up to
// retryMaxBackoff, at most retryMaxAttempts times and for at most
// retryMaxFor or the absolute session lifetime, whichever is shorter:
// after that the session has ended anyway, or the operator must act. At
// most retryQueueMax revocations wait at once.
const (
	retryMinBackoff  = 100 * time.Millisecond
	retryMaxBackoff  = 5 * time.Second
	retryMaxFor      = 10 * time.Minute
	retryMaxAttempts = 200
	retryQueueMax    = 10000
)

// Outcomes reported to Options.OnRevocationRetry.
const (
	RetrySuccess   = "success"
	RetryError     = "error"
	RetryGaveUp    = "gave_up"
	RetryDropped   = "dropped"
	RetryAbandoned = "abandoned"
)

// retryQueue holds the revocations a Redis store retries: keyed by what
// they revoke, so that a user pressing "sign out" again adds nothing.
// One goroutine works it while it is not empty, under the store's
// running group, and stops when the store closes.
type retryQueue struct {
	mu      sync.Mutex
	pending map[string]*revocation
	working bool
	kick    chan struct{} // Redis answers again: retry now

	// Bounds, constants but for tests.
	max                    int
	maxFor                 time.Duration
	maxAttempts            int
	minBackoff, maxBackoff time.Duration
}

// revocation is one revocation waiting to be retried. Times are real
// (monotonic) time, not the store's clock: they measure an outage.
type revocation struct {
	op       string // for logs: "delete session", "delete sessions by sid"...
	target   string // for logs: a one-way tag, never an ID
	do       func(context.Context) (int, error)
	first    time.Time
	until    time.Time
	next     time.Time
	backoff  time.Duration
	attempts int
}

func newRetryQueue() *retryQueue {
	return &retryQueue{pending: map[string]*revocation{}, kick: make(chan struct{}, 1),
		max: retryQueueMax, maxFor: retryMaxFor, maxAttempts: retryMaxAttempts,
		minBackoff: retryMinBackoff, maxBackoff: retryMaxBackoff}
}

// revoke runs do, a revocation named key (what it revokes), and, when
// Redis could not answer, queues it for retrying and says so with
// ErrRetrying in the error.
func (r *Redis) revoke(ctx context.Context, op, key, target string, do func(context.Context) (int, error)) (int, error) {
	n, err := do(ctx)
	if err == nil || !errors.Is(err, ErrUnavailable) {
		return n, err
	}
	if r.queueRetry(op, key, target, do, err) {
		return n, fmt.Errorf("%w (%w)", err, ErrRetrying)
	}
	return n, err
}

// queueRetry queues a failed revocation and starts the worker if it is
// not running. It reports false when the revocation could not be queued.
func (r *Redis) queueRetry(op, key, target string, do func(context.Context) (int, error), cause error) bool {
	q := r.retries
	log := r.opts.Logger
	r.mu.Lock()
	defer r.mu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[key]; ok {
		return true // already waiting
	}
	if r.closed || len(q.pending) >= q.max {
		why := "the retry queue is full"
		if r.closed {
			why = "the store is closed"
		}
		log.Error("revocation failed and is not retried: the session stays valid in Redis until it expires or is revoked again",
			"event", "revocation_retry", "outcome", RetryDropped, "op", op, "target", target, "reason", why, "err", cause)
		r.retryOutcome(RetryDropped)
		return false
	}
	now := time.Now()
	rv := &revocation{op: op, target: target, do: do, first: now,
		until: now.Add(min(q.maxFor, r.opts.AbsoluteTimeout)), next: now.Add(q.minBackoff), backoff: q.minBackoff}
	q.pending[key] = rv
	log.Warn("revocation failed; retrying in the background",
		"event", "revocation_retry", "outcome", "queued", "op", op, "target", target,
		"retry_for", rv.until.Sub(now).Round(time.Second), "pending", len(q.pending), "err", cause)
	if !q.working {
		q.working = true
		r.running.Add(1)
		go r.retryLoop()
	}
	return true
}

func (r *Redis) retryOutcome(outcome string) {
	if r.opts.OnRevocationRetry != nil {
		r.opts.OnRevocationRetry(outcome)
	}
}

// kickRetries makes the worker, if working, retry at once: Redis
// answers again.
func (r *Redis) kickRetries() {
	q := r.retries
	q.mu.Lock()
	working := q.working
	q.mu.Unlock()
	if !working {
		return
	}
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// retryLoop retries the queued revocations as they fall due, until the
// queue is empty or the store closes. While Redis fails, one failed
// attempt per round is enough: the others due wait for the next.
func (r *Redis) retryLoop() {
	defer r.running.Done()
	q := r.retries
	timer := time.NewTimer(q.minBackoff)
	defer timer.Stop()
	for {
		if r.closing.Err() != nil {
			r.abandonRetries()
			return
		}
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.working = false
			q.mu.Unlock()
			return
		}
		now := time.Now()
		var due []string
		wake := now.Add(q.maxBackoff)
		for k, rv := range q.pending {
			if !now.Before(rv.next) {
				due = append(due, k)
			} else if rv.next.Before(wake) {
				wake = rv.next
			}
		}
		q.mu.Unlock()
		if len(due) > 0 {
			r.retryDue(due)
			continue
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-r.closing.Done():
			r.abandonRetries()
			return
		case <-q.kick:
			q.mu.Lock()
			for _, rv := range q.pending {
				rv.next = time.Now()
			}
			q.mu.Unlock()
		case <-timer.C:
		}
	}
}

// retryDue attempts the revocations named by keys, stopping at the first
// that Redis cannot answer: that one and the rest back off.
func (r *Redis) retryDue(keys []string) {
	q := r.retries
	log := r.opts.Logger
	for i, k := range keys {
		if r.closing.Err() != nil {
			return // retryLoop abandons what is left
		}
		q.mu.Lock()
		rv := q.pending[k]
		q.mu.Unlock()
		if rv == nil {
			continue
		}
		n, err := rv.do(r.closing)
		now := time.Now()
		rv.attempts++
		q.mu.Lock()
		switch {
		case err == nil:
			delete(q.pending, k)
			q.mu.Unlock()
			log.Info("revocation done after retrying", "event", "revocation_retry", "outcome", RetrySuccess,
				"op", rv.op, "target", rv.target, "attempts", rv.attempts, "after", now.Sub(rv.first).Round(time.Millisecond), "sessions", n)
			r.retryOutcome(RetrySuccess)
			continue
		case !errors.Is(err, ErrUnavailable) || rv.attempts >= q.maxAttempts || !now.Before(rv.until):
			delete(q.pending, k)
			q.mu.Unlock()
			log.Error("revocation abandoned after retrying: the session stays valid in Redis until it expires or is revoked again",
				"event", "revocation_retry", "outcome", RetryGaveUp, "op", rv.op, "target", rv.target,
				"attempts", rv.attempts, "after", now.Sub(rv.first).Round(time.Millisecond), "err", err)
			r.retryOutcome(RetryGaveUp)
			continue
		}
		// Redis still fails: back off this one and those not tried.
		for _, later := range keys[i:] {
			if o := q.pending[later]; o != nil {
				if o == rv {
					o.backoff = min(2*o.backoff, q.maxBackoff)
				}
				o.next = now.Add(o.backoff)
			}
		}
		q.mu.Unlock()
		r.retryOutcome(RetryError)
		return
	}
}

// abandonRetries reports the revocations still pending when the store
// closes.
func (r *Redis) abandonRetries() {
	q := r.retries
	q.mu.Lock()
	left := q.pending
	q.pending = map[string]*revocation{}
	q.working = false
	q.mu.Unlock()
	for _, rv := range left {
		r.opts.Logger.Error("revocation abandoned at shutdown: the session stays valid in Redis until it expires or is revoked again",
			"event", "revocation_retry", "outcome", RetryAbandoned, "op", rv.op, "target", rv.target, "attempts", rv.attempts)
		r.retryOutcome(RetryAbandoned)
	}
}
