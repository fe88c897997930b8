package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/sessions"
)

// Policy decides whether a signed-in user may pass. A user passes when any
// one rule matches, or when the policy allows any user. A policy with no
// rules and without AnyUser lets nobody pass: configuration validation
// refuses such a policy, and should it be bypassed the proxy fails closed
// rather than open. A Policy is immutable and safe for concurrent use.
type Policy struct {
	anyUser  bool
	emails   map[string]bool // lower case
	domains  map[string]bool // exact email domains, lower case
	suffixes []string        // ".example.com" from "*.example.com"
	groups   map[string]bool
	claims   map[string]map[string]bool // claim → allowed values
	src      config.Allow               // as configured, for Explain
}

// NewPolicy builds the policy of an allow section (already validated).
func NewPolicy(a config.Allow) *Policy {
	p := &Policy{anyUser: a.AnyUser, emails: map[string]bool{}, domains: map[string]bool{}, groups: map[string]bool{}, src: a}
	for _, e := range a.Emails {
		p.emails[strings.ToLower(e)] = true
	}
	for _, d := range a.EmailDomains {
		d = strings.ToLower(d)
		if rest, ok := strings.CutPrefix(d, "*."); ok {
			p.suffixes = append(p.suffixes, "."+rest)
		} else {
			p.domains[d] = true
		}
	}
	for _, g := range a.Groups {
		p.groups[g] = true
	}
	if len(a.Claims) > 0 {
		p.claims = map[string]map[string]bool{}
		for name, vals := range a.Claims {
			set := map[string]bool{}
			for _, v := range vals {
				set[v] = true
			}
			p.claims[name] = set
		}
	}
	return p
}

// Open reports whether the policy lets every signed-in user pass: only
// when it was built with any_user: true, never because it has no rules.
func (p *Policy) Open() bool { return p.anyUser }

// Allows reports whether the session's user passes. Email rules look only
// at s.Email, which holds an email only when the identity provider
// verified it (or the operator allowed unverified ones). A nil session
// never passes.
func (p *Policy) Allows(s *sessions.Session) bool {
	if s == nil {
		return false
	}
	if p.anyUser {
		return true
	}
	for _, g := range s.Groups {
		if p.groups[g] {
			return true
		}
	}
	for name, allowed := range p.claims {
		for _, v := range s.Claims[name] {
			if allowed[v] {
				return true
			}
		}
	}
	return p.emailAllowed(s.Email)
}

func (p *Policy) emailAllowed(email string) bool {
	if email == "" {
		return false
	}
	// Exactly one @: "attacker@evil.com@example.com" has two and matches
	// nothing (GHSA-c5c4-8r6x-56w3).
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return false
	}
	email, domain = strings.ToLower(email), strings.ToLower(domain)
	if p.emails[email] || p.domains[domain] {
		return true
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(domain, s) && len(domain) > len(s) {
			return true
		}
	}
	return false
}

// maxExplained bounds how many of a rule's values Explain lists.
const maxExplained = 10

// Explain says, for a log line, which rules of the policy the user failed
// and what the user had for each, e.g. `email_domains [example.com]: the
// email's domain is "other.org"; groups [admins]: the user's groups (2)
// include none of them`. It lists at most a few values of each rule and names no other
// user's email address (only how many emails are allowed). It assumes
// Allows(s) is false.
func (p *Policy) Explain(s *sessions.Session) string {
	if s == nil {
		return "no session"
	}
	var parts []string
	domain := "none"
	if _, d, ok := strings.Cut(s.Email, "@"); ok {
		domain = fmt.Sprintf("%q", shorten(d))
	}
	if n := len(p.src.Emails); n > 0 {
		if s.Email == "" {
			parts = append(parts, fmt.Sprintf("emails (%d): the user has no verified email", n))
		} else {
			parts = append(parts, fmt.Sprintf("emails (%d): the user's email is not one of them", n))
		}
	}
	if len(p.src.EmailDomains) > 0 {
		if s.Email == "" {
			parts = append(parts, fmt.Sprintf("email_domains %s: the user has no verified email", listed(p.src.EmailDomains)))
		} else {
			parts = append(parts, fmt.Sprintf("email_domains %s: the email's domain is %s", listed(p.src.EmailDomains), domain))
		}
	}
	if len(p.src.Groups) > 0 {
		parts = append(parts, fmt.Sprintf("groups %s: the user's groups (%d) include none of them", listed(p.src.Groups), len(s.Groups)))
	}
	names := make([]string, 0, len(p.src.Claims))
	for name := range p.src.Claims {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("claims.%s %s: the user has %s", shorten(name), listed(p.src.Claims[name]), listed(s.Claims[name])))
	}
	if len(parts) == 0 {
		return "no rule (refuses everyone)"
	}
	return strings.Join(parts, "; ")
}

// listed renders a few values, shortened, as [a, b, … and 3 more].
func listed(vals []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vals[:min(len(vals), maxExplained)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(shorten(v))
	}
	if n := len(vals) - maxExplained; n > 0 {
		fmt.Fprintf(&b, ", … and %d more", n)
	}
	b.WriteByte(']')
	return b.String()
}
