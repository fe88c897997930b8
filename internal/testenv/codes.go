package testenv

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"

	"github.com/oauth2-proxy/mockoidc"
)

// AcceptCodeTwice is provider middleware that makes the token endpoint
// accept an authorization code more than once, as a provider that breaks
// RFC 6749 §4.1.2 ("MUST NOT be used more than once") would: the first
// successful answer for a code is sent again for every later request with
// that code. mockoidc itself refuses a used code, which would hide
// whether gatehouse stops a replayed callback on its own.
func AcceptCodeTwice(next http.Handler) http.Handler {
	var mu sync.Mutex
	answers := map[string]*httptest.ResponseRecorder{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != mockoidc.TokenEndpoint {
			next.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		q, _ := url.ParseQuery(string(body))
		code := q.Get("code")
		if q.Get("grant_type") != "authorization_code" || code == "" {
			next.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		rec, ok := answers[code]
		mu.Unlock()
		if !ok {
			rec = httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			if rec.Code == http.StatusOK {
				mu.Lock()
				answers[code] = rec
				mu.Unlock()
			}
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// AnswerToken is provider middleware whose token endpoint answers status
// and body instead of the provider, as a real provider refusing the
// client (or failing) does; every other endpoint is the provider's.
func AnswerToken(status int, body string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != mockoidc.TokenEndpoint {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		})
	}
}
