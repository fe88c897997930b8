package config

import "testing"

func TestParse_ACRValuesAndNewDevice(t *testing.T) {
	route := routesOnly + "routes:\n  - match: {path_prefix: /admin}\n    upstream: http://127.0.0.1:9000\n"
	runParseCases(t, []parseCase{
		{
			name: "acr_values on a route",
			yaml: route + "    acr_values: [mfa, \"urn:example:loa:2\"]\n",
			check: func(t *testing.T, c *Config) {
				equal(t, "ACRValues", c.Routes[0].ACRValues, []string{"mfa", "urn:example:loa:2"})
			},
		},
		{
			name: "acr_values must be usable values",
			yaml: route + "    acr_values: [\"two words\", mfa, mfa, \"\"]\n",
			want: []string{
				`routes[0].acr_values (line 11): "two words" holds a space, quote, backslash or non-ASCII character; acr values are sent space-separated`,
				`routes[0].acr_values (line 11): "mfa" is listed twice`,
				`routes[0].acr_values (line 11): "" must be 1 to 128 characters`,
			},
		},
		{
			name: "acr_values must not be empty",
			yaml: route + "    acr_values: []\n",
			want: []string{"routes[0].acr_values (line 11): must list at least one value, e.g. [mfa]; leave it out for any acr"},
		},
		{
			name: "new_device with its header",
			yaml: plus("session:\n  new_device: true\nheaders:\n  new_device: X-New-Device\n"),
			check: func(t *testing.T, c *Config) {
				equal(t, "Session.NewDevice", c.Session.NewDevice, true)
				equal(t, "Headers.NewDevice", c.Headers.NewDevice, "X-New-Device")
			},
		},
		{
			name: "headers.new_device needs session.new_device and its own name",
			yaml: plus("headers:\n  new_device: X-Forwarded-User\n"),
			want: []string{
				`headers.new_device (line 10): "X-Forwarded-User" is already used by headers.user; each identity header needs its own name`,
				`headers.new_device (line 10): needs session.new_device: true, which notices the new browsers (got "X-Forwarded-User" without it)`,
			},
		},
	})
}
