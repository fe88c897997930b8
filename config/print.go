package config

import (
	"net/url"

	"gopkg.in/yaml.v3"
)

// Redacted stands for a secret in printed configurations.
const Redacted = "<redacted>"

// Print returns the effective configuration as YAML: every default filled
// in, the catch-all route spelled out, and every secret (client secret,
// cookie secrets, the password in a Redis URL) replaced by <redacted>.
func (c *Config) Print() ([]byte, error) {
	cp := *c
	redact := func(s *string) {
		if *s != "" {
			*s = Redacted
		}
	}
	redact(&cp.OIDC.ClientSecret)
	redact(&cp.Cookie.Secret)
	if len(c.Cookie.PreviousSecrets) > 0 {
		cp.Cookie.PreviousSecrets = make([]string, len(c.Cookie.PreviousSecrets))
		for i := range cp.Cookie.PreviousSecrets {
			cp.Cookie.PreviousSecrets[i] = Redacted
		}
	}
	if u, err := url.Parse(c.Session.Redis.URL); err == nil && u.User != nil {
		cp.Session.Redis.URL = u.Redacted()
	} else if err != nil {
		redact(&cp.Session.Redis.URL)
	}
	return yaml.Marshal(&cp)
}
