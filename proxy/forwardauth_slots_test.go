package proxy

import (
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/auth"
)

// TestForwardAuthSlot_Bounded: the assertion slots of forward-auth
// answers are keyed by the original request's host, which the forwarding
// proxy names; a stream of invented hosts must not grow them without
// bound, and a known audience keeps its slot.
func TestForwardAuthSlot_Bounded(t *testing.T) {
	h := &gate{asserter: new(auth.Asserter)}
	rt := &route{} // no upstream, so no audience of its own
	first := h.forwardAuthSlot(rt, original{scheme: "https", host: "app.example"})
	for i := range 4 * maxFASlots {
		if s := h.forwardAuthSlot(rt, original{scheme: "https", host: fmt.Sprintf("h%d.example", i)}); s == nil {
			t.Fatalf("host %d: no slot", i)
		}
	}
	n := 0
	h.faSlots.Range(func(any, any) bool { n++; return true })
	if n > maxFASlots || int(h.faSlotCount.Load()) != n {
		t.Errorf("after %d hosts: %d slots kept (counted %d), want at most %d", 4*maxFASlots+1, n, h.faSlotCount.Load(), maxFASlots)
	}
	if again := h.forwardAuthSlot(rt, original{scheme: "https", host: "APP.example"}); again != first {
		t.Errorf("a known audience got a new slot")
	}
}
