package browsertest_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"sync"
)

// app is the upstream of the browser tests. It records every request it
// receives and answers:
//
//	GET  /form        a form (#title, #text, #save) posting to /notes/save?draft=1
//	POST /notes/save  "Saved" with the title and the user (#saved)
//	anything else     a page naming the path (#path) and the user (#user)
type app struct {
	mu   sync.Mutex
	seen []seen
}

// seen is a request as the app received it.
type seen struct {
	method, path, user, origin, idToken string
	form                                url.Values
}

const formPage = `<!doctype html><title>form</title>
<form method="post" action="/notes/save?draft=1">
<input id="title" name="title"><textarea id="text" name="text"></textarea>
<button id="save" type="submit">Save</button></form>`

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	user := r.Header.Get("X-Forwarded-User")
	a.mu.Lock()
	a.seen = append(a.seen, seen{r.Method, r.URL.RequestURI(), user, r.Header.Get("Origin"), r.Header.Get("X-Forwarded-Id-Token"), form})
	a.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/form":
		_, _ = io.WriteString(w, formPage)
	case r.Method == http.MethodPost && r.URL.Path == "/notes/save":
		fmt.Fprintf(w, `<!doctype html><title>saved</title><h1 id="saved">Saved %q for %s</h1>`, html.EscapeString(form.Get("title")), html.EscapeString(user))
	default:
		fmt.Fprintf(w, `<!doctype html><title>app</title><p id="path">%s</p><p id="user">%s</p>`, html.EscapeString(r.URL.RequestURI()), html.EscapeString(user))
	}
}

// posts returns the POSTs the app received.
func (a *app) posts() []seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []seen
	for _, s := range a.seen {
		if s.method == http.MethodPost {
			out = append(out, s)
		}
	}
	return out
}

// last returns the last request to path, or the zero seen.
func (a *app) last(path string) seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.seen) - 1; i >= 0; i-- {
		if a.seen[i].path == path {
			return a.seen[i]
		}
	}
	return seen{}
}
