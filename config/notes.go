package config

import (
	"fmt"
	"strings"
)

// Notes are findings worth knowing that are neither errors nor risky
// switches; `gatehouse check` prints them, gatehouse does not log them.
func (c *Config) Notes() []string {
	var notes []string
	if n := c.nestedRoutesNote(); n != "" {
		notes = append(notes, n)
	}
	if n := c.deviceBindingNote(); n != "" {
		notes = append(notes, n)
	}
	return notes
}

// deviceBindingNote says when session.device_binding: prefer cannot act
// on an https site: the bound cookie is __Host-, which a session cookie
// shared with subdomains (cookie.domain) cannot pair with. (Over http
// browsers do not bind at all; that is a development setup, not noted.)
func (c *Config) deviceBindingNote() string {
	if c.Session.DeviceBinding != "prefer" || !c.Secure() || c.Cookie.Domain == "" {
		return ""
	}
	return "session.device_binding: prefer is inactive with cookie.domain set: the bound cookie is __Host- (this host only), so sessions shared with subdomains are not bound"
}

// nestedRoutesNote names the routes whose path_prefix lies inside
// another route of the same host (or of any host). An address with a
// ";parameter", a trailing dot or space, or an encoded ";", "#" or "?"
// right after such a prefix ("/admin;jsessionid=X") is read under the
// inner route by some servers and under the outer one by others, so
// gatehouse refuses it with 400 (ambiguous_path); an app that puts its
// session ID in the path there breaks.
func (c *Config) nestedRoutesNote() string {
	var nested []string
	example := ""
	for _, r := range c.Routes {
		if r.Match.PathPrefix == "/" || r.Match.PathPrefix == "" {
			continue
		}
		for _, outer := range c.Routes {
			sameHost := outer.Match.Host == "" || strings.EqualFold(outer.Match.Host, r.Match.Host)
			if sameHost && len(outer.Match.PathPrefix) < len(r.Match.PathPrefix) && underPrefix(r.Match.PathPrefix, outer.Match.PathPrefix) {
				nested = append(nested, r.Match.Host+r.Match.PathPrefix)
				if example == "" {
					example = r.Match.PathPrefix
				}
				break
			}
		}
	}
	if len(nested) == 0 {
		return ""
	}
	const most = 5
	list := strings.Join(nested[:min(len(nested), most)], ", ")
	if len(nested) > most {
		list += fmt.Sprintf(" and %d more", len(nested)-most)
	}
	return fmt.Sprintf("routes inside another route (%s): an address with ';', a trailing dot or space, or an encoded ';', '#' or '?' right after their path_prefix (e.g. %s;jsessionid=X) is refused with 400, as servers would read it under different routes; an app there must keep its session ID in a cookie, not in the path",
		list, example)
}
