package devidp

import (
	"bytes"
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
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"gopkg.in/yaml.v3"
)

// Defaults of `gatehouse devidp`: the provider on 4181, gatehouse on 4180
// (gatehouse's own default listen address), as in `gatehouse demo`.
const (
	DefaultListen      = "127.0.0.1:4181"
	DefaultClientID    = "gatehouse"
	DefaultRedirectURI = "http://127.0.0.1:4180/_gatehouse/callback"
)

// ServerOptions configure the development provider run on its own
// (`gatehouse devidp`), for trying a real configuration or running an app
// behind gatehouse without an outside identity provider.
type ServerOptions struct {
	// Listen is a loopback host:port; default DefaultListen. Anyone who
	// reaches the provider can sign in as any of its users (there are no
	// passwords), so other addresses are refused.
	Listen string
	// ClientID is the one client's ID; default DefaultClientID.
	ClientID string
	// ClientSecret is the client's secret; default a fresh random one.
	ClientSecret string
	// RedirectURIs are the allowed redirect URIs; default
	// DefaultRedirectURI.
	RedirectURIs []string
	// PostLogoutRedirectURIs default to the signed-out page next to each
	// redirect URI that is gatehouse's callback.
	PostLogoutRedirectURIs []string
	// Users default to DefaultUsers().
	Users  []User
	Logger *slog.Logger
}

// Server is a development provider listening on its own.
type Server struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURIs []string
	Provider     *Provider
	ln           net.Listener
	users        []User
}

// Listen checks opts, binds the loopback address and builds the provider;
// Serve then answers requests.
func Listen(opts ServerOptions) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	host, _, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q is not host:port; write e.g. %s", opts.Listen, DefaultListen)
	}
	if !config.IsLoopback(host) {
		return nil, fmt.Errorf("listen address %q is not loopback: the development provider has no passwords, so anyone who reaches it can sign in as any user; listen on 127.0.0.1, [::1] or localhost", opts.Listen)
	}
	if opts.ClientID == "" {
		opts.ClientID = DefaultClientID
	}
	if opts.ClientSecret == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		opts.ClientSecret = base64.RawURLEncoding.EncodeToString(b[:])
	}
	if len(opts.RedirectURIs) == 0 {
		opts.RedirectURIs = []string{DefaultRedirectURI}
	}
	if opts.PostLogoutRedirectURIs == nil {
		for _, u := range opts.RedirectURIs {
			if base, ok := strings.CutSuffix(u, "/_gatehouse/callback"); ok {
				opts.PostLogoutRedirectURIs = append(opts.PostLogoutRedirectURIs, base+"/_gatehouse/signed-out")
			}
		}
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (choose another port with -listen)", opts.Listen, err)
	}
	s := &Server{
		Issuer:       "http://" + ln.Addr().String(),
		ClientID:     opts.ClientID,
		ClientSecret: opts.ClientSecret,
		RedirectURIs: opts.RedirectURIs,
		ln:           ln,
	}
	s.Provider, err = New(Options{
		Issuer:                 s.Issuer,
		ClientID:               opts.ClientID,
		ClientSecret:           opts.ClientSecret,
		RedirectURIs:           opts.RedirectURIs,
		PostLogoutRedirectURIs: opts.PostLogoutRedirectURIs,
		Users:                  opts.Users,
		Logger:                 opts.Logger,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.users = s.Provider.users
	return s, nil
}

// Serve answers requests until ctx ends, then shuts down within five
// seconds.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{Handler: s.Provider, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// PrintWelcome tells the operator the issuer, the users and the oidc:
// block to paste into gatehouse's configuration.
func (s *Server) PrintWelcome(w io.Writer) error {
	var users []string
	for _, u := range s.users {
		d := u.Subject
		if u.Email != "" {
			d += " <" + u.Email + ">"
		}
		if len(u.Groups) > 0 {
			d += " (" + strings.Join(u.Groups, ", ") + ")"
		}
		users = append(users, d)
	}
	fmt.Fprintf(w, `gatehouse development provider (loopback only, not for production; stop it with Ctrl-C)

  issuer:        %s
  redirect URIs: %s
  users:         %s
                 (sign in by choosing one: there are no passwords)

Paste into gatehouse.yaml%s:

`, s.Issuer, strings.Join(s.RedirectURIs, " "), strings.Join(users, "\n                 "), s.externalNote())
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	type oidcBlock struct {
		Issuer       string   `yaml:"issuer"`
		ClientID     string   `yaml:"client_id"`
		ClientSecret string   `yaml:"client_secret"`
		Scopes       []string `yaml:"scopes,flow"`
	}
	if err := enc.Encode(map[string]oidcBlock{"oidc": {s.Issuer, s.ClientID, s.ClientSecret, []string{"openid", "email", "profile", "groups"}}}); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}

// externalNote names the external_url that goes with the first redirect
// URI, when it is gatehouse's callback.
func (s *Server) externalNote() string {
	if base, ok := strings.CutSuffix(s.RedirectURIs[0], "/_gatehouse/callback"); ok {
		return " (with external_url: " + base + ")"
	}
	return ""
}

// userName is what -user and a users file accept as a user's name: it
// becomes the subject and preferred_username.
var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseUserFlag reads -user NAME[:GROUP,GROUP...]. NAME may be an email
// address, whose local part is then the name; otherwise the email is
// NAME@example.com.
func ParseUserFlag(v string) (User, error) {
	name, groups, _ := strings.Cut(v, ":")
	email := name + "@example.com"
	if local, _, ok := strings.Cut(name, "@"); ok {
		email, name = name, local
	}
	u := User{Subject: name, PreferredUsername: name, Name: name, Email: email, EmailVerified: true}
	if groups != "" {
		u.Groups = strings.Split(groups, ",")
	}
	if err := checkUser(u); err != nil {
		return User{}, fmt.Errorf("-user %q: %w; write NAME[:GROUP,GROUP...], e.g. alice:admins,staff", v, err)
	}
	return u, nil
}

func checkUser(u User) error {
	if !userName.MatchString(u.Subject) {
		return fmt.Errorf("name %q must be 1 to 64 letters, digits, '.', '_' or '-'", u.Subject)
	}
	if at := strings.Index(u.Email, "@"); at <= 0 || at == len(u.Email)-1 || strings.ContainsAny(u.Email, " \t<>,") {
		return fmt.Errorf("email %q is not an address", u.Email)
	}
	for _, g := range u.Groups {
		if strings.TrimSpace(g) == "" || g != strings.TrimSpace(g) || strings.Contains(g, ",") {
			return fmt.Errorf("group %q must be non-empty, without spaces around it or commas", g)
		}
	}
	return nil
}

// usersFile is the -users file:
//
//	users:
//	  - name: alice                 # subject and preferred_username
//	    email: alice@corp.example   # default NAME@example.com
//	    display_name: Alice Example # default NAME
//	    groups: [admins, staff]
//	    email_verified: false       # default true
type usersFile struct {
	Users []user `yaml:"users"`
}

// user is one entry of a users file.
type user struct {
	Name          string   `yaml:"name"`
	Email         string   `yaml:"email"`
	DisplayName   string   `yaml:"display_name"`
	Groups        []string `yaml:"groups"`
	EmailVerified *bool    `yaml:"email_verified"`
}

// LoadUsers reads a -users file. Unknown keys are refused, so that a typo
// (or a password, which the provider does not have) is not ignored.
func LoadUsers(path string) ([]User, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f usersFile
	if err := dec.Decode(&f); err != nil {
		if strings.Contains(err.Error(), "field password not found") {
			return nil, fmt.Errorf("users file %s: %w: the development provider has no passwords (people sign in by choosing a user), so remove it", path, err)
		}
		return nil, fmt.Errorf("users file %s: %w (keys: users: [{name, email, display_name, groups, email_verified}])", path, err)
	}
	if len(f.Users) == 0 {
		return nil, fmt.Errorf("users file %s: no users; list them under users:, e.g. users: [{name: alice, groups: [admins]}]", path)
	}
	users := make([]User, 0, len(f.Users))
	for i, fu := range f.Users {
		u := User{Subject: fu.Name, PreferredUsername: fu.Name, Name: fu.DisplayName, Email: fu.Email, Groups: fu.Groups, EmailVerified: true}
		if u.Email == "" {
			u.Email = fu.Name + "@example.com"
		}
		if u.Name == "" {
			u.Name = fu.Name
		}
		if fu.EmailVerified != nil {
			u.EmailVerified = *fu.EmailVerified
		}
		if err := checkUser(u); err != nil {
			return nil, fmt.Errorf("users file %s: users[%d]: %w", path, i, err)
		}
		users = append(users, u)
	}
	return users, nil
}
