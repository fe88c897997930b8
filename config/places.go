package config

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// places checks session.places and fills each entry's Prefix: a network
// (CIDR or one address) without host bits, not given twice, and a short
// one-line name. IPv4-mapped IPv6 networks are refused, since client
// addresses are looked up in their IPv4 form.
func (v *validator) places(s *Session) {
	seen := map[netip.Prefix]int{}
	for i := range s.Places {
		pl := &s.Places[i]
		path := fmt.Sprintf("session.places[%d]", i)
		if prefix, ok := v.placeNetwork(path+".network", pl.Network); ok {
			if j, dup := seen[prefix]; dup {
				v.add(path+".network", "%s is already session.places[%d] (%q); give each network once", prefix, j, s.Places[j].Name)
			} else {
				seen[prefix] = i
				pl.Prefix = prefix
			}
		}
		name := pl.Name
		switch n := utf8.RuneCountInString(name); {
		case strings.TrimSpace(name) == "":
			v.add(path+".name", "must name the place, e.g. \"Berlin office\" (got %q)", name)
		case n > MaxPlaceName:
			v.add(path+".name", "is %d characters; use at most %d (got %q)", n, MaxPlaceName, name)
		case strings.IndexFunc(name, unicode.IsControl) >= 0:
			v.add(path+".name", "must be one line of text without control characters (got %q)", name)
		}
	}
}

// placeNetwork parses one session.places[].network.
func (v *validator) placeNetwork(path, s string) (netip.Prefix, bool) {
	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		addr, err2 := netip.ParseAddr(s)
		if err2 != nil || addr.Zone() != "" {
			v.add(path, "%q is not a CIDR network or IP address; write e.g. 10.1.0.0/16, 2001:db8:1::/48 or 192.0.2.7", s)
			return netip.Prefix{}, false
		}
		prefix = netip.PrefixFrom(addr, addr.BitLen())
	}
	if prefix.Addr().Is4In6() {
		v.add(path, "%q is an IPv4-mapped IPv6 network; write the IPv4 network (e.g. 10.1.0.0/16): client addresses are looked up as IPv4", s)
		return netip.Prefix{}, false
	}
	if m := prefix.Masked(); m != prefix {
		v.add(path, "%q has bits set beyond its /%d prefix; write %s", s, prefix.Bits(), m)
		return netip.Prefix{}, false
	}
	return prefix, true
}
