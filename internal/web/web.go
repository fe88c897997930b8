// Package web renders gatehouse's own pages (errors, sign-out, 403) and
// maps handler errors to a status, a short page and a request ID, logging
// the detail. Users read what happened and what to do next, never an
// internal error text, a token or a stack trace.
package web

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Link is a call to action on a page.
type Link struct {
	Text string
	URL  string
}

// Form is a one-button POST form on a page (sign out).
type Form struct {
	Action string
	Button string
	Fields map[string]string // hidden fields
}

// Error is a failure a user sees. Status, Title and Detail are public;
// Err is the internal cause, logged with the request ID and never shown.
type Error struct {
	Status int
	Title  string // short, e.g. "Sign-in expired"
	Detail string // what happened and what to do next
	Link   *Link
	Form   *Form
	Err    error
	// Code is a stable machine-readable reason for JSON answers, e.g.
	// "login_expired".
	Code string
	// Identity, when set, is who gatehouse saw the user as (a 403), shown
	// on the page and in the JSON answer so the user can tell why.
	Identity *Identity
}

// Identity is a user as gatehouse saw them, for a refusal page: never a
// token. The caller bounds it (a few groups, short values); the template
// escapes it.
type Identity struct {
	User   string   `json:"user"`
	Email  string   `json:"email"` // a verified email, or a note that there is none
	Groups []string `json:"groups"`
	// MoreGroups counts groups left out of Groups to keep it short.
	MoreGroups int `json:"more_groups,omitempty"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Err.Error()
	}
	return e.Title
}

func (e *Error) Unwrap() error { return e.Err }

// Code returns the stable reason of err for logs: the Code of the *Error
// it wraps, or "internal" when it wraps none.
func Code(err error) string {
	if e, ok := errors.AsType[*Error](err); ok && e.Code != "" {
		return e.Code
	}
	return "internal"
}

// Page is the data of one of gatehouse's HTML pages.
type Page struct {
	Status    int
	Title     string
	Detail    string
	Link      *Link
	Form      *Form
	Identity  *Identity
	RequestID string
	// Sessions, when set, lists a user's sessions, each with its own
	// sign-out form (the "Your sessions" page).
	Sessions *SessionList
}

// SessionList is a user's sessions as the "Your sessions" page shows
// them. Every value is text, escaped by the template.
type SessionList struct {
	Action string // where the sign-out forms post
	CSRF   string // the forms' CSRF token
	Items  []SessionItem
	// Others counts the sessions other than this device's: with any,
	// the page offers to sign them all out.
	Others int
}

// SessionItem is one session on the "Your sessions" page.
type SessionItem struct {
	Handle     string
	Browser    string
	OS         string
	IP         string
	Place      string // the network IP lies in (session.places); "" shows no place
	SignedIn   string
	LastActive string
	ThisDevice bool
	// DeviceBound: the session is bound to its browser's key.
	DeviceBound bool
}

// bodyTmpl is the body of every gatehouse page, inside the layout (see
// page.go): what happened, what to do, the request ID.
var bodyTmpl = template.Must(layoutTmpl.New("body").Parse(`
<h1 id="title">{{.Title}}</h1>
<p id="detail">{{.Detail}}</p>
{{with .Identity}}<dl id="identity"><dt>User</dt><dd id="identity-user">{{.User}}</dd><dt>Email</dt><dd id="identity-email">{{.Email}}</dd><dt>Groups</dt><dd id="identity-groups">{{range $i, $g := .Groups}}{{if $i}}, {{end}}<code>{{$g}}</code>{{else}}none{{end}}{{with .MoreGroups}} and {{.}} more{{end}}</dd></dl>{{end}}
{{with .Form}}<form method="post" action="{{.Action}}">{{range $k, $v := .Fields}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}<button type="submit" id="form-submit">{{.Button}}</button></form>{{end}}
{{with .Sessions}}{{$l := .}}<ul id="sessions">{{range .Items}}<li class="session{{if .ThisDevice}} this-device{{end}}" data-handle="{{.Handle}}"><dl><dt>Browser</dt><dd class="browser">{{.Browser}} on {{.OS}}{{if .ThisDevice}} <strong class="current">(this device)</strong>{{end}}</dd><dt>IP address</dt><dd class="ip">{{.IP}}</dd>{{with .Place}}<dt>Place</dt><dd class="place">{{.}}</dd>{{end}}<dt>Signed in</dt><dd class="signed-in">{{.SignedIn}}</dd><dt>Last active</dt><dd class="last-active">{{.LastActive}}</dd>{{if .DeviceBound}}<dt>Binding</dt><dd class="device-bound">device-bound to this browser's key</dd>{{end}}</dl>{{if not .ThisDevice}}<form method="post" action="{{$l.Action}}"><input type="hidden" name="csrf" value="{{$l.CSRF}}"><input type="hidden" name="handle" value="{{.Handle}}"><button type="submit">Sign out this session</button></form>{{end}}</li>{{end}}</ul>
{{if .Others}}<form method="post" action="{{.Action}}" id="others"><input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="others" value="1"><button type="submit" id="others-submit">Sign out all other sessions</button></form>{{end}}{{end}}
{{with .Link}}<p><a class="button" id="action" href="{{.URL}}">{{.Text}}</a></p>{{end}}
{{with .RequestID}}<p class="rid">Request ID: <code id="request-id">{{.}}</code></p>{{end}}
`))

// SecurityHeaders sets the headers every gatehouse page carries: no
// caching (responses may concern a session), a strict content security
// policy (no script, no external resource, only gatehouse's own
// stylesheet by its hash), no framing, no MIME sniffing, no referrer.
// formOrigins are extra origins forms may post to.
func SecurityHeaders(h http.Header, formOrigins ...string) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	csp := pageCSP
	for _, o := range formOrigins {
		csp += " " + o
	}
	h.Set("Content-Security-Policy", csp)
}

// WantsHTML reports whether the client reads pages (a browser) rather
// than JSON: its Accept header names text/html.
func WantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// WriteJSON writes v as JSON with the status and no-store caching.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Request IDs are a random 8-byte prefix, drawn once per process, and a
// counter: unique, cheap (one allocation), and not secrets.
var (
	ridPrefix  = newRIDPrefix()
	ridCounter atomic.Uint64
)

func newRIDPrefix() [8]byte {
	var b [4]byte
	_, _ = rand.Read(b[:])
	var p [8]byte
	hex.Encode(p[:], b[:])
	return p
}

// NewRequestID returns a fresh request ID: 16 hex digits.
func NewRequestID() string { return NewRequestIDValue()[0] }

// ridBox holds a request ID and the one-element slice a header map needs,
// in one allocation.
type ridBox struct {
	v [1]string
	b [16]byte
}

// NewRequestIDValue returns a fresh request ID as a header value (a
// one-element slice), made with a single allocation: it is on every
// request's path.
func NewRequestIDValue() []string {
	box := new(ridBox)
	copy(box.b[:8], ridPrefix[:])
	n := uint32(ridCounter.Add(1))
	const digits = "0123456789abcdef"
	for i := 15; i >= 8; i-- {
		box.b[i] = digits[n&0xf]
		n >>= 4
	}
	// The bytes never change after this point, so the string may share
	// them.
	box.v[0] = unsafe.String(&box.b[0], len(box.b))
	return box.v[:]
}

// ValidRequestID reports whether a request ID from a trusted proxy may be
// kept: 1 to 128 characters of letters, digits and -_.:
func ValidRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// RequestIDHeader carries the request ID to the upstream and back to the
// client, in its canonical form (a key of http.Header).
const RequestIDHeader = "X-Request-Id"

// RequestID returns the request's ID (gatehouse sets X-Request-Id on
// every request it serves), or a fresh one.
func RequestID(r *http.Request) string {
	if v := r.Header[RequestIDHeader]; len(v) == 1 && v[0] != "" {
		return v[0]
	}
	return NewRequestID()
}

// Fail answers a request with err: a *Error's status, page (or JSON for
// API clients) and request ID; anything else is a 500 with a generic
// page. The detail goes to the log, at WARN for 5xx and INFO otherwise. An
// Identity goes into the page and the JSON answer.
func (p *Pages) Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, formOrigins ...string) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Title: "Something went wrong",
			Detail: "gatehouse could not complete this request. Try again; if it keeps happening, tell your administrator the request ID below.",
			Code:   "internal_error", Err: err}
	}
	rid := RequestID(r)
	level := slog.LevelInfo
	if e.Status >= 500 {
		level = slog.LevelWarn
	}
	if log != nil {
		attrs := []any{"request_id", rid, "status", e.Status, "method", r.Method, "path", r.URL.Path, "reason", e.Code}
		if e.Err != nil {
			attrs = append(attrs, "err", e.Err.Error())
		}
		log.Log(r.Context(), level, e.Title, attrs...)
	}
	if !WantsHTML(r) {
		body := map[string]any{"error": e.Code, "message": e.Title + ". " + e.Detail, "request_id": rid}
		if e.Identity != nil {
			body["identity"] = e.Identity
		}
		WriteJSON(w, e.Status, body)
		return
	}
	p.Render(w, Page{Status: e.Status, Title: e.Title, Detail: e.Detail, Link: e.Link, Form: e.Form, Identity: e.Identity, RequestID: rid}, formOrigins...)
}

// HandlerFunc is an http handler that returns an error; Pages.Adapt turns
// it into an http.Handler that answers errors with Fail.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Adapt wraps h so that a returned error is answered with Fail.
func (p *Pages) Adapt(log *slog.Logger, h HandlerFunc, formOrigins ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			p.Fail(w, r, log, err, formOrigins...)
		}
	})
}
