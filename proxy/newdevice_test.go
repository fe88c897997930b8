package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const newDeviceYAML = `session:
  new_device: true
headers:
  new_device: X-Gatehouse-New-Device
`

// newDeviceEvents returns the new_device log lines so far.
func newDeviceEvents(e *testenv.Env) []string {
	var out []string
	for line := range strings.SplitSeq(e.Logs.String(), "\n") {
		if strings.Contains(line, `"event":"new_device"`) {
			out = append(out, line)
		}
	}
	return out
}

// TestNewDevice_FirstSignInPerBrowserAndUser: the first sign-in of a user
// in a browser is logged as new_device (with browser, OS and a device
// tag, never the device ID), counted, and told to the app once; signing
// in again from that browser is not; another user in the same browser is.
func TestNewDevice_FirstSignInPerBrowserAndUser(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: newDeviceYAML})
	b := e.NewBrowser()
	relogin := "/_gatehouse/start?rd=%2Fpage"

	if resp := b.Login(testenv.User("alice", "alice@example.com"), "/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first login: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
	}
	ev := newDeviceEvents(e)
	if len(ev) != 1 {
		t.Fatalf("first login of alice in a new browser: %d new_device events, want 1\n%s", len(ev), e.Logs.String())
	}
	for _, want := range []string{`"sub":"alice"`, `"browser":"Go HTTP client"`, `"ip":"127.0.0.1"`, `"device":"`, `"os":"`} {
		if !strings.Contains(ev[0], want) {
			t.Errorf("new_device event lacks %s: %s", want, ev[0])
		}
	}
	device := b.Cookie(e.Gateway.Auth().DeviceCookieName())
	if device == "" {
		t.Fatal("no device cookie after the login")
	}
	if got := e.LastRequest().Header.Get("X-Gatehouse-New-Device"); got != "1" {
		t.Errorf("first request after a new-device login: X-Gatehouse-New-Device %q, want 1", got)
	}
	if n, _ := metricValue(t, e.Gateway, "gatehouse_new_device_logins_total"); n != 1 {
		t.Errorf("gatehouse_new_device_logins_total = %v, want 1", n)
	}
	// The app is told once; a client cannot send the header itself.
	if resp := b.Get("/page", "X-Gatehouse-New-Device", "1", "X-Gatehouse_New_Device", "1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("second request: status %d", resp.StatusCode)
	}
	for k := range e.LastRequest().Header {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Gatehouse-New-Device") {
			t.Errorf("second request carried %s: the notice must come once, and never from the client", k)
		}
	}
	if c := e.LastRequest().Header.Get("Cookie"); strings.Contains(c, e.Gateway.Auth().DeviceCookieName()) {
		t.Errorf("the app received the device cookie: %q", c)
	}

	// Alice again in the same browser: not new.
	if resp := b.Login(testenv.User("alice", "alice@example.com"), relogin); resp.StatusCode != http.StatusOK {
		t.Fatalf("second login: status %d, hops %v", resp.StatusCode, resp.Hops)
	}
	if ev := newDeviceEvents(e); len(ev) != 1 {
		t.Errorf("alice signing in again from the same browser: %d new_device events, want still 1", len(ev))
	}
	if got := e.LastRequest().Header.Get("X-Gatehouse-New-Device"); got != "" {
		t.Errorf("a known browser's login told the app %q", got)
	}

	// Bob in alice's browser: new for bob.
	if resp := b.Login(testenv.User("bob", "bob@example.com"), relogin); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's login: status %d, hops %v", resp.StatusCode, resp.Hops)
	}
	ev = newDeviceEvents(e)
	if len(ev) != 2 || !strings.Contains(ev[1], `"sub":"bob"`) {
		t.Errorf("another user in the same browser: events %v, want a second one for bob", ev)
	}
	// And both are now known in that browser.
	if resp := b.Login(testenv.User("alice", "alice@example.com"), relogin); resp.StatusCode != http.StatusOK {
		t.Fatalf("third alice login: status %d", resp.StatusCode)
	}
	if ev := newDeviceEvents(e); len(ev) != 2 {
		t.Errorf("alice after bob in the same browser: %d events, want 2", len(ev))
	}
	if n, _ := metricValue(t, e.Gateway, "gatehouse_new_device_logins_total"); n != 2 {
		t.Errorf("gatehouse_new_device_logins_total = %v, want 2", n)
	}
	// The same user in another browser is new.
	if resp := e.NewBrowser().Login(testenv.User("alice", "alice@example.com"), "/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("login from a second browser: status %d", resp.StatusCode)
	}
	if ev := newDeviceEvents(e); len(ev) != 3 {
		t.Errorf("alice from a second browser: %d events, want 3", len(ev))
	}
}

// TestNewDevice_TamperedCookie: a device cookie that does not open is a
// new device, logged as such, and never stops the sign-in.
func TestNewDevice_TamperedCookie(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"flipped byte", ""},
		{"garbage", "not-a-sealed-value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testenv.New(t, testenv.Options{YAML: newDeviceYAML})
			b := e.NewBrowser()
			if resp := b.Login(testenv.User("alice", "alice@example.com"), "/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("first login: status %d", resp.StatusCode)
			}
			name := e.Gateway.Auth().DeviceCookieName()
			v := tc.value
			if v == "" {
				orig := b.Cookie(name)
				i := len(orig) / 2
				c := byte('A')
				if orig[i] == 'A' {
					c = 'B'
				}
				v = orig[:i] + string(c) + orig[i+1:]
			}
			b.SetCookie(name, v)
			resp := b.Login(testenv.User("alice", "alice@example.com"), "/_gatehouse/start?rd=%2F")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login with a tampered device cookie: status %d, hops %v\n%s", resp.StatusCode, resp.Hops, resp.Body)
			}
			if ev := newDeviceEvents(e); len(ev) != 2 {
				t.Errorf("login with a tampered device cookie: %d new_device events, want 2 (it counts as new)", len(ev))
			}
			if !strings.Contains(e.Logs.String(), `"event":"device_cookie_invalid"`) {
				t.Errorf("the tampered device cookie was not logged:\n%s", e.Logs.String())
			}
			if nv := b.Cookie(name); nv == "" || nv == v {
				t.Errorf("the device cookie was not replaced: %q", nv)
			}
		})
	}
}
