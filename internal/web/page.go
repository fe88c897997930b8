package web

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
)

// DefaultTitle names the application on gatehouse's pages when ui.title
// is not set.
const DefaultTitle = "gatehouse"

// Pages renders gatehouse's own pages (sign-out, signed out, 403, errors)
// under the application's name, ui.title. It is immutable and safe for
// concurrent use. A nil *Pages renders under DefaultTitle.
type Pages struct {
	title string
}

// NewPages returns the renderer of pages titled title (already validated
// by config: short, one line); "" means DefaultTitle. The title is text,
// escaped wherever it appears.
func NewPages(title string) *Pages {
	if title == "" {
		title = DefaultTitle
	}
	return &Pages{title: title}
}

// Title is the application's name the pages show.
func (p *Pages) Title() string {
	if p == nil {
		return DefaultTitle
	}
	return p.title
}

// pageData is what the layout reads: the page, and the site around it.
type pageData struct {
	Page
	Site string
	// Kind colours the page's top edge: "info" (2xx, 3xx), "client"
	// (4xx) or "server" (5xx).
	Kind string
	// ReferrerPolicy is the page's referrer policy, in its header and
	// its meta element alike (the meta element wins in the browser).
	ReferrerPolicy string
}

// referrerPolicy is the referrer policy of pg. Pages send no referrer,
// except those with a form: under no-referrer a browser sends the form's
// post with "Origin: null" (Fetch, "serializing a request origin"), which
// an app that checks Origin against CSRF refuses, and the held-form
// notice's button posts to the app. strict-origin sends the origin alone,
// never the page's path or query (at the callback: the code and state).
func referrerPolicy(pg Page) string {
	if pg.Form != nil || pg.Sessions != nil {
		return "strict-origin"
	}
	return "no-referrer"
}

// Render writes an HTML page with its status.
func (p *Pages) Render(w http.ResponseWriter, pg Page, formOrigins ...string) {
	SecurityHeaders(w.Header(), formOrigins...)
	policy := referrerPolicy(pg)
	w.Header().Set("Referrer-Policy", policy)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(pg.Status)
	kind := "info"
	switch {
	case pg.Status >= 500:
		kind = "server"
	case pg.Status >= 400:
		kind = "client"
	}
	_ = bodyTmpl.ExecuteTemplate(w, "layout", pageData{Page: pg, Site: p.Title(), Kind: kind, ReferrerPolicy: policy})
}

// stylesheet is the one stylesheet of every gatehouse page, inline: no
// request for an asset that the proxy would have to route, nothing a
// strict CSP must open up beyond this sheet's hash. It follows the
// browser's light or dark preference, fits a 320px-wide phone, and keeps
// text at a contrast of 4.5:1 or more against its background in both
// schemes (the browser tests check it, TestBrowser_PagesLookFinished).
const stylesheet = `:root{color-scheme:light dark;--bg:#eef1f5;--card:#fff;--text:#1b2330;--muted:#4a5567;--line:#d5dbe3;--accent:#1f56c9;--on-accent:#fff;--focus:#1f56c9;--code:#eef1f5;--info:#1f56c9;--client:#b25e09;--server:#b42318}
@media (prefers-color-scheme:dark){:root{--bg:#0e131b;--card:#19212d;--text:#e6eaf0;--muted:#a9b3c1;--line:#334055;--accent:#7aa7ff;--on-accent:#0e131b;--focus:#9cbcff;--code:#0e131b;--info:#7aa7ff;--client:#f0a35a;--server:#ff8a80}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;padding:1.5rem 1rem 3rem;background:var(--bg);color:var(--text);font:1rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{width:100%;max-width:34rem;display:flex;align-items:center;gap:.5rem;margin:.5rem 0 1rem;font-size:1.0625rem;font-weight:600;overflow-wrap:anywhere}
header svg{flex:none;color:var(--accent)}
main{width:100%;max-width:34rem;background:var(--card);border:1px solid var(--line);border-top:4px solid var(--info);border-radius:.625rem;padding:1.75rem 1.5rem 1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
main.client{border-top-color:var(--client)}
main.server{border-top-color:var(--server)}
.status{margin:0 0 .25rem;font-size:.875rem;font-weight:600;letter-spacing:.04em;text-transform:uppercase;color:var(--muted)}
h1{margin:0 0 .75rem;font-size:1.5rem;line-height:1.25;overflow-wrap:anywhere}
p{margin:0 0 1rem;overflow-wrap:anywhere}
form{margin:1.5rem 0 1rem}
main>:last-child{margin-bottom:0}
button,a.button{display:inline-block;min-height:2.75rem;padding:.625rem 1.25rem;border:0;border-radius:.4rem;background:var(--accent);color:var(--on-accent);font:inherit;font-weight:600;text-decoration:none;cursor:pointer}
button:hover,a.button:hover{filter:brightness(1.08)}
a{color:var(--accent)}
:focus-visible{outline:3px solid var(--focus);outline-offset:3px}
.rid{margin:1.5rem 0 0;padding-top:1rem;border-top:1px solid var(--line);font-size:.875rem;color:var(--muted)}
code{padding:.1rem .3rem;border-radius:.25rem;background:var(--code);color:var(--text);font:.875rem ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:0 0 1.25rem;padding:.75rem 1rem;border:1px solid var(--line);border-radius:.5rem}
dt{font-weight:600;color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
#sessions{list-style:none;margin:0 0 1rem;padding:0}
#sessions li{margin:0 0 1rem}
#sessions li dl{margin:0 0 .5rem}
#sessions li.this-device dl{border-color:var(--accent)}
#sessions form{margin:.5rem 0 0}
@media (min-width:40rem){body{padding-top:8vh}}
@media (max-width:30rem){body{padding:1rem .75rem 2rem}main{padding:1.25rem 1rem 1rem}h1{font-size:1.3125rem}}
`

// pageCSP lets a page use its own stylesheet, by hash, and nothing else:
// no script, no image, no font, no frame, no form beyond gatehouse's own
// origin (SecurityHeaders appends the other form origins).
var pageCSP = "default-src 'none'; style-src '" + styleHash(stylesheet) + "'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// styleHash is the CSP source expression of an inline stylesheet (CSP
// Level 3 §8.4: the SHA-256 of the element's text, base64).
func styleHash(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// layoutTmpl is the frame of every page: the head with the stylesheet,
// the application's name, and the card the "body" template fills.
var layoutTmpl = template.Must(template.New("layout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="{{.ReferrerPolicy}}">
<meta name="robots" content="noindex">
<title>{{.Title}} · {{.Site}}</title>
<style>` + stylesheet + `</style></head>
<body>
<header><svg aria-hidden="true" focusable="false" width="24" height="24" viewBox="0 0 24 24"><path fill="currentColor" d="M3 21V10.5a9 9 0 0 1 18 0V21h-4.5v-9.5a4.5 4.5 0 0 0-9 0V21z"/></svg><span id="site">{{.Site}}</span></header>
<main class="{{.Kind}}">
{{if ge .Status 400}}<p class="status" id="status">Error {{.Status}}</p>{{end}}
{{- template "body" .}}</main>
</body></html>
`))
