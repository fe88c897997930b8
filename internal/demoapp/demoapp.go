// Package demoapp is the small upstream application that `gatehouse demo`
// puts behind the proxy. It shows the identity headers it receives and
// offers a JSON API, a Server-Sent Events stream and a WebSocket echo
// endpoint so that proxying of each can be seen working.
package demoapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

// Options configures the demo app.
type Options struct {
	// HeaderNames are the identity headers to show, in order, e.g.
	// X-Forwarded-User, X-Forwarded-Email, X-Forwarded-Groups,
	// X-Forwarded-Preferred-Username. Nil means DefaultHeaderNames().
	HeaderNames []string
	// LogoutPath is rendered as a "Sign out" link, e.g. "/_gatehouse/logout".
	LogoutPath string
	// WhoamiPath is rendered as a link, e.g. "/_gatehouse/whoami".
	WhoamiPath string
}

// DefaultHeaderNames returns the identity headers shown when
// Options.HeaderNames is nil.
func DefaultHeaderNames() []string {
	return []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username"}
}

// Handler returns the demo upstream app: it shows, as an HTML page, the
// identity headers it received from gatehouse. It also serves
// GET /api/hello (JSON), GET /events (Server-Sent Events) and GET /ws
// (WebSocket echo).
func Handler(opts Options) http.Handler {
	names := opts.HeaderNames
	if names == nil {
		names = DefaultHeaderNames()
	}
	a := &app{
		headerNames: append([]string(nil), names...),
		logoutPath:  opts.LogoutPath,
		whoamiPath:  opts.WhoamiPath,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/hello", a.hello)
	mux.HandleFunc("GET /events", a.events)
	mux.HandleFunc("GET /ws", serveWebSocket)
	mux.HandleFunc("/", a.page)
	return mux
}

type app struct {
	headerNames []string
	logoutPath  string
	whoamiPath  string
}

// headerRow is one line of the page's header table.
type headerRow struct {
	Name, ID, Value string
	Set             bool
}

type pageData struct {
	Method     string
	Path       string
	Headers    []headerRow
	LogoutPath string
	WhoamiPath string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gatehouse demo app</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:44rem;margin:2rem auto;background:#fff;border-radius:.5rem;padding:1.5rem 2rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.4rem;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e3e5ea;vertical-align:top;word-break:break-all}
th{width:40%;font-weight:600}
td.unset{color:#888;font-style:italic}
nav a{margin-right:1rem}
</style>
</head>
<body>
<main>
<h1>gatehouse demo app</h1>
<p>This upstream application sees who you are only through the headers gatehouse adds to each request.</p>
<table>
<tr><th>Request</th><td id="path">{{.Path}}</td></tr>
<tr><th>Method</th><td id="method">{{.Method}}</td></tr>
</table>
<table>
<tr><th>Header</th><th>Value received</th></tr>
{{range .Headers}}<tr><th>{{.Name}}</th><td id="h-{{.ID}}"{{if not .Set}} class="unset"{{end}}>{{if .Set}}{{.Value}}{{else}}(not set){{end}}</td></tr>
{{end}}</table>
<nav>
{{if .WhoamiPath}}<a id="whoami" href="{{.WhoamiPath}}">Who am I (JSON)</a>{{end}}
<a id="api" href="/api/hello">API call</a>
{{if .LogoutPath}}<a id="signout" href="{{.LogoutPath}}">Sign out</a>{{end}}
</nav>
</main>
</body>
</html>
`))

// headerValue joins all values of a header, as a proxy would see them.
func headerValue(h http.Header, name string) (string, bool) {
	vals := h.Values(name)
	return strings.Join(vals, ", "), len(vals) > 0
}

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	data := pageData{
		Method:     r.Method,
		Path:       r.URL.RequestURI(),
		LogoutPath: a.logoutPath,
		WhoamiPath: a.whoamiPath,
	}
	for _, name := range a.headerNames {
		v, ok := headerValue(r.Header, name)
		data.Headers = append(data.Headers, headerRow{Name: name, ID: strings.ToLower(name), Value: v, Set: ok})
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(buf.Bytes())
}

// helloResponse is the body of GET /api/hello.
type helloResponse struct {
	User   string   `json:"user"`
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

func (a *app) hello(w http.ResponseWriter, r *http.Request) {
	resp := helloResponse{
		User:   r.Header.Get("X-Forwarded-User"),
		Email:  r.Header.Get("X-Forwarded-Email"),
		Groups: []string{},
	}
	groups, _ := headerValue(r.Header, "X-Forwarded-Groups")
	for g := range strings.SplitSeq(groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			resp.Groups = append(resp.Groups, g)
		}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

// events streams three Server-Sent Events, flushing after each, and stops
// early when the client goes away.
func (a *app) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	for i := 1; i <= 3; i++ {
		if r.Context().Err() != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: tick %d\n\n", i, i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
