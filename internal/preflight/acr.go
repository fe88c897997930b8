package preflight

import (
	"fmt"
	"slices"
	"strings"
)

// acrValues warns about routes[].acr_values the provider does not say it
// supports (acr_values_supported, OIDC Discovery §3): such a provider
// may ignore the request and answer with another acr, and gatehouse then
// refuses every step-up to the route.
func (c *checker) acrValues(doc *discovery) {
	for i, r := range c.cfg.Routes {
		if len(r.ACRValues) == 0 {
			continue
		}
		key := fmt.Sprintf("routes[%d].acr_values", i)
		if len(doc.ACRSupported) == 0 {
			c.add(Warning, key, "the provider's discovery document lists no acr_values_supported, so it may ignore acr_values %v; "+
				"then every step-up to route %s is refused. Check that the provider can sign users in with one of them and reports it in the acr claim",
				r.ACRValues, r.Name)
			continue
		}
		var missing []string
		for _, v := range r.ACRValues {
			if !slices.Contains(doc.ACRSupported, v) {
				missing = append(missing, v)
			}
		}
		if len(missing) > 0 {
			c.add(Warning, key, "the provider does not list %s in acr_values_supported %v; a step-up asking only for those is refused. Use values the provider supports",
				strings.Join(missing, ", "), doc.ACRSupported)
		}
	}
}
