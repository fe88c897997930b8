package config

import "strings"

// MaxACRValues bounds routes[].acr_values: the values travel in the
// authorization URL and in the RFC 9470 challenge.
const MaxACRValues = 10

// maxACRLen bounds one acr value (URIs such as
// urn:mace:incommon:iap:silver fit).
const maxACRLen = 128

// acrValues checks a route's acr_values: a few distinct values, each a
// printable ASCII string without spaces or quotes (OIDC Core §3.1.2.1 sends
// them space-separated; RFC 9470 §3 quotes them in a header).
func (v *validator) acrValues(path string, vals []string) {
	if vals == nil {
		if v.lines[path] != 0 {
			v.add(path, "must list at least one value, e.g. [mfa]; leave it out for any acr")
		}
		return
	}
	if len(vals) == 0 {
		v.add(path, "must list at least one value, e.g. [mfa]; leave it out for any acr")
		return
	}
	if len(vals) > MaxACRValues {
		v.add(path, "at most %d values (got %d)", MaxACRValues, len(vals))
	}
	seen := map[string]bool{}
	for _, a := range vals {
		switch {
		case a == "" || len(a) > maxACRLen:
			v.add(path, "%q must be 1 to %d characters", a, maxACRLen)
		case strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '"' || r == '\\' }):
			v.add(path, "%q holds a space, quote, backslash or non-ASCII character; acr values are sent space-separated", a)
		case seen[a]:
			v.add(path, "%q is listed twice", a)
		}
		seen[a] = true
	}
}

// newDevice checks that headers.new_device has session.new_device to
// feed it.
func (v *validator) newDevice(c *Config) {
	if c.Headers.NewDevice != "" && !c.Session.NewDevice {
		v.add("headers.new_device", "needs session.new_device: true, which notices the new browsers (got %q without it)", c.Headers.NewDevice)
	}
}
