package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse_SessionPlaces(t *testing.T) {
	// places returns baseYAML with session.places holding entries (one
	// YAML flow mapping each); entry i starts on line 11+2i, its name on
	// line 12+2i.
	places := func(entries ...string) string {
		var b strings.Builder
		b.WriteString("session:\n  places:\n")
		for _, e := range entries {
			b.WriteString(e)
		}
		return plus(b.String())
	}
	entry := func(network, name string) string {
		return "    - network: " + network + "\n      name: " + name + "\n"
	}
	runParseCases(t, []parseCase{
		{
			name: "IPv4, IPv6 and one address",
			yaml: places(entry("10.1.0.0/16", "Berlin office"), entry("2001:db8:1::/48", "Lisbon office"), entry("192.0.2.7", `"VPN exit"`)),
			check: func(t *testing.T, c *Config) {
				want := []Place{
					{Network: "10.1.0.0/16", Name: "Berlin office", Prefix: netip.MustParsePrefix("10.1.0.0/16")},
					{Network: "2001:db8:1::/48", Name: "Lisbon office", Prefix: netip.MustParsePrefix("2001:db8:1::/48")},
					{Network: "192.0.2.7", Name: "VPN exit", Prefix: netip.MustParsePrefix("192.0.2.7/32")},
				}
				if len(c.Session.Places) != len(want) {
					t.Fatalf("session.places = %+v, want %+v", c.Session.Places, want)
				}
				for i := range want {
					if c.Session.Places[i] != want[i] {
						t.Errorf("session.places[%d] = %+v, want %+v", i, c.Session.Places[i], want[i])
					}
				}
			},
		},
		{
			name:  "absent: none",
			yaml:  validYAML,
			check: func(t *testing.T, c *Config) { equal(t, "len(session.places)", len(c.Session.Places), 0) },
		},
		{
			name: "not a network",
			yaml: places(entry("10.1.0.0/33", "Berlin office"), entry("berlin", "Berlin office"), entry("fe80::1%eth0", "Link")),
			want: []string{
				`session.places[0].network (line 11): "10.1.0.0/33" is not a CIDR network or IP address; write e.g. 10.1.0.0/16, 2001:db8:1::/48 or 192.0.2.7`,
				`session.places[1].network (line 13): "berlin" is not a CIDR network or IP address; write e.g. 10.1.0.0/16, 2001:db8:1::/48 or 192.0.2.7`,
				`session.places[2].network (line 15): "fe80::1%eth0" is not a CIDR network or IP address; write e.g. 10.1.0.0/16, 2001:db8:1::/48 or 192.0.2.7`,
			},
		},
		{
			name: "host bits set",
			yaml: places(entry("10.1.2.3/16", "Berlin office"), entry("2001:db8:1::5/48", "Lisbon office")),
			want: []string{
				`session.places[0].network (line 11): "10.1.2.3/16" has bits set beyond its /16 prefix; write 10.1.0.0/16`,
				`session.places[1].network (line 13): "2001:db8:1::5/48" has bits set beyond its /48 prefix; write 2001:db8:1::/48`,
			},
		},
		{
			name: "IPv4-mapped IPv6",
			yaml: places(entry("::ffff:10.1.0.0/112", "Berlin office")),
			want: []string{
				`session.places[0].network (line 11): "::ffff:10.1.0.0/112" is an IPv4-mapped IPv6 network; write the IPv4 network (e.g. 10.1.0.0/16): client addresses are looked up as IPv4`,
			},
		},
		{
			name: "duplicate network",
			yaml: places(entry("10.1.0.0/16", "Berlin office"), entry("10.2.0.0/16", "Paris office"), entry("10.1.0.0/16", "Berlin lab"), entry("192.0.2.7", "VPN"), entry("192.0.2.7/32", "VPN again")),
			want: []string{
				`session.places[2].network (line 15): 10.1.0.0/16 is already session.places[0] ("Berlin office"); give each network once`,
				`session.places[4].network (line 19): 192.0.2.7/32 is already session.places[3] ("VPN"); give each network once`,
			},
		},
		{
			name: "empty name",
			yaml: places(entry("10.1.0.0/16", `""`), entry("10.2.0.0/16", `"  "`), "    - network: 10.3.0.0/16\n"),
			want: []string{
				`session.places[0].name (line 12): must name the place, e.g. "Berlin office" (got "")`,
				`session.places[1].name (line 14): must name the place, e.g. "Berlin office" (got "  ")`,
				`session.places[2].name: must name the place, e.g. "Berlin office" (got "")`,
			},
		},
		{
			name: "name too long",
			yaml: places(entry("10.1.0.0/16", strings.Repeat("ä", MaxPlaceName+1))),
			want: []string{
				`session.places[0].name (line 12): is 65 characters; use at most 64 (got "` + strings.Repeat("ä", MaxPlaceName+1) + `")`,
			},
		},
		{
			name: "longest name",
			yaml: places(entry("10.1.0.0/16", strings.Repeat("ä", MaxPlaceName))),
		},
		{
			name: "control characters",
			yaml: places(entry("10.1.0.0/16", `"Berlin\noffice"`), entry("10.3.0.0/16", `"Rome\u0007"`)),
			want: []string{
				`session.places[0].name (line 12): must be one line of text without control characters (got "Berlin\noffice")`,
				`session.places[1].name (line 14): must be one line of text without control characters (got "Rome\a")`,
			},
		},
	})
}
