package auth

import "strings"

// The "Your sessions" page names each session's browser and operating
// system from the User-Agent stored at login. A small table does it, not
// a parsing library: people need to tell "Firefox on Windows" from
// "Safari on iOS", not the exact build, and a table keeps gatehouse free
// of a dependency whose data goes stale. The families recognised:
//
//	browsers: Edge, Opera, Samsung Internet, Firefox, Chrome, Safari,
//	          curl, Go HTTP client
//	systems:  Windows, Android, iOS, macOS, ChromeOS, Linux
//
// Anything else is "Unknown browser" or "Unknown OS". A User-Agent is
// whatever the client claims: the page shows it as a hint, never as proof.

// uaFamily is one row of a table: a family and the markers that show it.
// A row matches when the User-Agent contains any marker; the version, when
// wanted, is the number after the first marker found.
type uaFamily struct {
	name    string
	markers []string
	version bool
}

// browserTable is tried in order: Edge and Opera also claim Chrome, and
// Chrome also claims Safari, so the more specific families come first.
var browserTable = []uaFamily{
	{"Edge", []string{"Edg/", "EdgA/", "EdgiOS/", "Edge/"}, true},
	{"Opera", []string{"OPR/", "Opera/"}, true},
	{"Samsung Internet", []string{"SamsungBrowser/"}, true},
	{"Firefox", []string{"Firefox/", "FxiOS/"}, true},
	{"Chrome", []string{"Chrome/", "CriOS/"}, true},
	{"Safari", []string{"Version/"}, true}, // Safari names its version so
	{"curl", []string{"curl/"}, false},
	{"Go HTTP client", []string{"Go-http-client/"}, false},
}

// osTable is tried in order: Android claims Linux, and iOS claims "like
// Mac OS X".
var osTable = []uaFamily{
	{"Windows", []string{"Windows"}, false},
	{"Android", []string{"Android"}, false},
	{"iOS", []string{"iPhone", "iPad", "iPod"}, false},
	{"ChromeOS", []string{"CrOS"}, false},
	{"macOS", []string{"Macintosh", "Mac OS X"}, false},
	{"Linux", []string{"Linux", "X11"}, false},
}

// ParseUserAgent names the browser (with its major version when known)
// and the operating system a User-Agent claims.
func ParseUserAgent(ua string) (browser, os string) {
	browser, os = "Unknown browser", "Unknown OS"
	if b, ok := matchUA(browserTable, ua); ok {
		browser = b
	}
	if o, ok := matchUA(osTable, ua); ok {
		os = o
	}
	return browser, os
}

func matchUA(table []uaFamily, ua string) (string, bool) {
	for _, f := range table {
		for _, m := range f.markers {
			i := strings.Index(ua, m)
			if i < 0 {
				continue
			}
			if !f.version {
				return f.name, true
			}
			if v := majorVersion(ua[i+len(m):]); v != "" {
				return f.name + " " + v, true
			}
			return f.name, true
		}
	}
	return "", false
}

// majorVersion is the leading digits of s, at most 5.
func majorVersion(s string) string {
	n := 0
	for n < len(s) && n < 5 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return s[:n]
}
