package devidp

import (
	"bytes"
	"html/template"
	"net/http"
)

// pageCSP is the Content-Security-Policy of pages without a form.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"

// hiddenField is a parameter carried by the sign-in form.
type hiddenField struct {
	Name, Value string
}

// loginData feeds loginTemplate.
type loginData struct {
	Action      string
	ClientID    string
	RedirectURI string
	Scopes      []string
	Hidden      []hiddenField
	Users       []User
	Error       string
}

const pageStyle = `<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
.banner{background:#b42318;color:#fff;font-weight:600;text-align:center;padding:.6rem 1rem;letter-spacing:.02em}
main{max-width:34rem;margin:2rem auto;background:#fff;border-radius:.5rem;padding:1.5rem 2rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.35rem;margin-top:0}
.meta{font-size:.85rem;color:#555;overflow-wrap:anywhere}
.error{background:#fde8e7;border:1px solid #b42318;padding:.5rem .75rem;border-radius:.3rem}
button{display:block;width:100%;text-align:left;margin:.5rem 0;padding:.75rem 1rem;border:1px solid #c8ccd4;border-radius:.4rem;background:#fff;font:inherit;cursor:pointer}
button:hover,button:focus{border-color:#2457c5;background:#eef3fd}
button .who{font-weight:600}
button .detail{display:block;font-size:.85rem;color:#555}
button.deny{text-align:center;color:#b42318;border-color:#e3b4b0}
</style>`

var loginTemplate = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gatehouse development sign-in</title>
` + pageStyle + `
</head>
<body>
<div class="banner" id="dev-banner" role="alert">development identity provider — not for production</div>
<main>
<h1>gatehouse development sign-in</h1>
<p class="meta">Client <code>{{.ClientID}}</code> asks you to sign in and will receive you at <code>{{.RedirectURI}}</code>.
{{- if .Scopes}} Requested scopes: {{range $i, $s := .Scopes}}{{if $i}}, {{end}}<code>{{$s}}</code>{{end}}.{{end}}</p>
{{if .Error}}<p class="error" id="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<p>Sign in as:</p>
{{range .Users}}<button type="submit" name="user" value="{{.Subject}}" id="login-{{.Subject}}"><span class="who">{{.Name}}</span>
<span class="detail">{{.Email}}{{if .Groups}} · groups: {{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{end}}{{end}}</span></button>
{{end}}<button type="submit" name="deny" value="1" id="deny" class="deny">Deny</button>
</form>
</main>
</body>
</html>
`))

var messageTemplate = template.Must(template.New("message").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
` + pageStyle + `
</head>
<body>
<div class="banner" role="alert">development identity provider — not for production</div>
<main>
<h1>{{.Title}}</h1>
<p id="message">{{.Message}}</p>
</main>
</body>
</html>
`))

// renderLogin shows the sign-in page for req.
func (p *Provider) renderLogin(w http.ResponseWriter, status int, req *authRequest, errMsg string) {
	p.renderHTML(w, status, p.loginCSP, loginTemplate, loginData{
		Action:      p.issuerPath + "/authorize",
		ClientID:    req.clientID,
		RedirectURI: req.redirectURI,
		Scopes:      req.scopes,
		Hidden:      req.hiddenFields(),
		Users:       p.users,
		Error:       errMsg,
	})
}

// renderError shows an error page to the user.
func (p *Provider) renderError(w http.ResponseWriter, status int, msg string) {
	p.renderHTML(w, status, pageCSP, messageTemplate, map[string]string{
		"Title":   "Sign-in error",
		"Message": msg,
	})
}

// renderSignedOut shows the page that confirms RP-initiated logout.
func (p *Provider) renderSignedOut(w http.ResponseWriter) {
	p.renderHTML(w, http.StatusOK, pageCSP, messageTemplate, map[string]string{
		"Title":   "Signed out",
		"Message": "You are signed out of the development provider.",
	})
}

// renderHTML executes t into a buffer and writes it with headers that keep
// the page out of caches and frames.
func (p *Provider) renderHTML(w http.ResponseWriter, status int, csp string, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		p.log.Error("devidp: rendering page failed", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
