package proxy

import (
	"net/url"
	"path"
	"strings"
)

// errBadPath explains a request path gatehouse refuses to route.
type errBadPath struct{ why string }

func (e *errBadPath) Error() string { return e.why }

// cleanRequestPath returns the path a request is routed and authorized by,
// and whether the upstream must be sent that cleaned path instead of the
// one the client wrote. The upstream always receives the path the decision
// was made on, so a dot segment or a doubled slash cannot make gatehouse
// and the upstream disagree about which path is asked for.
//
// The path is decoded once (Go's URL parser did that: u.Path), then:
//   - an encoded slash or backslash (%2F, %5C), a raw backslash, a NUL or
//     another control character is refused: upstreams disagree on what
//     they mean (Louketo PR #200, "/public%2fadmin");
//   - a path still holding an encoded dot, slash, backslash, percent sign
//     or control character after that decoding (double encoding) is
//     refused: an app that decodes again would judge another path (for
//     other bytes, judgePath's decoded-twice readings judge that);
//   - a segment that is "." or ".." once a ";parameter" is cut off
//     ("/..;/admin", which Tomcat and Jetty read as "/../admin") is
//     refused;
//   - other dot segments and repeated slashes are resolved with
//     path.Clean ("/public/../admin" is "/admin", "//public" is
//     "/public"), and the upstream is sent the result.
//
// A fragment marker decoded from %23 stays part of the path, and the
// upstream receives it re-encoded. This is the generic reading only:
// judgePath (readings.go) also judges how servlet containers, IIS and a
// server cutting at "#" read the path, so a ";param", a trailing dot or
// "%23" cannot move a request to another route (GHSA-pxq7-h93f-9jrg).
func cleanRequestPath(u *url.URL) (clean string, rewrite bool, err error) {
	raw := u.EscapedPath()
	p := u.Path
	if p == "" {
		return "/", true, nil
	}
	if containsFold(raw, "%2f") || containsFold(raw, "%5c") || strings.Contains(raw, "\\") {
		return "", false, &errBadPath{"the address contains an encoded slash or a backslash"}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < ' ' || c == 0x7f || c == '\\' {
			return "", false, &errBadPath{"the address contains a control character"}
		}
		// Still encoded after one decoding: an app that decodes again
		// would see a different path ("/public/%252e%252e/admin" is
		// "/public/%2e%2e/admin" here and "/admin" there).
		if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			if d := unhex(p[i+1])<<4 | unhex(p[i+2]); d == '.' || d == '/' || d == '\\' || d == '%' || d < ' ' || d == 0x7f {
				return "", false, &errBadPath{"the address is encoded twice"}
			}
		}
	}
	if p[0] != '/' {
		return "", false, &errBadPath{"the address does not start with /"}
	}
	dots := false
	for seg := range strings.SplitSeq(p[1:], "/") {
		name, _, params := strings.Cut(seg, ";")
		if name == "." || name == ".." {
			if params {
				return "", false, &errBadPath{"the address contains a dot segment with parameters"}
			}
			dots = true
		}
	}
	if !dots && !strings.Contains(p, "//") {
		return p, false, nil
	}
	clean = path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean, true, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// containsFold reports whether s contains the lower-case ASCII substr in
// any case.
func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}

// hasPathPrefix reports whether p is prefix itself or lies under it, on a
// segment boundary: "/app" covers "/app", "/app/" and "/app/x", never
// "/application". prefix has no trailing slash except "/" itself.
func hasPathPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}
