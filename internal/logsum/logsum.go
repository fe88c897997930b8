// Package logsum keeps an outage from flooding the log: a slog.Handler
// wrapper that writes the first of a run of identical warnings in full,
// then, instead of the rest, one line per interval saying how many more
// there were:
//
//	WARN The application is unavailable reason=upstream_unavailable err="dial tcp ...: connection refused" request_id=... path=/a
//	WARN The application is unavailable: 51,000 more in the last 10s reason=upstream_unavailable err=... repeated=51000 interval=10s
//
// Two warnings are identical when their level, message and attributes
// match, leaving out those that name one request or one user
// (request_id, path, method, session, sub...; see volatile) and the local
// address of a connection in an error. Records below WARN pass untouched,
// as do metrics, which count every failure wherever it happens.
package logsum

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults.
const (
	DefaultInterval = 10 * time.Second
	// DefaultMaxKeys bounds the distinct warnings tracked at once; beyond
	// it new kinds are summarised together (memory stays bounded).
	DefaultMaxKeys = 1000
)

// volatile are the attributes that tell one occurrence of a failure from
// another (a request, a user, a session, a moment) rather than the
// failure itself. They stay in a warning's first, full line and out of
// its identity.
var volatile = map[string]bool{
	"request_id": true, "path": true, "method": true, "peer": true, "client_ip": true,
	"session": true, "sub": true, "user": true, "email": true, "duration": true,
	"retry_in": true, "access_expiry": true, "handle": true,
}

// Handler summarises repeated warnings before passing records to the
// handler it wraps. Safe for concurrent use; derived handlers (WithAttrs,
// WithGroup) share its counts.
type Handler struct {
	next   slog.Handler
	s      *state
	prefix string // the identity of the attributes and groups added to this handler
}

type state struct {
	interval time.Duration
	maxKeys  int
	mu       sync.Mutex
	runs     map[string]*run
}

// run is one warning being summarised: the handler and record of its
// first occurrence, and how many more came since the last summary.
type run struct {
	next  slog.Handler
	first slog.Record
	more  int
}

// overflowKey is the run that gathers warnings of kinds beyond maxKeys.
const overflowKey = "\x00overflow"

// New wraps next. interval is the summary period (DefaultInterval when
// 0), maxKeys the bound on distinct warnings tracked (DefaultMaxKeys when
// 0).
func New(next slog.Handler, interval time.Duration, maxKeys int) *Handler {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Handler{next: next, s: &state{interval: interval, maxKeys: maxKeys, runs: map[string]*run{}}}
}

// Enabled reports whether the wrapped handler takes records of level l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs returns a handler whose records carry attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, "", a)
	}
	return &Handler{next: h.next.WithAttrs(attrs), s: h.s, prefix: b.String()}
}

// WithGroup returns a handler whose record attributes go in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), s: h.s, prefix: h.prefix + "[" + name + "]"}
}

// Handle writes r, unless it repeats a warning already written within the
// interval; then it only counts it.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	key := h.key(r)
	s := h.s
	s.mu.Lock()
	if ru := s.runs[key]; ru != nil {
		ru.more++
		s.mu.Unlock()
		return nil
	}
	if len(s.runs) >= s.maxKeys {
		if ru := s.runs[overflowKey]; ru != nil {
			ru.more++
			s.mu.Unlock()
			return nil
		}
		key = overflowKey
	}
	s.runs[key] = &run{next: h.next, first: r.Clone()}
	s.mu.Unlock()
	time.AfterFunc(s.interval, func() { s.summarise(key) })
	return h.next.Handle(ctx, r)
}

// summarise writes how many more of a run came in the last interval and
// keeps counting, or ends the run when none came.
func (s *state) summarise(key string) {
	s.mu.Lock()
	ru := s.runs[key]
	if ru == nil {
		s.mu.Unlock()
		return
	}
	more := ru.more
	if more == 0 {
		delete(s.runs, key)
		s.mu.Unlock()
		return
	}
	ru.more = 0
	s.mu.Unlock()
	time.AfterFunc(s.interval, func() { s.summarise(key) })

	msg := ru.first.Message
	if key == overflowKey {
		msg = "warnings of other kinds"
	}
	r := slog.NewRecord(time.Now(), ru.first.Level, fmt.Sprintf("%s: %s more in the last %s", msg, thousands(more), s.interval), 0)
	if key != overflowKey {
		ru.first.Attrs(func(a slog.Attr) bool {
			if !volatile[a.Key] {
				r.AddAttrs(a)
			}
			return true
		})
	}
	r.AddAttrs(slog.Int("repeated", more), slog.Duration("interval", s.interval))
	_ = ru.next.Handle(context.Background(), r)
}

// key is what makes warnings identical: the handler's own attributes,
// level, message, and the record's attributes but the volatile ones.
func (h *Handler) key(r slog.Record) string {
	var b strings.Builder
	b.WriteString(h.prefix)
	b.WriteString(r.Level.String())
	b.WriteByte('|')
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, "", a)
		return true
	})
	return b.String()
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	if volatile[a.Key] {
		return
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, ga := range v.Group() {
			writeAttr(b, group+a.Key+".", ga)
		}
		return
	}
	s := v.String()
	if a.Key == "err" {
		if e, ok := v.Any().(error); ok {
			s = e.Error()
		}
		s = withoutLocalAddr(s)
	}
	b.WriteByte('|')
	b.WriteString(group + a.Key)
	b.WriteByte('=')
	b.WriteString(s)
}

// withoutLocalAddr drops the local end of a connection from an error
// text ("read tcp 127.0.0.1:51234->10.0.0.5:8080: ..."): it differs on
// every connection.
func withoutLocalAddr(s string) string {
	i := strings.Index(s, "->")
	if i < 0 {
		return s
	}
	j := strings.LastIndexByte(s[:i], ' ')
	return s[:j+1] + s[i+2:]
}

// thousands formats n with commas: 51,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
