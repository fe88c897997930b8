package web

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// render renders pg with p and returns the response.
func render(t *testing.T, p *Pages, pg Page, formOrigins ...string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	p.Render(w, pg, formOrigins...)
	return w
}

func TestPages_CSPAllowsOnlyItsOwnStylesheet(t *testing.T) {
	w := render(t, NewPages(""), Page{Status: http.StatusForbidden, Title: "You do not have access", Detail: "d",
		Form: &Form{Action: "https://app.example.com/_gatehouse/logout", Button: "Sign out", Fields: map[string]string{"csrf": "x"}}},
		"https://app.example.com", "https://sso.example.com")
	body := w.Body.String()
	_, rest, ok := strings.Cut(body, "<style>")
	css, _, ok2 := strings.Cut(rest, "</style>")
	if !ok || !ok2 || strings.Count(body, "<style") != 1 {
		t.Fatalf("want exactly one inline <style> element:\n%s", body)
	}
	sum := sha256.Sum256([]byte(css))
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	csp := w.Header().Get("Content-Security-Policy")
	want := "default-src 'none'; style-src " + hash + "; frame-ancestors 'none'; base-uri 'none'; form-action 'self' https://app.example.com https://sso.example.com"
	if csp != want {
		t.Errorf("Content-Security-Policy:\n got %s\nwant %s", csp, want)
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "script-src", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("Content-Security-Policy %q contains %q", csp, bad)
		}
	}
	for _, bad := range []string{"<script", " style=", "<link", "<img", "http://", "@import", "url("} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q, which the CSP blocks or which loads an outside asset:\n%s", bad, body)
		}
	}
}

func TestPages_Title(t *testing.T) {
	for _, tc := range []struct {
		name, title, want string
	}{
		{"default", "", "gatehouse"},
		{"set", "Team wiki", "Team wiki"},
		{"markup is text", `Team <b>wiki</b> & "co"`, "Team &lt;b&gt;wiki&lt;/b&gt; &amp; &#34;co&#34;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := render(t, NewPages(tc.title), Page{Status: 200, Title: "You are signed out", Detail: "d"}).Body.String()
			for _, want := range []string{
				"<title>You are signed out · " + tc.want + "</title>",
				`<span id="site">` + tc.want + "</span>",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("page does not contain %q:\n%s", want, body)
				}
			}
			if strings.Contains(body, "<b>") {
				t.Errorf("the title's markup reached the page unescaped:\n%s", body)
			}
		})
	}
	if got := (*Pages)(nil).Title(); got != DefaultTitle {
		t.Errorf("nil Pages title = %q, want %q", got, DefaultTitle)
	}
}

// TestPages_Accessible checks the markup properties a screen reader and a
// phone rely on; the browser test checks the rendered result (contrast,
// focus ring, no horizontal scroll).
func TestPages_Accessible(t *testing.T) {
	body := render(t, NewPages("Wiki"), Page{Status: http.StatusBadGateway, Title: "The application is unavailable", Detail: "d",
		Link: &Link{Text: "Try again", URL: "/x"}, RequestID: "abc",
		Form: &Form{Action: "/_gatehouse/logout", Button: "Sign out", Fields: map[string]string{"csrf": "x"}}}).Body.String()
	for _, want := range []string{
		`<html lang="en">`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<meta name="color-scheme" content="light dark">`,
		`@media (prefers-color-scheme:dark)`,
		`:focus-visible{outline:3px solid`,
		`<main class="server">`,
		`<p class="status" id="status">Error 502</p>`,
		`<h1 id="title">The application is unavailable</h1>`,
		`<button type="submit" id="form-submit">Sign out</button>`,
		`<a class="button" id="action" href="/x">Try again</a>`,
		`<code id="request-id">abc</code>`,
		`<svg aria-hidden="true"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page does not contain %q:\n%s", want, body)
		}
	}
	if n := strings.Count(body, "<h1"); n != 1 {
		t.Errorf("page has %d h1 headings, want 1", n)
	}
	ok := render(t, nil, Page{Status: 200, Title: "Sign out?", Detail: "d"}).Body.String()
	if !strings.Contains(ok, `<main class="info">`) || strings.Contains(ok, `id="status"`) {
		t.Errorf("a 200 page should be an info page without an error status line:\n%s", ok)
	}
}

func TestPages_FailUsesTitle(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	NewPages("Team wiki").Fail(w, r, nil, errors.New("internal detail"))
	body := w.Body.String()
	if w.Code != 500 || !strings.Contains(body, "· Team wiki</title>") || strings.Contains(body, "internal detail") {
		t.Errorf("status %d, page:\n%s\nwant 500 titled for Team wiki, without the internal error", w.Code, body)
	}
}

// TestPages_ReferrerPolicy: a page with a form lets the browser send the
// post's Origin (strict-origin: the origin, never the path or query);
// other pages send no referrer. The header and the meta element agree,
// since the meta element is what the browser applies last.
func TestPages_ReferrerPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		pg   Page
		want string
	}{
		{"no form", Page{Status: http.StatusOK, Title: "You are signed out"}, "no-referrer"},
		{"form", Page{Status: http.StatusOK, Title: "Your form was not resubmitted",
			Form: &Form{Action: "/notes/save", Button: "Send the form again", Fields: map[string]string{"a": "1"}}}, "strict-origin"},
		{"sessions list", Page{Status: http.StatusOK, Title: "Your sessions", Sessions: &SessionList{Action: "/_gatehouse/sessions"}}, "strict-origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := render(t, NewPages(""), tc.pg)
			if got := w.Header().Get("Referrer-Policy"); got != tc.want {
				t.Errorf("Referrer-Policy header = %q, want %q", got, tc.want)
			}
			meta := `<meta name="referrer" content="` + tc.want + `">`
			if body := w.Body.String(); !strings.Contains(body, meta) || strings.Count(body, `<meta name="referrer"`) != 1 {
				t.Errorf("page lacks the one %s:\n%s", meta, body)
			}
		})
	}
}
