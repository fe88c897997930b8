package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// session.places on the "Your sessions" page: each session's sign-in
// address named by the most specific configured network, looked up when
// the page is shown; nothing for an address in no network.

// xffTransport sends every request as forwarded for ip by the trusted
// proxy in front (the test's loopback peer).
type xffTransport struct{ ip string }

func (t xffTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", t.ip)
	return http.DefaultTransport.RoundTrip(r)
}

// loginFrom signs alice in with a new browser whose address is ip.
func loginFrom(e *testenv.Env, ip string) *testenv.Browser {
	b := e.NewBrowser()
	b.Client.Transport = xffTransport{ip}
	b.Login(testenv.User("alice", "alice@example.com"), "/")
	return b
}

// rawSessions reads the sessions page as JSON, each session as its raw
// fields, so that an omitted field is seen as omitted.
func rawSessions(t *testing.T, b *testenv.Browser) []map[string]any {
	t.Helper()
	r := b.Get("/_gatehouse/sessions", "Accept", "application/json")
	var got struct {
		Sessions []map[string]any `json:"sessions"`
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET sessions (JSON): status %d body %s", r.StatusCode, r.Body)
	}
	if err := json.Unmarshal([]byte(r.Body), &got); err != nil {
		t.Fatalf("sessions JSON %s: %v", r.Body, err)
	}
	return got.Sessions
}

func TestMySessions_Places(t *testing.T) {
	// The /16 comes first: the /24 inside it must still win.
	e := testenv.New(t, testenv.Options{YAML: `trusted_proxies: [127.0.0.1]
session:
  places:
    - network: 10.1.0.0/16
      name: Berlin office
    - network: 10.1.2.0/24
      name: Berlin lab
    - network: 2001:db8:1::/48
      name: Lisbon office
    - network: 198.51.100.7
      name: '<b>VPN</b> & "exit"'
`})
	cases := []struct {
		name, ip, place, html string // html: the place as the page writes it; "" none
	}{
		{"IPv4", "10.1.9.9", "Berlin office", "Berlin office"},
		{"longest prefix", "10.1.2.3", "Berlin lab", "Berlin lab"},
		{"IPv6", "2001:db8:1:ff::7", "Lisbon office", "Lisbon office"},
		{"one address, escaped on the page", "198.51.100.7", `<b>VPN</b> & "exit"`, "&lt;b&gt;VPN&lt;/b&gt; &amp; &#34;exit&#34;"},
		{"IPv4-mapped IPv6 as IPv4", "::ffff:10.1.2.4", "Berlin lab", "Berlin lab"},
		{"no network", "192.0.2.1", "", ""},
		{"IPv6 in no network", "2001:db8:2::1", "", ""},
	}
	var reader *testenv.Browser
	for _, tc := range cases {
		reader = loginFrom(e, tc.ip)
	}

	list := rawSessions(t, reader)
	if len(list) != len(cases) {
		t.Fatalf("%d sessions listed, want %d: %v", len(list), len(cases), list)
	}
	byIP := map[string]map[string]any{}
	for _, s := range list {
		byIP[s["ip"].(string)] = s
	}
	page := reader.Get("/_gatehouse/sessions", "Accept", "text/html")
	if page.StatusCode != http.StatusOK {
		t.Fatalf("sessions page: status %d body %s", page.StatusCode, page.Body)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := byIP[tc.ip]
			if !ok {
				t.Fatalf("no session with ip %s in %v", tc.ip, list)
			}
			place, has := s["place"]
			switch {
			case tc.place == "" && has:
				t.Errorf("JSON session from %s has place %q, want none (omitted)", tc.ip, place)
			case tc.place != "" && place != tc.place:
				t.Errorf("JSON session from %s: place %v, want %q", tc.ip, place, tc.place)
			}
			item := between(page.Body, `data-handle="`+s["handle"].(string)+`"`, "</li>")
			if item == "" {
				t.Fatalf("page lacks the session from %s; body %s", tc.ip, page.Body)
			}
			gotHTML := between(item, `<dd class="place">`, "</dd>")
			if gotHTML != tc.html || (tc.html == "" && strings.Contains(item, "Place")) {
				t.Errorf("page item from %s shows place %q, want %q; item %s", tc.ip, gotHTML, tc.html, item)
			}
		})
	}
}

func TestMySessions_NoPlaces(t *testing.T) {
	e := testenv.New(t, testenv.Options{YAML: "trusted_proxies: [127.0.0.1]\n"})
	b := loginFrom(e, "10.1.2.3")
	loginFrom(e, "2001:db8:1::7")
	for _, s := range rawSessions(t, b) {
		if _, has := s["place"]; has {
			t.Errorf("JSON session %v has a place without session.places", s)
		}
	}
	page := b.Get("/_gatehouse/sessions", "Accept", "text/html")
	if page.StatusCode != http.StatusOK || !strings.Contains(page.Body, `<dd class="ip">10.1.2.3</dd>`) {
		t.Fatalf("sessions page: status %d, want 200 listing 10.1.2.3; body %s", page.StatusCode, page.Body)
	}
	if strings.Contains(page.Body, `class="place"`) || strings.Contains(page.Body, "<dt>Place</dt>") {
		t.Errorf("page shows a place column without session.places: %s", page.Body)
	}
}
