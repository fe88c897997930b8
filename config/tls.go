package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// CertExpiryWarning is how close to its expiry a certificate is warned
// about, at load, by gatehouse check and at every reload of the pair.
const CertExpiryWarning = 14 * 24 * time.Hour

// makeCert is the fix offered for a missing or unusable certificate.
const makeCert = "for a test, openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 " +
	"-subj /CN=app.example.com -addext subjectAltName=DNS:app.example.com -keyout key.pem -out cert.pem"

// KeyPairError is a problem with a TLS certificate and key pair. Key is
// the configuration key at fault (tls.cert_file or tls.key_file), File
// the file it names.
type KeyPairError struct {
	Key, File, Msg string
}

func (e *KeyPairError) Error() string { return e.Key + " (" + e.File + "): " + e.Msg }

// LoadKeyPair reads a certificate chain and its private key, as
// tls.cert_file and tls.key_file name them, and checks that they can
// serve host at now: both PEM, the key matching the first certificate,
// that certificate valid at now and naming host in its subjectAltName
// (wildcards count; an empty host skips the check). It returns the pair
// with Leaf set, and a warning when the certificate expires within
// CertExpiryWarning. Every error is a *KeyPairError saying how to fix it.
func LoadKeyPair(certFile, keyFile, host string, now time.Time) (*tls.Certificate, string, error) {
	certErr := func(format string, args ...any) error {
		return &KeyPairError{Key: "tls.cert_file", File: certFile, Msg: fmt.Sprintf(format, args...)}
	}
	keyErr := func(format string, args ...any) error {
		return &KeyPairError{Key: "tls.key_file", File: keyFile, Msg: fmt.Sprintf(format, args...)}
	}
	certPEM, err := readSecretFile(certFile)
	if err != nil {
		return nil, "", certErr("cannot read: %v", err)
	}
	keyPEM, err := readSecretFile(keyFile)
	if err != nil {
		return nil, "", keyErr("cannot read: %v", err)
	}
	chain, err := parseChain(certPEM)
	if err != nil {
		return nil, "", certErr("%v", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, "", keyErr("%v", err)
	}
	leaf := chain[0]
	if !samePublicKey(leaf.PublicKey, key) {
		for i, c := range chain[1:] {
			if samePublicKey(c.PublicKey, key) {
				return nil, "", certErr("the key in tls.key_file belongs to certificate #%d of the file, not the first; put the server's certificate first, then its intermediates", i+2)
			}
		}
		return nil, "", keyErr("does not match the certificate in tls.cert_file (%s): give the private key the certificate was issued for", describeCert(leaf))
	}
	switch {
	case now.Before(leaf.NotBefore):
		return nil, "", certErr("the certificate (%s) is not valid before %s; check this machine's clock, or wait", describeCert(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, "", certErr("the certificate (%s) expired at %s; renew it", describeCert(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			return nil, "", certErr("the certificate names %s, not external_url's host %s; issue one whose subjectAltName includes %s", certNames(leaf), host, host)
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil { // the checks above should have caught it
		return nil, "", keyErr("unusable with the certificate: %v", err)
	}
	pair.Leaf = leaf
	warning := ""
	if left := leaf.NotAfter.Sub(now); left < CertExpiryWarning {
		warning = fmt.Sprintf("tls.cert_file (%s): the certificate expires at %s, in %s; renew it (gatehouse picks up the new files without a restart)",
			certFile, leaf.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Minute))
	}
	return &pair, warning, nil
}

// parseChain returns the certificates of a PEM file, in order.
func parseChain(data []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, errors.New("holds a private key; tls.cert_file is the certificate, tls.key_file the key")
			}
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate #%d does not parse: %v", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the certificate chain in PEM, the server's certificate first; " + makeCert)
	}
	return chain, nil
}

// parseKey returns the private key of a PEM file: PKCS #8, SEC 1 (EC) or
// PKCS #1 (RSA), unencrypted.
func parseKey(data []byte) (crypto.PrivateKey, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			if b.Type == "CERTIFICATE" {
				return nil, errors.New("holds a certificate, not a key; tls.key_file is the PEM-encoded private key, tls.cert_file the certificate")
			}
			continue
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errors.New("the private key is encrypted with a passphrase; gatehouse needs it unencrypted: openssl pkey -in key.pem -out key-plain.pem (and keep that file readable by gatehouse only)")
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("the %s block does not parse as a PKCS #8, EC or RSA private key; give a PEM-encoded private key (openssl pkey -in key.pem -out key-pkcs8.pem)", b.Type)
	}
	return nil, errors.New("holds no PEM-encoded private key (-----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY); give the key the certificate was issued for")
}

// samePublicKey reports whether priv is the private half of pub.
func samePublicKey(pub any, priv crypto.PrivateKey) bool {
	var p crypto.PublicKey
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		p = &k.PublicKey
	case *rsa.PrivateKey:
		p = &k.PublicKey
	case ed25519.PrivateKey:
		p = k.Public()
	default:
		return false
	}
	eq, ok := p.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub)
}

// describeCert names a certificate for messages: subject and expiry.
func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("subject %q, names %s, expires %s", c.Subject.String(), certNames(c), c.NotAfter.UTC().Format(time.RFC3339))
}

// certNames lists the names a certificate is valid for.
func certNames(c *x509.Certificate) string {
	var names []string
	for _, d := range c.DNSNames {
		names = append(names, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		names = append(names, "IP:"+ip.String())
	}
	if len(names) == 0 {
		return "no subjectAltName (browsers ignore the common name)"
	}
	return strings.Join(names, ", ")
}

// tlsSection checks the tls section: both files or neither, an https
// external_url, a usable pair, and a redirect address apart from the
// other listeners.
func (v *validator) tlsSection(c *Config) {
	t := &c.TLS
	if t.CertFile == "" && t.KeyFile == "" {
		if t.RedirectHTTP != "" {
			v.add("tls.redirect_http", "redirects to HTTPS that gatehouse serves itself; give tls.cert_file and tls.key_file too, or remove redirect_http")
		}
		return
	}
	switch {
	case t.CertFile == "":
		v.add("tls.cert_file", "required with tls.key_file: the PEM certificate chain for external_url's host; or remove key_file to serve plain HTTP behind a TLS proxy")
	case t.KeyFile == "":
		v.add("tls.key_file", "required with tls.cert_file: the certificate's PEM-encoded private key; or remove cert_file to serve plain HTTP behind a TLS proxy")
	}
	host := ""
	if c.External != nil {
		host = c.External.Hostname()
		if c.External.Scheme != "https" {
			v.add("external_url", "must be https when gatehouse serves TLS itself (tls.cert_file); write https://%s", c.External.Host)
		}
	}
	if r := t.RedirectHTTP; r != "" {
		if _, port, err := net.SplitHostPort(r); err != nil || !validPort(port) {
			v.add("tls.redirect_http", "%q is not host:port; write e.g. :80 or 127.0.0.1:8080", r)
		} else if r == c.Listen || r == c.Admin.Listen {
			v.add("tls.redirect_http", "%s is taken by listen or admin.listen; give the plain HTTP redirect its own port, e.g. :80", r)
		}
	}
	if !t.Enabled() {
		return
	}
	_, warning, err := LoadKeyPair(t.CertFile, t.KeyFile, host, time.Now())
	var ke *KeyPairError
	switch {
	case errors.As(err, &ke):
		v.add(ke.Key, "%s: %s", ke.File, ke.Msg)
	case err != nil:
		v.add("tls.cert_file", "%v", err)
	case warning != "":
		c.Warnings = append(c.Warnings, warning)
	}
}
