package direct

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/httpfield"
)

// The direct path's request head: what goes upstream, checked and
// written as httputil.ReverseProxy with gatehouse's Rewrite and
// http.Transport would (FuzzDirectHead compares them). See direct.go.

// checkHead refuses r as http.Transport would: for a bad value in a
// header that goes upstream (hop-by-hop ones are gone by then). It runs
// before a connection is taken, so a refused request costs none.
func checkHead(r *http.Request) error {
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if !sentUpstream(k, conn) {
			continue
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
		}
	}
	return nil
}

// writeHead writes r's request line and headers for the upstream, as
// ReverseProxy with gatehouse's Rewrite and http.Transport would; r has
// passed checkHead.
func (d *Forwarder) writeHead(bw *bufio.Writer, r *http.Request) error {
	hdr := r.Header
	conn := hdr["Connection"]
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	t := d.target
	path := r.URL.Path
	if t.Path != "" {
		path = singleJoiningSlash(t.Path, path)
	}
	if path == "" {
		path = "/"
	}
	bw.WriteString((&url.URL{Path: path}).EscapedPath())
	q := r.URL.RawQuery
	switch {
	case t.RawQuery != "" && q != "":
		bw.WriteByte('?')
		bw.WriteString(t.RawQuery)
		bw.WriteByte('&')
		bw.WriteString(q)
	case t.RawQuery != "" || q != "" || r.URL.ForceQuery:
		bw.WriteByte('?')
		bw.WriteString(t.RawQuery)
		bw.WriteString(q)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	if d.preserveHost && r.Host != "" {
		bw.WriteString(r.Host)
	} else {
		bw.WriteString(t.Host)
	}
	bw.WriteString("\r\n")
	if ua := hdr["User-Agent"]; len(ua) > 0 && ua[0] != "" && sentUpstream("User-Agent", conn) {
		writeField(bw, "User-Agent", ua[0])
	}
	for k, vv := range hdr {
		switch k {
		case "Host", "Content-Length", "User-Agent": // the request line, Host and framing say these
			continue
		}
		if !sentUpstream(k, conn) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if te := hdr["Te"]; te != nil && listedIn(te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(strings.Trim(v, " \t"))
	bw.WriteString("\r\n")
}

// sentUpstream reports whether the incoming request's header k goes to
// the upstream, given the Connection header's values conn: not the
// hop-by-hop ones, nor those Connection lists, nor Forwarded (gatehouse's
// X-Forwarded-* replace it); the X-Forwarded-* gatehouse set always, as
// Rewrite puts them back after ReverseProxy's hop-by-hop removal.
func sentUpstream(k string, conn []string) bool {
	switch k {
	case "Forwarded":
		return false
	}
	if slices.Contains(ForwardedNames[:], k) {
		return true
	}
	return !slices.Contains(hopByHop[:], k) && (conn == nil || !listedIn(conn, k))
}

// listedIn reports whether the comma-separated values list the token
// name, ignoring ASCII case, as http.Header.Del would find it. name is
// a header field name, never empty (net/http refuses an empty one); an
// empty item lists nothing, as in ReverseProxy.
func listedIn(values []string, name string) bool {
	for _, v := range values {
		for tok, i, ok := httpfield.NextListItem(v, 0, httpfield.ASCIISpace); ok; tok, i, ok = httpfield.NextListItem(v, i, httpfield.ASCIISpace) {
			if tok != "" && equalFoldASCII(tok, name) {
				return true
			}
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validHeaderValue is RFC 9110's field-value: no control characters but
// horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func singleJoiningSlash(a, b string) string {
	aslash := strings.HasSuffix(a, "/")
	bslash := strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}
