package sessions

import (
	"errors"

	"github.com/gatehouse/gatehouse/config"
)

// ErrUnavailable means the session store could not answer (Redis down or
// too slow). Requests then get a 503 page, never a login loop.
var ErrUnavailable = errors.New("session store unavailable")

// Redis is the Redis-backed Store. (Being written.)
type Redis struct{ Store }

// NewRedisFromConfig builds the redis store from its configuration.
func NewRedisFromConfig(cfg config.Session, opts Options) (*Redis, error) {
	return nil, errors.New("sessions: the redis store is not built yet")
}
