package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devca"
)

// tlsFiles writes pair (or the given PEM bytes) to a new directory and
// returns the file names.
func tlsFiles(t *testing.T, certPEM, keyPEM []byte) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func testCA(t *testing.T) *devca.CA {
	t.Helper()
	ca, err := devca.New("gatehouse test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *devca.CA, notBefore, notAfter time.Time, hosts ...string) *devca.Pair {
	t.Helper()
	p, err := ca.Issue(hosts, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS_Config(t *testing.T) {
	ca := testCA(t)
	now := time.Now()
	good := issue(t, ca, now.Add(-time.Hour), now.Add(90*24*time.Hour), "app.example.com")
	other := issue(t, ca, now.Add(-time.Hour), now.Add(90*24*time.Hour), "other.example.com")
	wildcard := issue(t, ca, now.Add(-time.Hour), now.Add(90*24*time.Hour), "*.example.com")
	expired := issue(t, ca, now.Add(-48*time.Hour), now.Add(-time.Hour), "app.example.com")
	future := issue(t, ca, now.Add(time.Hour), now.Add(48*time.Hour), "app.example.com")
	soon := issue(t, ca, now.Add(-time.Hour), now.Add(3*24*time.Hour), "app.example.com")
	loopback := issue(t, ca, now.Add(-time.Hour), now.Add(90*24*time.Hour), "127.0.0.1")

	section := func(cert, key string, extra ...string) string {
		return "tls:\n  cert_file: " + cert + "\n  key_file: " + key + "\n" + strings.Join(extra, "")
	}
	files := func(p *devca.Pair) (string, string) { return tlsFiles(t, p.CertPEM, p.KeyPEM) }
	gc, gk := files(good)
	encrypted := []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n")

	for _, c := range []struct {
		name    string
		yaml    func() string
		want    []string // substrings, one problem each, in order
		warning string   // a substring of a warning
	}{
		{name: "valid pair", yaml: func() string { return plus(section(gc, gk)) }},
		{name: "wildcard covers the host", yaml: func() string { c, k := files(wildcard); return plus(section(c, k)) }},
		{name: "loopback IP in the SAN", yaml: func() string {
			c, k := files(loopback)
			return strings.Replace(plus(section(c, k)), "https://app.example.com", "https://127.0.0.1:4180", 1)
		}},
		{name: "cert without key", yaml: func() string { return plus("tls:\n  cert_file: " + gc + "\n") },
			want: []string{"tls.key_file: required with tls.cert_file"}},
		{name: "key without cert", yaml: func() string { return plus("tls:\n  key_file: " + gk + "\n") },
			want: []string{"tls.cert_file: required with tls.key_file"}},
		{name: "redirect without TLS", yaml: func() string { return plus("tls:\n  redirect_http: \":80\"\n") },
			want: []string{"tls.redirect_http (line 10): redirects to HTTPS that gatehouse serves itself; give tls.cert_file and tls.key_file too"}},
		{name: "redirect on the listen port", yaml: func() string { return plus("listen: :4180\n" + section(gc, gk, "  redirect_http: \":4180\"\n")) },
			want: []string{"tls.redirect_http (line 13): :4180 is taken by listen or admin.listen"}},
		{name: "redirect not host:port", yaml: func() string { return plus(section(gc, gk, "  redirect_http: \"80\"\n")) },
			want: []string{`tls.redirect_http (line 12): "80" is not host:port; write e.g. :80`}},
		{name: "http external_url", yaml: func() string {
			c, k := files(loopback)
			return strings.Replace(plus(section(c, k)), "https://app.example.com", "http://127.0.0.1:4180", 1)
		}, want: []string{"external_url (line 1): must be https when gatehouse serves TLS itself (tls.cert_file); write https://127.0.0.1:4180"}},
		{name: "unreadable cert", yaml: func() string { return plus(section(gc+".missing", gk)) },
			want: []string{"tls.cert_file (line 10): " + gc + ".missing: cannot read: no such file or directory"}},
		{name: "key in the cert file", yaml: func() string { return plus(section(gk, gk)) },
			want: []string{"tls.cert_file (line 10): " + gk + ": holds a private key; tls.cert_file is the certificate"}},
		{name: "no certificate", yaml: func() string { c, k := tlsFiles(t, []byte("hello\n"), good.KeyPEM); return plus(section(c, k)) },
			want: []string{"holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the certificate chain in PEM, the server's certificate first; for a test, openssl req -x509"}},
		{name: "certificate in the key file", yaml: func() string { return plus(section(gc, gc)) },
			want: []string{"tls.key_file (line 11): " + gc + ": holds a certificate, not a key; tls.key_file is the PEM-encoded private key"}},
		{name: "no key", yaml: func() string { c, k := tlsFiles(t, good.CertPEM, []byte("hello\n")); return plus(section(c, k)) },
			want: []string{"holds no PEM-encoded private key (-----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY)"}},
		{name: "encrypted key", yaml: func() string { c, k := tlsFiles(t, good.CertPEM, encrypted); return plus(section(c, k)) },
			want: []string{"the private key is encrypted with a passphrase; gatehouse needs it unencrypted: openssl pkey -in key.pem -out key-plain.pem"}},
		{name: "key of another certificate", yaml: func() string { c, k := tlsFiles(t, good.CertPEM, other.KeyPEM); return plus(section(c, k)) },
			want: []string{`tls.key_file (line 11): ` + "%k" + `: does not match the certificate in tls.cert_file (subject "CN=app.example.com", names DNS:app.example.com`}},
		{name: "leaf not first", yaml: func() string {
			c, k := tlsFiles(t, append(append([]byte{}, other.CertPEM...), good.CertPEM...), good.KeyPEM)
			return plus(section(c, k))
		}, want: []string{"the key in tls.key_file belongs to certificate #2 of the file, not the first; put the server's certificate first"}},
		{name: "expired", yaml: func() string { c, k := files(expired); return plus(section(c, k)) },
			want: []string{"the certificate (subject \"CN=app.example.com\", names DNS:app.example.com, expires " + expired.Leaf.NotAfter.UTC().Format(time.RFC3339) + ") expired at"}},
		{name: "not yet valid", yaml: func() string { c, k := files(future); return plus(section(c, k)) },
			want: []string{"is not valid before " + future.Leaf.NotBefore.UTC().Format(time.RFC3339) + "; check this machine's clock"}},
		{name: "another host", yaml: func() string { c, k := files(other); return plus(section(c, k)) },
			want: []string{"the certificate names DNS:other.example.com, not external_url's host app.example.com; issue one whose subjectAltName includes app.example.com"}},
		{name: "wildcard one level only", yaml: func() string {
			c, k := files(wildcard)
			return strings.Replace(plus(section(c, k)), "https://app.example.com", "https://a.app.example.com", 1)
		}, want: []string{"the certificate names DNS:*.example.com, not external_url's host a.app.example.com"}},
		{name: "expires within 14 days", yaml: func() string { c, k := files(soon); return plus(section(c, k)) },
			warning: "the certificate expires at " + soon.Leaf.NotAfter.UTC().Format(time.RFC3339) + ", in "},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := c.yaml()
			cfg, err := Parse([]byte(withAllow(y)), testEnv(nil))
			got := problems(t, err)
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n%s\nwant %d matching:\n%s\nconfig:\n%s", lines(got), len(c.want), lines(c.want), y)
			}
			for i, w := range c.want {
				if strings.Contains(w, "%k") { // the key file's name, which the case made
					w = strings.Split(w, "%k")[1]
				}
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q\nwant it to contain %q", i, got[i], w)
				}
			}
			if err != nil {
				return
			}
			if !cfg.TLS.Enabled() {
				t.Errorf("TLS.Enabled() = false for %+v", cfg.TLS)
			}
			found := c.warning == ""
			for _, w := range cfg.Warnings {
				if c.warning != "" && strings.Contains(w, c.warning) {
					found = true
				} else if strings.Contains(w, "tls.") {
					t.Errorf("unexpected warning %q", w)
				}
			}
			if !found {
				t.Errorf("warnings %q, want one containing %q", cfg.Warnings, c.warning)
			}
		})
	}
}

// TestTLS_LoadKeyPair checks the errors callers branch on and that the
// returned pair is the one in the files.
func TestTLS_LoadKeyPair(t *testing.T) {
	ca := testCA(t)
	p := issue(t, ca, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), "app.example.com")
	cert, key := tlsFiles(t, p.CertPEM, p.KeyPEM)
	pair, warning, err := LoadKeyPair(cert, key, "app.example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !pair.Leaf.Equal(p.Leaf) {
		t.Errorf("Leaf is %s, want the file's certificate", pair.Leaf.Subject)
	}
	if !strings.Contains(warning, "expires at") {
		t.Errorf("warning = %q for a certificate living one more day", warning)
	}
	_, _, err = LoadKeyPair(cert, key, "app.example.com", p.Leaf.NotAfter.Add(time.Second))
	var ke *KeyPairError
	if !errors.As(err, &ke) || ke.Key != "tls.cert_file" || ke.File != cert || !strings.Contains(ke.Msg, "expired") {
		t.Errorf("after NotAfter: err = %#v, want a *KeyPairError for tls.cert_file saying expired", err)
	}
}
