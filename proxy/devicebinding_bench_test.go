package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/auth"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/sessions"
)

// bindingBenchGateway is gatehouse on an https external URL in front of
// the canned upstream, with device binding in mode, and alice's session:
// bound to key when key is set. It returns the Cookie header to send.
func bindingBenchGateway(b *testing.B, mode string, key *ecdsa.PrivateKey) (*proxy.Gateway, *sessions.Session, string) {
	b.Helper()
	cfg, err := config.Parse([]byte(`external_url: https://127.0.0.1:4180
upstream: http://127.0.0.1:9
oidc:
  issuer: http://127.0.0.1:1
  client_id: bench
  client_secret: bench
cookie:
  secret: `+strings.Repeat("b", 32)+`
session:
  device_binding: `+mode+`
allow:
  email_domains: [example.com]
`), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Transport: cannedTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	s := &sessions.Session{ID: sessions.NewID(), Subject: "alice", User: "alice", Email: "alice@example.com",
		PreferredUsername: "alice", Groups: []string{"admins", "staff"}, Created: time.Now().Add(-time.Minute)}
	if key != nil {
		pub, _ := key.PublicKey.Bytes()
		s.DeviceKey = `{"crv":"P-256","kty":"EC","x":"` + base64.RawURLEncoding.EncodeToString(pub[1:33]) +
			`","y":"` + base64.RawURLEncoding.EncodeToString(pub[33:]) + `"}`
		s.BoundAt = s.Created
	}
	if err := gw.Store.Create(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	c, err := gw.Auth().SessionCookie(s.ID)
	if err != nil {
		b.Fatal(err)
	}
	cookie := c.Name + "=" + c.Value
	if key != nil {
		bc, err := gw.Auth().BoundCookie(s.ID)
		if err != nil {
			b.Fatal(err)
		}
		cookie += "; " + bc.Name + "=" + bc.Value
	}
	return gw, s, cookie
}

// BenchmarkDeviceBinding is the cost of device binding on an authenticated
// page load through the whole handler (canned upstream): off; prefer with
// an unbound session (each page load carries a registration offer); and a
// bound session (the bound cookie checked). Compare ns/op.
func BenchmarkDeviceBinding(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		mode string
		key  *ecdsa.PrivateKey
	}{
		{"off", "off", nil},
		{"prefer-unbound", "prefer", nil},
		{"bound", "prefer", key},
	} {
		b.Run(tc.name, func(b *testing.B) {
			gw, _, cookie := bindingBenchGateway(b, tc.mode, tc.key)
			benchServe(b, gw.Handler, cookie)
		})
	}
}

// BenchmarkDeviceBindingRefresh is one bound-cookie refresh as a browser
// does it: ask (403 with a challenge), then answer with the signed proof
// (one signature verification, the challenge consumed in the store, a new
// cookie). The browser's signing is not timed.
func BenchmarkDeviceBindingRefresh(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	gw, s, cookie := bindingBenchGateway(b, "prefer", key)
	id := auth.BindingID(s.ID)
	post := func(hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:4180/_gatehouse/dbsc/refresh", nil)
		req.Header.Set("Cookie", cookie)
		req.Header.Set("Sec-Secure-Session-Id", id)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		gw.Handler.ServeHTTP(w, req)
		return w
	}
	b.ReportAllocs()
	for b.Loop() {
		ask := post()
		if ask.Code != http.StatusForbidden {
			b.Fatalf("ask: %d", ask.Code)
		}
		ch := ask.Header().Get("Secure-Session-Challenge")
		ch = ch[1 : strings.IndexByte(ch[1:], '"')+1]
		b.StopTimer()
		signed := proof(b, key, ch, false)
		b.StartTimer()
		if w := post("Secure-Session-Response", signed); w.Code != http.StatusOK {
			b.Fatalf("answer: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkDeviceBindingSession isolates the check itself: finding the
// session of a request (cookie, store, and for a bound session the bound
// cookie), without the proxying around it.
func BenchmarkDeviceBindingSession(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  *ecdsa.PrivateKey
	}{{"unbound", nil}, {"bound", key}} {
		b.Run(tc.name, func(b *testing.B) {
			gw, _, cookie := bindingBenchGateway(b, "prefer", tc.key)
			req := httptest.NewRequest(http.MethodGet, "https://127.0.0.1:4180/app/page", nil)
			req.Header.Set("Cookie", cookie+"; app_pref=dark")
			a := gw.Auth()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Session(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
