package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// New-device notice (session.new_device): a sign-in from a browser that
// has not signed in as that user before is logged (event new_device),
// counted, and, with headers.new_device, told to the app on the first
// request after it, so the app can notify the user.
//
// What a browser is: a long-lived device cookie, sealed with gatehouse's
// cookie keys (purpose "device", so it never opens as another cookie),
// holding a random device ID and one-way tags of the subjects that
// signed in with it, most recent first, at most maxDeviceSubjects. No
// server-side state: every replica with the cookie secret reads it.
//
// What it does not do: it is a hint, not proof. A user who clears cookies,
// uses a private window or another browser profile looks new; someone who
// copies the cookie to another machine looks old. A cookie that does not
// open (tampered, sealed with a secret no longer configured, expired) is
// treated as a new device and logged, never refused: the login goes on.
// Subjects never appear in the cookie in clear text, even to whoever holds
// the cookie secret: a tag is a truncated SHA-256 of the device ID, the
// issuer and the subject.

// DeviceTTL is the device cookie's Max-Age: 400 days, the longest
// lifetime browsers grant a cookie (RFC 6265bis §5.5). Each sign-in seals
// it anew, so a browser used within that time stays known.
const DeviceTTL = 400 * 24 * time.Hour

// maxDeviceSubjects bounds the subjects a device cookie remembers: a
// shared machine forgets its oldest user first.
const maxDeviceSubjects = 16

// deviceIDLen and deviceTagLen are the sizes of the random device ID and
// of a subject tag, in bytes.
const (
	deviceIDLen  = 16
	deviceTagLen = 12
)

// deviceRecord is what the device cookie seals.
type deviceRecord struct {
	ID   []byte   `json:"i"` // random, deviceIDLen bytes
	Tags [][]byte `json:"s"` // subject tags, most recent first
}

// DeviceCookieName is the device cookie's name: __Host-<name>_device on
// https (Secure, Path=/, no Domain, whether or not cookie.domain is set:
// a sibling subdomain cannot plant or read it), else <name>_device.
func (a *Authenticator) DeviceCookieName() string {
	if a.secure {
		return "__Host-" + a.cfg.Cookie.Name + "_device"
	}
	return a.cfg.Cookie.Name + "_device"
}

// subjectTag is the one-way tag of a subject in a device's cookie.
func subjectTag(deviceID []byte, issuer, subject string) []byte {
	h := sha256.New()
	h.Write([]byte("gatehouse device subject\x00"))
	h.Write(deviceID)
	h.Write([]byte("\x00" + issuer + "\x00" + subject))
	return h.Sum(nil)[:deviceTagLen]
}

// deviceLogTag names a device in logs without its ID: an operator can
// tell events of one browser apart from another's, and nothing more.
func deviceLogTag(deviceID []byte) string {
	h := sha256.Sum256(append([]byte("gatehouse device log\x00"), deviceID...))
	return hex.EncodeToString(h[:6])
}

// readDevice opens the request's device cookie. It reports whether a
// cookie was there at all, so a tampered one can be told from none.
func (a *Authenticator) readDevice(r *http.Request) (rec deviceRecord, present, ok bool) {
	name := a.device.Name()
	for _, line := range r.Header["Cookie"] {
		v, _, found := nextCookie(line, name)
		if !found {
			continue
		}
		present = true
		b, err := a.device.Open(v)
		if err != nil || json.Unmarshal(b, &rec) != nil || len(rec.ID) != deviceIDLen || len(rec.Tags) > maxDeviceSubjects {
			return deviceRecord{}, true, false
		}
		for _, t := range rec.Tags {
			if len(t) != deviceTagLen {
				return deviceRecord{}, true, false
			}
		}
		return rec, true, true
	}
	return deviceRecord{}, present, false
}

// deviceSeen is the outcome of checking a login's browser.
type deviceSeen struct {
	rec      deviceRecord // the cookie to write, the subject first
	isNew    bool         // the subject had not signed in with this browser
	tampered bool         // a device cookie was there but did not open
}

// checkDevice finds whether s's subject signed in with this browser
// before, and the device record to write back. Nothing is written yet:
// the caller writes the cookie once the session exists.
func (a *Authenticator) checkDevice(r *http.Request, s *sessions.Session) deviceSeen {
	rec, present, ok := a.readDevice(r)
	var d deviceSeen
	if !ok {
		rec = deviceRecord{ID: make([]byte, deviceIDLen)}
		_, _ = rand.Read(rec.ID)
		d.tampered = present
	}
	tag := subjectTag(rec.ID, s.Issuer, s.Subject)
	i := slices.IndexFunc(rec.Tags, func(t []byte) bool { return equalStrings(string(t), string(tag)) })
	d.isNew = i < 0
	if i >= 0 {
		rec.Tags = slices.Delete(rec.Tags, i, i+1)
	}
	rec.Tags = append([][]byte{tag}, rec.Tags...)
	if len(rec.Tags) > maxDeviceSubjects {
		rec.Tags = rec.Tags[:maxDeviceSubjects]
	}
	d.rec = rec
	return d
}

// noteDevice runs the new-device check of a login whose session s is
// about to be stored: it marks s (for headers.new_device) and returns
// what to log and write once the session exists. Nil when
// session.new_device is off.
func (a *Authenticator) noteDevice(r *http.Request, s *sessions.Session) *deviceSeen {
	if !a.cfg.Session.NewDevice {
		return nil
	}
	d := a.checkDevice(r, s)
	s.NewDevice = d.isNew && a.cfg.NewDeviceHeader != ""
	return &d
}

// finishDevice writes the device cookie of a login that created its
// session, and logs and counts a new device.
func (a *Authenticator) finishDevice(w http.ResponseWriter, r *http.Request, s *sessions.Session, d *deviceSeen) {
	if d == nil {
		return
	}
	tag := deviceLogTag(d.rec.ID)
	if d.tampered {
		a.log.Warn("device cookie did not open; treated as a new device", "event", "device_cookie_invalid",
			"request_id", web.RequestID(r), "sub", s.Subject, "device", tag)
	}
	if d.isNew {
		browser, os := ParseUserAgent(s.UserAgent)
		a.log.Info("sign-in from a new device", "event", "new_device", "request_id", web.RequestID(r),
			"sub", s.Subject, "user", s.User, "ip", s.ClientIP, "browser", browser, "os", os, "device", tag,
			"session", s.ID.LogID())
		if o, ok := a.obs.(DeviceObserver); ok {
			o.NewDevice()
		}
	}
	b, err := json.Marshal(d.rec)
	if err != nil {
		return
	}
	v, err := a.device.Seal(b)
	if err != nil {
		a.log.Warn("seal device cookie", "request_id", web.RequestID(r), "err", err)
		return
	}
	a.setCookie(w, a.device.Name(), v, "/", DeviceTTL)
}

// DeviceObserver is told about sign-ins from new devices, for metrics.
// An Observer may implement it.
type DeviceObserver interface {
	NewDevice()
}

// NewDeviceSeen clears s's new-device mark in the store, once the proxy
// has told the app (headers.new_device), so later requests do not repeat
// it. Two requests racing right after the login may both carry the
// header: the notice is at least once, almost always exactly once.
func (a *Authenticator) NewDeviceSeen(r *http.Request, s *sessions.Session) {
	c := s.Clone()
	c.NewDevice = false
	if err := a.store.Replace(r.Context(), c); err != nil {
		a.log.Warn("clear the new-device mark", "request_id", web.RequestID(r), "session", s.ID.LogID(), "err", err)
	}
}
