package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic; an error
// is always an *Error listing at least one problem, each with a message;
// a configuration satisfies what validation promises, and parsing the same
// input again gives an equal configuration.
//
// Seeds: validYAML, ../testdata/*.yaml, testdata/*.yaml and the corpus in
// testdata/fuzz/FuzzParse. Run with
//
//	go test ./config -run='^$' -fuzz=FuzzParse -fuzztime=60s
func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML))
	for _, pattern := range []string{"../testdata/*.yaml", "testdata/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(strings.Replace(edit("  client_secret: s3cret", "  client_secret_file: testdata/secrets/client.secret"),
		"  secret: "+rawSecret, "  secret_file: testdata/secrets/cookie.secret", 1)))
	env := testEnv(exampleEnv)

	f.Fuzz(func(t *testing.T, data []byte) {
		if namesOtherFile(data, env) {
			t.Skip("names a secret file outside testdata/secrets")
		}
		cfg, err := Parse(data, env)
		if err != nil {
			ce, ok := err.(*Error)
			switch {
			case !ok:
				t.Fatalf("error is %T (%v), want *Error", err, err)
			case cfg != nil:
				t.Fatalf("config %+v returned with error %v", cfg, err)
			case len(ce.Problems) == 0:
				t.Fatalf("*Error without problems")
			}
			for _, p := range ce.Problems {
				if p.Msg == "" {
					t.Fatalf("problem without a message: %#v", p)
				}
			}
			return
		}
		if cfg == nil {
			t.Fatal("neither a config nor an error")
		}
		checkValid(t, cfg)
		again, err := Parse(data, env)
		if err != nil {
			t.Fatalf("second Parse failed: %v", err)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("second Parse differs:\n%+v\n%+v", cfg, again)
		}
	})
}

// checkValid checks what validation promises of a configuration.
func checkValid(t *testing.T, c *Config) {
	t.Helper()
	if c.External == nil || c.UpstreamURL == nil {
		t.Fatalf("External = %v, UpstreamURL = %v; want both set", c.External, c.UpstreamURL)
	}
	if c.External.Path != "" || c.External.User != nil || c.External.RawQuery != "" {
		t.Errorf("External = %q has a path, user info or query", c.External)
	}
	if c.External.Scheme != "https" && !c.InsecureAllowHTTP && !IsLoopback(c.External.Hostname()) {
		t.Errorf("External = %q: plain http to a host that is not loopback", c.External)
	}
	if c.OIDC.Issuer == "" || c.OIDC.ClientID == "" || c.OIDC.ClientSecret == "" {
		t.Errorf("OIDC = %+v: issuer, client ID or secret empty", c.OIDC)
	}
	if !slices.Contains(c.OIDC.Scopes, "openid") {
		t.Errorf("Scopes = %q lack openid", c.OIDC.Scopes)
	}
	if len(c.Cookie.Keys) == 0 {
		t.Error("no cookie keys")
	}
	for i, k := range c.Cookie.Keys {
		if len(k) < MinSecretBytes {
			t.Errorf("Keys[%d] has %d bytes", i, len(k))
		}
	}
	s := c.Session
	if s.IdleTimeout <= 0 || s.IdleTimeout > s.AbsoluteTimeout || s.AbsoluteTimeout > MaxAbsoluteTimeout || s.MaxSessions < 1 {
		t.Errorf("Session = %+v out of bounds", s)
	}
	for _, d := range []struct {
		name string
		v    int64
	}{
		{"UpstreamTimeout", int64(c.UpstreamTimeout)}, {"OIDC.Timeout", int64(c.OIDC.Timeout)},
		{"ReadHeaderTimeout", int64(c.Server.ReadHeaderTimeout)}, {"Server.IdleTimeout", int64(c.Server.IdleTimeout)},
		{"ShutdownTimeout", int64(c.Server.ShutdownTimeout)},
	} {
		if d.v <= 0 {
			t.Errorf("%s = %d, want > 0", d.name, d.v)
		}
	}
	if c.Server.MaxHeaderBytes < 4096 || c.Server.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes = %d", c.Server.MaxHeaderBytes)
	}
	seen := map[string]bool{}
	for _, h := range []string{c.Headers.User, c.Headers.Email, c.Headers.Groups, c.Headers.Name} {
		n := NormalizeHeader(h)
		if h == "" || seen[n] {
			t.Errorf("Headers = %+v: empty or repeated name %q", c.Headers, h)
		}
		seen[n] = true
	}
	if c.Cookie.Name == "" || strings.HasPrefix(strings.ToLower(c.Cookie.Name), "__host-") {
		t.Errorf("Cookie.Name = %q", c.Cookie.Name)
	}
}

// fuzzSecretFiles are the files an input may name with a path; any name
// without a path separator is fine too, since in the package directory it
// is a small Go file, testdata, or nothing.
var fuzzSecretFiles = []string{
	"testdata/secrets/client.secret",
	"testdata/secrets/cookie.secret",
	"testdata/secrets/empty.secret",
}

// namesOtherFile reports whether data might make Parse read a file other
// than those: a key ending in _file whose value, after ${VAR} expansion,
// holds a path separator. Parse reads secret files whole, so a file such
// as /dev/zero or a FIFO would never return.
func namesOtherFile(data []byte, env func(string) (string, bool)) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return false // Parse stops at the YAML error
	}
	var walk func(n *yaml.Node) bool
	walk = func(n *yaml.Node) bool {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if !strings.HasSuffix(k.Value, "_file") {
					continue
				}
				if v.Kind != yaml.ScalarNode {
					return true
				}
				val, _ := expandEnv(v.Value, env)
				if strings.ContainsAny(val, `/\`) && !slices.Contains(fuzzSecretFiles, val) {
					return true
				}
			}
		}
		return slices.ContainsFunc(n.Content, walk)
	}
	return walk(&doc)
}
