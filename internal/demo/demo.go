// Package demo assembles `gatehouse demo`: a development OpenID provider,
// a demo app that shows the identity headers it receives, and gatehouse in
// front of the app, all on loopback addresses, with fresh random secrets
// at every start.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/demoapp"
	"github.com/gatehouse/gatehouse/internal/devca"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/serve"
	"github.com/gatehouse/gatehouse/internal/tlsserve"
	"github.com/gatehouse/gatehouse/proxy"
)

// Options configure the demo. Zero values take the defaults.
type Options struct {
	Listen    string // gatehouse, default 127.0.0.1:4180
	IdPListen string // development provider, default 127.0.0.1:4181
	AppListen string // demo app, default 127.0.0.1:4182
	// AllowGroups is the demo's policy; default [admins], so alice passes
	// and bob sees the 403 page.
	AllowGroups []string
	// ExtraYAML is appended to the demo's configuration (e.g. shorter
	// session timeouts for a test); it must not repeat allow.
	ExtraYAML string
	// TLS serves gatehouse over HTTPS (external_url https://...) with a
	// certificate for 127.0.0.1 and localhost from a throwaway CA made at
	// start, its files in a temporary directory removed by Close. The
	// development provider and the demo app stay on plain HTTP.
	TLS bool
	// Adjust, when set, changes the parsed and validated configuration
	// before the gateway is built: for tests that need a value the
	// validation refuses an operator, such as a bound-cookie lifetime of
	// seconds, so that a browser test sees several in a few seconds.
	Adjust func(*config.Config)
	Logger *slog.Logger
	Now    func() time.Time
}

// Demo is a running demo: its three servers and its gateway.
type Demo struct {
	URL     string // gatehouse, e.g. http://127.0.0.1:4180
	IdPURL  string
	AppURL  string
	IdP     *devidp.Provider
	Gateway *proxy.Gateway
	Config  *config.Config
	// With Options.TLS: the CA certificate's file (for curl --cacert or
	// a trust store), and the SHA-256 SPKI fingerprint of gatehouse's
	// certificate, base64, as Chromium's
	// --ignore-certificate-errors-spki-list takes it.
	CAFile          string
	SPKIFingerprint string
	servers         []*http.Server
	tmpDir          string
}

// Start binds the three listeners (loopback only) and serves until ctx
// ends or Close is called.
func Start(ctx context.Context, opts Options) (*Demo, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.AllowGroups) == 0 {
		opts.AllowGroups = []string{"admins"}
	}
	addrs := []*string{&opts.Listen, &opts.IdPListen, &opts.AppListen}
	for i, def := range []string{"127.0.0.1:4180", "127.0.0.1:4181", "127.0.0.1:4182"} {
		if *addrs[i] == "" {
			*addrs[i] = def
		}
	}
	lns := make([]net.Listener, 0, 3)
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(*a)
		if err != nil || !config.IsLoopback(host) {
			closeAll()
			return nil, fmt.Errorf("demo address %q: the demo listens on loopback only, e.g. 127.0.0.1:4180", *a)
		}
		ln, err := net.Listen("tcp", *a)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen on %s: %w (is another demo running? choose other ports with -listen, -idp-listen, -app-listen)", *a, err)
		}
		lns = append(lns, ln)
	}
	d := &Demo{
		URL:    "http://" + lns[0].Addr().String(),
		IdPURL: "http://" + lns[1].Addr().String(),
		AppURL: "http://" + lns[2].Addr().String(),
	}
	tlsYAML := ""
	if opts.TLS {
		d.URL = "https://" + lns[0].Addr().String()
		var err error
		if tlsYAML, err = d.makeCertificate(); err != nil {
			closeAll()
			d.removeFiles()
			return nil, fmt.Errorf("demo certificate: %w", err)
		}
	}
	clientSecret, cookieSecret := randomSecret(), randomSecret()
	idp, err := devidp.New(devidp.Options{
		Issuer:                 d.IdPURL,
		ClientID:               "gatehouse-demo",
		ClientSecret:           clientSecret,
		RedirectURIs:           []string{d.URL + "/_gatehouse/callback"},
		PostLogoutRedirectURIs: []string{d.URL + "/_gatehouse/signed-out"},
		Now:                    opts.Now,
		Logger:                 opts.Logger,
	})
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("development provider: %w", err)
	}
	d.IdP = idp
	yml := fmt.Sprintf(`listen: %s
external_url: %s
upstream: %s
oidc:
  issuer: %s
  client_id: gatehouse-demo
  client_secret: %s
  scopes: [openid, email, profile, groups]
cookie:
  secret: %s
allow:
  groups: [%s]
%s%s`, lns[0].Addr(), d.URL, d.AppURL, d.IdPURL, clientSecret, cookieSecret, strings.Join(opts.AllowGroups, ", "), tlsYAML, opts.ExtraYAML)
	fail := func(err error) (*Demo, error) {
		closeAll()
		d.removeFiles()
		return nil, err
	}
	cfg, err := config.Parse([]byte(yml), func(string) (string, bool) { return "", false })
	if err != nil {
		return fail(fmt.Errorf("demo configuration: %w", err))
	}
	if opts.Adjust != nil {
		opts.Adjust(cfg)
	}
	d.Config = cfg
	var certs *tlsserve.Holder
	if cfg.TLS.Enabled() {
		if certs, err = tlsserve.NewHolder(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.External.Hostname(), opts.Logger, opts.Now); err != nil {
			return fail(err)
		}
	}
	gw, err := serve.NewGateway(cfg, serve.GatewayOptions{Logger: opts.Logger, Now: opts.Now})
	if err != nil {
		return fail(err)
	}
	d.Gateway = gw
	go gw.Run(ctx)

	gwServer := gw.Server()
	if certs != nil {
		gwServer.TLSConfig = tlsserve.ServerConfig(certs)
	}
	app := demoapp.Handler(demoapp.Options{
		HeaderNames: []string{cfg.Headers.User, cfg.Headers.Email, cfg.Headers.Groups, cfg.Headers.Name},
		LogoutPath:  "/_gatehouse/logout",
		WhoamiPath:  "/_gatehouse/whoami",
	})
	d.servers = []*http.Server{
		gwServer,
		{Handler: idp, ReadHeaderTimeout: 10 * time.Second},
		{Handler: app, ReadHeaderTimeout: 10 * time.Second},
	}
	for i, s := range d.servers {
		go func() {
			serve := s.Serve
			if s.TLSConfig != nil {
				serve = func(ln net.Listener) error { return s.ServeTLS(ln, "", "") }
			}
			if err := serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				opts.Logger.Error("demo server stopped", "addr", lns[i].Addr().String(), "err", err)
			}
		}()
	}
	go func() {
		<-ctx.Done()
		d.Close()
	}()
	return d, nil
}

// Close stops the demo's servers.
func (d *Demo) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range d.servers {
		_ = s.Shutdown(ctx)
	}
	d.removeFiles()
}

// makeCertificate makes a throwaway CA and a certificate for 127.0.0.1,
// ::1 and localhost, writes them to a new temporary directory, and
// returns the configuration's tls section naming the files.
func (d *Demo) makeCertificate() (string, error) {
	ca, err := devca.New("gatehouse demo CA (throwaway)")
	if err != nil {
		return "", err
	}
	pair, err := ca.IssueFor("127.0.0.1", "::1", "localhost")
	if err != nil {
		return "", err
	}
	if d.tmpDir, err = os.MkdirTemp("", "gatehouse-demo-tls-"); err != nil {
		return "", err
	}
	certFile, keyFile := filepath.Join(d.tmpDir, "cert.pem"), filepath.Join(d.tmpDir, "key.pem")
	d.CAFile = filepath.Join(d.tmpDir, "ca.pem")
	if err := os.WriteFile(d.CAFile, ca.CertPEM, 0o644); err != nil {
		return "", err
	}
	if err := pair.Write(certFile, keyFile); err != nil {
		return "", err
	}
	d.SPKIFingerprint = devca.SPKIFingerprint(pair.Leaf)
	return fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n", certFile, keyFile), nil
}

// removeFiles removes the demo's certificate files, if it made any.
func (d *Demo) removeFiles() {
	if d.tmpDir != "" {
		_ = os.RemoveAll(d.tmpDir)
	}
}

// PrintWelcome tells a person what to open and how to sign in.
func (d *Demo) PrintWelcome(w io.Writer) {
	fmt.Fprintf(w, `gatehouse demo is running (loopback only; stop it with Ctrl-C).

  Open  %s/            the demo app, behind gatehouse
  Sign in on the development provider's page as
        "alice" (groups admins, staff): the app shows who she is, or
        "bob"   (group staff): gatehouse's 403 page, since only admins may pass.
  Also  %s/_gatehouse/whoami   who you are, as JSON
        %s/_gatehouse/logout   sign out

  Development provider: %s   (not for production)
  Demo app, unprotected: %s  (gatehouse adds the identity headers it shows)
`, d.URL, d.URL, d.URL, d.IdPURL, d.AppURL)
	if d.SPKIFingerprint == "" {
		return
	}
	fmt.Fprintf(w, `
  HTTPS: gatehouse's certificate comes from a throwaway CA made for this run
  (removed when the demo stops), so browsers do not trust it by default:
        curl --cacert %s %s/_gatehouse/healthz
        chromium --user-data-dir=$(mktemp -d) --ignore-certificate-errors-spki-list=%s %s/
  The SPKI fingerprint (SHA-256, base64) of the certificate: %s
  Or import %s as a trusted authority in a throwaway browser profile.
`, d.CAFile, d.URL, d.SPKIFingerprint, d.URL, d.SPKIFingerprint, d.CAFile)
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
