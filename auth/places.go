package auth

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/gatehouse/gatehouse/config"
)

// places maps a client address to the name of the most specific
// session.places network holding it. It is built from the validated
// configuration when the sessions page is shown (the table is small), so
// the request path never pays for it; it makes no outside lookups.
type places []config.Place

// newPlaces orders list by prefix length, longest first, so that the
// first network holding an address is the most specific one.
func newPlaces(list []config.Place) places {
	p := slices.Clone(list)
	slices.SortStableFunc(p, func(a, b config.Place) int { return cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits()) })
	return p
}

// name returns the place of ip (as stored with a session), or "" when
// ip is not an address or lies in no configured network. An IPv4-mapped
// IPv6 address is looked up as IPv4, and a zone is ignored.
func (p places) name(ip string) string {
	if len(p) == 0 {
		return ""
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	addr = addr.WithZone("").Unmap()
	for _, pl := range p {
		if pl.Prefix.Contains(addr) {
			return pl.Name
		}
	}
	return ""
}
