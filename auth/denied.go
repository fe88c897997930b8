package auth

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/sessions"
)

// A refused user's first question is "why am I denied?". The 403 page
// answers it with the identity gatehouse saw (user, email, groups), and
// the log line with the route and the rule the user failed, so neither the
// user nor the operator has to guess. Both are bounded: a provider may
// send a thousand groups of a kilobyte each.
const (
	maxShownGroups = 20 // groups named on a page or a log line
	maxShownBytes  = 80 // bytes of each value shown
)

// shorten bounds s to maxShownBytes on a rune boundary, marking a cut
// with an ellipsis.
func shorten(s string) string {
	if len(s) <= maxShownBytes {
		return s
	}
	cut := maxShownBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// shownGroups returns at most maxShownGroups of the groups, shortened, and
// how many were left out. Never nil.
func shownGroups(groups []string) ([]string, int) {
	out := make([]string, 0, min(len(groups), maxShownGroups))
	for _, g := range groups[:min(len(groups), maxShownGroups)] {
		out = append(out, shorten(g))
	}
	return out, len(groups) - len(out)
}

// seenIdentity is the user as gatehouse saw them, for a refusal page and
// its JSON: never a token. The page template escapes it.
func seenIdentity(s *sessions.Session) *web.Identity {
	groups, more := shownGroups(s.Groups)
	email := s.Email
	if email == "" {
		// Email rules see no email: say so, since this is often why.
		email = "none (the identity provider sent no verified email address)"
	}
	return &web.Identity{User: shorten(s.User), Email: shorten(email), Groups: groups, MoreGroups: more}
}

// whoText names the user in a sentence: display name and email.
func whoText(s *sessions.Session) string {
	who := shorten(s.DisplayName())
	if s.Email != "" && s.Email != s.DisplayName() {
		who += " (" + shorten(s.Email) + ")"
	}
	return who
}

// Forbidden answers a signed-in user whom the policy denies: a 403 page
// saying who they are signed in as, with the email and groups gatehouse
// saw, and offering to sign out; or JSON with the same identity for API
// clients.
func (a *Authenticator) Forbidden(w http.ResponseWriter, r *http.Request, s *sessions.Session) {
	a.pages.Fail(w, r, nil, &web.Error{
		Status: http.StatusForbidden, Code: "forbidden",
		Title: "You do not have access",
		Detail: fmt.Sprintf("You are signed in as %s, and this account may not use this application. "+
			"Below is what gatehouse received about you from the identity provider; access depends on it. "+
			"Sign out to use another account, or ask your administrator for access.", whoText(s)),
		Form:     a.logoutForm(s),
		Link:     a.sessionsLink(),
		Identity: seenIdentity(s),
	}, a.formOrigins()...)
}

// DenialAttrs are the attributes of the log line of a policy refusal: the
// rules the user failed and what the user had (email domain, groups as
// seen, bounded).
func (p *Policy) DenialAttrs(s *sessions.Session) []any {
	groups, more := shownGroups(s.Groups)
	domain := ""
	if _, d, ok := strings.Cut(s.Email, "@"); ok {
		domain = shorten(d)
	}
	return []any{"rule", p.Explain(s), "email_domain", domain, "groups", groups, "groups_not_shown", more}
}
