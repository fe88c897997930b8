package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/sessions"
)

func newTestAuth(t *testing.T, external, domain string) *Authenticator {
	t.Helper()
	ext, _ := url.Parse(external)
	store, _ := sessions.NewMemory(10, sessions.Options{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour})
	a, err := New(Config{
		External: ext,
		OIDC:     config.OIDC{Issuer: "https://idp.example.com", ClientID: "c", ClientSecret: "s", Timeout: time.Second},
		Cookie:   config.Cookie{Name: "gatehouse", Domain: domain, Keys: [][]byte{[]byte(strings.Repeat("k", 32))}},
		Session:  config.Session{IdleTimeout: time.Hour, AbsoluteTimeout: 8 * time.Hour},
	}, Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSessionCookieAttributes checks design invariant 8 in every setup.
func TestSessionCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		external, domain, name string
		secure                 bool
	}{
		{"https://app.example.com", "", "__Host-gatehouse", true},
		{"https://auth.example.com", "example.com", "__Secure-gatehouse", true},
		{"http://127.0.0.1:4180", "", "gatehouse", false},
	} {
		t.Run(tc.external+" "+tc.domain, func(t *testing.T) {
			a := newTestAuth(t, tc.external, tc.domain)
			c, err := a.SessionCookie(sessions.NewID())
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != tc.name || c.Domain != tc.domain || c.Path != "/" || !c.HttpOnly ||
				c.Secure != tc.secure || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 8*3600 {
				t.Errorf("cookie %+v", c)
			}
			if len(c.Name)+len(c.Value) > 4096 {
				t.Errorf("cookie is %d bytes", len(c.Name)+len(c.Value))
			}
			if strings.HasPrefix(c.Name, "__Host-") && c.Domain != "" {
				t.Error("__Host- cookie with a Domain")
			}
			w := &headerRecorder{h: http.Header{}}
			a.clearSessionCookie(w)
			if got := w.h.Get("Set-Cookie"); !strings.Contains(got, tc.name+"=;") || (tc.domain != "" && !strings.Contains(got, "Domain="+tc.domain)) {
				t.Errorf("clearing sets %q", got)
			}
		})
	}
}

type headerRecorder struct{ h http.Header }

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(int)             {}

// TestSessionCookie_Persistent checks cookie.persistent both ways: by
// default the Set-Cookie line carries Max-Age (the absolute timeout), and
// with persistent false it carries neither Max-Age nor Expires, so the
// browser keeps it only until it closes.
func TestSessionCookie_Persistent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		persistent *bool
		wantMaxAge bool
	}{
		{"default", nil, true},
		{"true", boolPtr(true), true},
		{"false", boolPtr(false), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAuth(t, "https://app.example.com", "")
			a.cfg.Cookie.Persistent = tc.persistent
			c, err := a.SessionCookie(sessions.NewID())
			if err != nil {
				t.Fatal(err)
			}
			line := c.String()
			hasMaxAge := strings.Contains(line, "Max-Age=")
			if hasMaxAge != tc.wantMaxAge || strings.Contains(line, "Expires=") {
				t.Errorf("Set-Cookie %q: Max-Age present %v, want %v; Expires never", line, hasMaxAge, tc.wantMaxAge)
			}
			if tc.wantMaxAge && !strings.Contains(line, "Max-Age=28800") {
				t.Errorf("Set-Cookie %q, want Max-Age=28800", line)
			}
			for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} {
				if !strings.Contains(line, attr) {
					t.Errorf("Set-Cookie %q lacks %s", line, attr)
				}
			}
		})
	}
}

func boolPtr(b bool) *bool { return &b }
