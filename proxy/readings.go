package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/gatehouse/gatehouse/internal/web"
)

// Judge every reading.
//
// gatehouse decides on the cleaned path (cleanRequestPath), which is how
// Go's net/http, nginx, Node, WSGI and PHP apps read a path: decoded once,
// dot segments resolved, slashes collapsed. Other servers read some paths
// otherwise: Tomcat, Jetty and Spring cut ";parameters" off every segment
// before they route ("/admin;jsessionid=1/secret" is "/admin/secret"),
// IIS drops the trailing dots and spaces of a segment ("/admin./secret"),
// a server that decodes %23 or %3F and parses again stops the path there
// ("/admin%23/x" is "/admin", GHSA-pxq7-h93f-9jrg), and an app behind
// another decoder decodes twice ("/%2561dmin"). Deciding on one
// reading lets a request reach a protected route's content through
// another route's policy.
//
// So the decision is made on every reading of the path the app receives,
// one small pure function per family of servers (pathReadings):
//   - the readings must all land on the same route, else the request is
//     refused (400 ambiguous_path, errAmbiguous): which of two different
//     policies is "stricter" is not well defined;
//   - within that route the path is public only if every reading is;
//   - the app receives the path that was judged, never another form.
//
// Most paths read alike under every model: readsAlike checks that with
// one scan, and only the rest pay for the readings.

// pathReading is one model of how a family of servers reads a request
// target: from the forms of the path it is sent, it returns the path the
// server routes by, before dot segments and repeated slashes are
// resolved (judgePath does that, as the generic reading does). A reading
// that returns the decoded path unchanged agrees with the generic one.
type pathReading struct {
	name string
	read func(f *pathForms) string
}

// pathForms are the forms of one escaped path the readings start from.
type pathForms struct {
	decoded string // decoded once
	cut     string // ";parameters" cut from the escaped path, then decoded
}

// pathReadings are the models judged besides the generic one (the cleaned
// path itself).
var pathReadings = [...]pathReading{
	// Tomcat, Jetty, Spring: ";..." is cut from every segment of the
	// escaped path, then the rest is decoded ("/admin;x/secret").
	{"servlet", func(f *pathForms) string { return f.cut }},
	// A servlet stack that decodes first and cuts after: "%3b" acts as
	// ";" ("/admin%3bx/secret").
	{"servlet-decoded", func(f *pathForms) string { return cutParams(f.decoded) }},
	// IIS: "\" is "/", trailing dots and spaces of a segment are dropped
	// ("/admin./secret", "/admin%20/secret"), so is an NTFS stream name
	// ("/admin::$DATA/secret"); it ignores case, as route matching does.
	{"iis", func(f *pathForms) string { return trimSegments(f.decoded) }},
	// A server that decodes %23 and %3F and parses the result again: the
	// path ends there ("/admin%23/public", GHSA-pxq7-h93f-9jrg).
	{"cut-at-fragment", func(f *pathForms) string { return cutFragment(f.decoded) }},
	// All of the above at once (a servlet app on IIS, a proxy between
	// that decodes), so that no combination reads a path a third way.
	{"combined", func(f *pathForms) string { return combined(f.cut) }},
	// An app behind something that decodes too (a proxy, a framework
	// that decodes again): "%2561dmin" is "/admin" to it, and "%253b" a
	// ";". Invalid escapes stay as they are, as lenient decoders leave
	// them.
	{"decoded-twice", func(f *pathForms) string { return unescapeLenient(f.decoded) }},
	{"decoded-twice-combined", func(f *pathForms) string { return combined(unescapeLenient(f.cut)) }},
}

// combined applies every reading's change to a decoded path: the query
// or fragment cut, parameters cut, trailing dots and spaces trimmed.
func combined(p string) string { return trimSegments(cutParams(cutFragment(p))) }

// unescapeLenient decodes the valid %XX escapes of p and keeps the rest.
func unescapeLenient(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			b = append(b, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// cleanPath resolves dot segments and repeated slashes, keeping a trailing
// slash, and makes the path absolute.
func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

// cutParams removes the ";parameters" of every segment: "/a;x/b;y=1" is
// "/a/b".
func cutParams(p string) string {
	i := strings.IndexByte(p, ';')
	if i < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	for i >= 0 {
		b = append(b, p[:i]...)
		p = p[i:]
		if j := strings.IndexByte(p, '/'); j >= 0 {
			p = p[j:]
		} else {
			p = ""
		}
		i = strings.IndexByte(p, ';')
	}
	return string(append(b, p...))
}

// trimSegments reads a decoded path as IIS, and a file server on NTFS,
// do: "\" is a separator, a segment ends at ":" (an NTFS stream:
// "admin:$i30:$INDEX_ALLOCATION" is the directory "admin", CVE-2010-2731),
// and each segment loses its trailing spaces and dots. A segment of dots
// alone ("..", "... ", "...") is read as ".." (the farthest it may
// reach), never as a name.
func trimSegments(p string) string {
	if !strings.ContainsAny(p, `\:`) && !strings.Contains(p, "./") && !strings.Contains(p, " /") && !strings.HasSuffix(p, ".") && !strings.HasSuffix(p, " ") {
		return p // nothing to trim
	}
	p = strings.ReplaceAll(p, `\`, "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ":")
		s = strings.TrimRight(s, " ")
		switch t := strings.TrimRight(s, ". "); {
		case t == "" && s == ".":
			segs[i] = "."
		case t == "" && s != "":
			segs[i] = ".."
		default:
			segs[i] = t
		}
	}
	return strings.Join(segs, "/")
}

// cutFragment ends a decoded path at its first "#" or "?".
func cutFragment(p string) string {
	if i := strings.IndexAny(p, "#?"); i >= 0 {
		return p[:i]
	}
	return p
}

// plainByte marks the bytes a path may hold and still read alike under
// every model: those Go's URL escaping leaves as they are (so the escaped
// path is the path itself), except ";" and ":".
var plainByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-_.~/$&+,=@" {
		t[c] = true
	}
	return t
}()

// readsAlike reports, with one scan, that every model reads u's path as
// the generic one does: the escaped path is the decoded one, and it holds
// no ";", ":" or "%" and no segment ending in "." (a dot segment
// included).
// A false answer only means the readings must be computed.
func readsAlike(u *url.URL) bool {
	if u.RawPath != "" {
		return false
	}
	p := u.Path
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !plainByte[c] {
			return false
		}
		if c == '.' && (i+1 == len(p) || p[i+1] == '/') {
			return false
		}
	}
	return true
}

// mayReadDifferently reports whether an escaped path holds anything a
// model reads otherwise than the generic reading: ";", ":", "%" (an
// encoded ";", "#", "?", space or dot, or anything encoded twice), or a
// segment ending in a dot.
func mayReadDifferently(escaped string) bool {
	for i := 0; i < len(escaped); i++ {
		switch escaped[i] {
		case ';', '%', '\\', ':':
			return true
		case '.':
			if i+1 == len(escaped) || escaped[i+1] == '/' {
				return true
			}
		}
	}
	return false
}

// errAmbiguous is why a path was refused: two readings land on different
// routes.
type errAmbiguous struct {
	path, generic     string // as sent, and its generic reading
	reading, read     string // the reading that differs, and what it reads
	route, otherRoute string
}

func (e *errAmbiguous) Error() string {
	return fmt.Sprintf("%q reads as %q (route %s) but as %q under the %s reading (route %s)",
		e.path, e.generic, e.route, e.read, e.reading, e.otherRoute)
}

func routeName(rt *route) string {
	if rt == nil {
		return "none"
	}
	return rt.name
}

// judgePath finds the route of a request and whether its path is public,
// on every reading of u, the path the app receives (u.Path is clean, or
// cleans to it). A reading no route matches takes fallback (nil: none).
// It returns an *errAmbiguous when the readings land on different
// routes; rt is nil when no route matches and fallback is nil.
func (h *gate) judgePath(host, clean string, u *url.URL, fallback *route) (rt *route, public bool, err error) {
	match := func(p string) *route {
		if rt := h.router.match(host, p); rt != nil {
			return rt
		}
		return fallback
	}
	rt = match(clean)
	public = rt != nil && rt.isPublic(clean)
	if readsAlike(u) {
		return rt, public, nil
	}
	escaped := u.EscapedPath()
	if !mayReadDifferently(escaped) {
		return rt, public, nil
	}
	var f pathForms
	var err1, err2 error
	f.decoded, err1 = url.PathUnescape(escaped)
	f.cut = f.decoded
	if c := cutParams(escaped); c != escaped {
		f.cut, err2 = url.PathUnescape(c)
	}
	if err1 != nil || err2 != nil { // not from EscapedPath; refused all the same
		return nil, false, &errAmbiguous{path: escaped, generic: clean, reading: "generic", read: "unreadable", route: routeName(rt), otherRoute: "none"}
	}
	last := "" // the last reading judged: readings often agree
	for _, rd := range pathReadings {
		p := rd.read(&f)
		if p == f.decoded || p == last {
			continue // the generic reading, or one just judged
		}
		last = p
		p = cleanPath(p)
		other := match(p)
		if other != rt {
			return nil, false, &errAmbiguous{path: escaped, generic: clean, reading: rd.name, read: p, route: routeName(rt), otherRoute: routeName(other)}
		}
		public = public && other != nil && other.isPublic(p)
	}
	return rt, public, nil
}

// ambiguousPath answers a request whose readings land on different
// routes.
func ambiguousPath(err error) *web.Error {
	return &web.Error{Status: http.StatusBadRequest, Code: "ambiguous_path",
		Title: "Ambiguous address",
		Detail: "Applications read this address in different ways (a ';' parameter, a dot or space at the end of a segment, " +
			"or an encoded ';', '#' or '?'), and some would serve it from another part of the site than others, so gatehouse refuses it. " +
			"Use the plain address. Operators: an application that puts ';jsessionid=' right after a route's path_prefix " +
			"should keep its session ID in a cookie instead.",
		Err: err}
}
