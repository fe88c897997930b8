package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// A held form is a browser form POST that arrived without a live session
// (session.preserve_posts). It is kept, sealed, in the session store
// (sessions.Store.HoldForm: the memory store's bounded set, or a Redis key
// that every replica reads) until the user signs in again, then replayed to the app once, and only
// when the new session's subject is the subject of the session that
// expired. What guards it:
//
//   - Cross-site request forgery: only a POST whose Origin is the external
//     origin, or which a browser marked Sec-Fetch-Site: same-origin, is
//     held. A cross-site POST held and replayed after login would be a
//     CSRF with the victim's fresh session.
//   - Another user or browser: the key that opens the form exists only in
//     the login cookie of the browser that sent it (the store keeps the
//     form encrypted with AES-GCM under that key, found by a hash of a
//     random ID); the form names the subject it was sent by, and a login
//     as anyone else drops it.
//   - Replay: the callback takes the form out of the store (one atomic
//     read-and-delete: a lock in memory, GETDEL in Redis) before it
//     replays it, and the login state is
//     single use (consumeState), so a replayed callback finds nothing.
//   - Flooding: held forms live apart from the sessions, bounded in count
//     and bytes (memory) or by Redis's memory; a full store holds no more
//     forms (the POST gets the ordinary login answer) and never evicts a
//     session from the memory store. Each expires with the login state
//     (usedStateTTL).
//   - A store that fails: holding answers with a page saying the form was
//     not kept; taking never reads a failure as "no form" but says the
//     form could not be fetched (fail closed, DESIGN invariant 10).

// heldForm is a POST to replay.
type heldForm struct {
	Subject     string // subject of the session that expired; "" unknown
	Method      string
	URI         string // path and query on the external origin
	ContentType string
	Body        []byte
}

// maxHeldFields bounds each string field of an encoded form.
const maxHeldField = 8 << 10

// encode lays the form out as length-prefixed fields.
func (f *heldForm) encode() []byte {
	n := 5*4 + len(f.Subject) + len(f.Method) + len(f.URI) + len(f.ContentType) + len(f.Body)
	b := make([]byte, 0, n)
	for _, s := range []string{f.Subject, f.Method, f.URI, f.ContentType} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Body)))
	return append(b, f.Body...)
}

var errBadHeldForm = errors.New("held form: malformed")

// decodeHeldForm reads what encode wrote, refusing trailing bytes and
// oversize fields.
func decodeHeldForm(b []byte) (*heldForm, error) {
	var f heldForm
	next := func(limit int) ([]byte, bool) {
		if len(b) < 4 {
			return nil, false
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) || uint64(n) > uint64(limit) {
			return nil, false
		}
		v := b[:n]
		b = b[n:]
		return v, true
	}
	for _, p := range []*string{&f.Subject, &f.Method, &f.URI, &f.ContentType} {
		v, ok := next(maxHeldField)
		if !ok {
			return nil, errBadHeldForm
		}
		*p = string(v)
	}
	body, ok := next(16 << 20)
	if !ok || len(b) != 0 {
		return nil, errBadHeldForm
	}
	f.Body = append([]byte(nil), body...)
	return &f, nil
}

// heldRef is what the login cookie carries of a held form: the ID it is
// stored under and the key that opens it, base64url.
const heldRefLen = 16 + 32

func newHeldRef() (id []byte, key []byte, ref string) {
	b := make([]byte, heldRefLen)
	_, _ = rand.Read(b)
	return b[:16], b[16:], base64.RawURLEncoding.EncodeToString(b)
}

func parseHeldRef(ref string) (id, key []byte, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(ref)
	if err != nil || len(b) != heldRefLen {
		return nil, nil, false
	}
	return b[:16], b[16:], true
}

// sealHeld encrypts the encoded form under key, with id as associated
// data (a blob moved to another ID does not open).
func sealHeld(key, id, plain []byte) ([]byte, error) {
	aead, err := heldAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, id), nil
}

func openHeld(key, id, sealed []byte) ([]byte, error) {
	aead, err := heldAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errBadHeldForm
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], id)
}

func heldAEAD(key []byte) (cipher.AEAD, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(c)
}

// HeldForms returns how many forms the session store holds, for tests:
// the memory store counts them; other stores report -1.
func (a *Authenticator) HeldForms() int {
	if c, ok := a.store.(interface{ HeldForms() int }); ok {
		return c.HeldForms()
	}
	return -1
}

// SetReplay sets how a held form reaches the app after login: the proxy
// judges r (the held POST with the callback's other headers) against its
// routes and policies and forwards it with the identity of s. Without it
// no form is held.
func (a *Authenticator) SetReplay(f func(w http.ResponseWriter, r *http.Request, s *sessions.Session)) {
	a.replay = f
}

// sameOrigin reports whether a POST comes from the external origin: its
// Origin header is that origin, or, without one, the browser marked it
// Sec-Fetch-Site: same-origin. Anything else (another site, another
// subdomain, "null", no signal at all) is treated as cross-site.
func (a *Authenticator) sameOrigin(r *http.Request) bool {
	if o := r.Header.Values("Origin"); len(o) > 0 {
		return len(o) == 1 && o[0] == a.origin && a.sameSite(r)
	}
	return r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// sameSite refuses a request a browser marked as other than same-origin,
// whatever its Origin header says.
func (a *Authenticator) sameSite(r *http.Request) bool {
	v := r.Header.Get("Sec-Fetch-Site")
	return v == "" || v == "same-origin"
}

// holdable reports whether a POST without a session may be held: the
// feature is on, it is a same-origin browser form POST (a navigation) and declares no
// body larger than the limit.
func (a *Authenticator) holdable(r *http.Request) bool {
	if !a.cfg.Session.PreservePosts || a.replay == nil || r.Method != http.MethodPost || !a.sameOrigin(r) {
		return false
	}
	// A form submission navigates; fetch and XHR keep their 401, since
	// a redirect to the identity provider is useless to them.
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" || mode == "" && !web.WantsHTML(r) {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/x-www-form-urlencoded" && mt != "multipart/form-data") {
		return false
	}
	if r.ContentLength > int64(a.cfg.Session.PreservePostsMaxBytes) || len(r.URL.RequestURI()) > maxHeldField {
		return false
	}
	return r.Host == "" || strings.EqualFold(r.Host, a.cfg.External.Host)
}

// HoldForm holds a form POST that came without a live session (lookupErr
// is why) and sends the browser to the identity provider; after the
// login the callback replays it. It reports false, having written
// nothing, when the POST is not to be held (feature off, cross-site, not
// a form, too large, store full, provider unreachable): the caller then
// answers as for any request without a session.
func (a *Authenticator) HoldForm(w http.ResponseWriter, r *http.Request, lookupErr error) bool {
	if !a.holdable(r) {
		return false
	}
	limit := int64(a.cfg.Session.PreservePostsMaxBytes)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil || int64(len(body)) > limit {
		return false
	}
	f := heldForm{Method: r.Method, URI: r.URL.RequestURI(), ContentType: r.Header.Get("Content-Type"), Body: body}
	if len(f.ContentType) > maxHeldField {
		return false
	}
	var ee *sessions.ExpiredError
	if errors.As(lookupErr, &ee) {
		f.Subject = ee.Subject
	}
	d, err := a.idp.get(r.Context())
	if err != nil {
		return false
	}
	id, key, ref := newHeldRef()
	sealed, err := sealHeld(key, id, f.encode())
	if err != nil {
		return false
	}
	held, err := a.store.HoldForm(r.Context(), id, sealed, usedStateTTL)
	if err != nil {
		a.pages.Fail(w, r, a.log, &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Your form could not be kept",
			Detail: "Your session had ended, and gatehouse could not reach its session store to keep the form you sent while you sign in again, so the form was not sent. " +
				"Go back, copy what you wrote, sign in again and send it once more.",
			Link: &web.Link{Text: "Sign in again", URL: StartPath + "?rd=" + urlQueryEscape(a.redirects.Safe(a.returnTarget(r)))},
			Err:  fmt.Errorf("hold form: %w", err)})
		return true
	}
	if !held {
		a.log.Info("form not held: the store holds as many forms as it may", "event", "form_not_held", "request_id", web.RequestID(r))
		return false
	}
	a.endCurrentSession(w, r)
	p := pendingLogin{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Return: a.redirects.Safe(a.returnTarget(r)), Created: a.now().Unix(), Form: ref}
	if err := a.writePending(w, r, a.withPending(r, p)); err != nil {
		_, _ = a.store.TakeForm(r.Context(), id)
		return false
	}
	a.log.Info("form held until sign-in", "event", "form_held", "request_id", web.RequestID(r), "bytes", len(body), "known_user", f.Subject != "")
	w.Header().Set("Cache-Control", "no-store")
	// 303: the browser follows with a GET, never re-posting the body to
	// the identity provider.
	http.Redirect(w, r, a.authURL(d, p), http.StatusSeeOther)
	return true
}

// resubmitForm is a form that sends the held fields again when the user
// presses its button, for a held form whose sender is unknown: only a
// urlencoded form whose fields each appear once (the page's form has one
// hidden input per name) to a path on gatehouse's origin. The browser
// then posts it from gatehouse's own page, with the new session, at the
// user's confirmation. Nil when the form cannot be shown that way.
func resubmitForm(f *heldForm) *web.Form {
	mt, _, err := mime.ParseMediaType(f.ContentType)
	if err != nil || mt != "application/x-www-form-urlencoded" ||
		!strings.HasPrefix(f.URI, "/") || strings.HasPrefix(f.URI, "//") || strings.ContainsAny(f.URI, "\\\r\n") {
		return nil
	}
	q, err := url.ParseQuery(string(f.Body))
	if err != nil || len(q) == 0 || len(q) > 1000 {
		return nil
	}
	fields := make(map[string]string, len(q))
	for k, v := range q {
		if len(v) != 1 {
			return nil
		}
		fields[k] = v[0]
	}
	return &web.Form{Action: f.URI, Button: "Send the form again", Fields: fields}
}

// replayHeld ends a login whose pending login held a form: the form is
// taken out of the store first (once only), then replayed when the new
// session's subject is the one the form was sent by. It reports false
// when the login should end as usual (no form to take: expired, already
// used, or held by another replica on a memory store). A store that
// cannot answer ends the login with a page saying the form was not sent.
func (a *Authenticator) replayHeld(w http.ResponseWriter, r *http.Request, s *sessions.Session, p pendingLogin) (bool, error) {
	id, key, ok := parseHeldRef(p.Form)
	if !ok {
		return false, nil
	}
	next := &web.Link{Text: "Continue", URL: a.redirects.Safe(p.Return)}
	sealed, err := a.store.TakeForm(r.Context(), id)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return false, nil
	case err != nil:
		// Signed in, but the form may still be in the store: say so,
		// never "no form".
		return true, &web.Error{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Title: "Your form could not be resubmitted",
			Detail: "You are signed in, but gatehouse could not reach its session store to fetch the form you sent before signing in, so it was not sent. " +
				"Go back to the page and send it again.", Link: next, Err: fmt.Errorf("take held form: %w", err)}
	}
	plain, err := openHeld(key, id, sealed)
	if err != nil {
		return false, nil
	}
	f, err := decodeHeldForm(plain)
	if err != nil {
		return false, nil
	}
	switch {
	case f.Subject == "":
		a.log.Info("held form dropped: the user of the ended session is unknown", "event", "form_dropped", "reason", "unknown_user", "request_id", web.RequestID(r), "sub", s.Subject)
		page := &web.Error{Status: http.StatusOK, Code: "form_not_resubmitted", Title: "Your form was not resubmitted",
			Detail: "You were signed out before you sent a form, and gatehouse cannot tell that the form was yours, so it was not sent. Go back to the page and send it again.", Link: next}
		if form := resubmitForm(f); form != nil {
			page.Detail = "You were signed out before you sent a form, and gatehouse cannot tell that the form was yours, so it was not sent by itself. " +
				"If you sent it, send it again with the button below, signed in as " + s.User + "; otherwise continue."
			page.Form = form
		}
		return true, page
	case !equalStrings(f.Subject, s.Subject):
		a.log.Info("held form dropped: another user signed in", "event", "form_dropped", "reason", "other_user", "request_id", web.RequestID(r), "sub", s.Subject)
		return true, &web.Error{Status: http.StatusOK, Code: "form_dropped", Title: "Your form was not resubmitted",
			Detail: "A form was sent in this browser by another account before this sign-in. It belonged to that account, so it was discarded and not sent.", Link: next}
	}
	rr := r.Clone(r.Context())
	rr.Method = f.Method
	u, err := rr.URL.Parse(f.URI)
	if err != nil {
		return false, nil
	}
	rr.URL, rr.RequestURI = u, f.URI
	rr.Body = io.NopCloser(strings.NewReader(string(f.Body)))
	rr.ContentLength = int64(len(f.Body))
	rr.Header = r.Header.Clone()
	rr.Header.Del("Content-Length")
	rr.Header.Set("Content-Type", f.ContentType)
	// The form was sent from gatehouse's own origin (checked when held).
	rr.Header.Set("Origin", a.origin)
	rr.Header.Set("Sec-Fetch-Site", "same-origin")
	rr.Header.Del("Referer")
	a.log.Info("held form replayed", "event", "form_replayed", "request_id", web.RequestID(r), "sub", s.Subject, "bytes", len(f.Body))
	a.replay(w, rr, s)
	return true, nil
}
