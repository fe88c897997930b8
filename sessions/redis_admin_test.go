package sessions

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// TestRedis_Admin lists a user's sessions from their admin descriptions
// (never their tokens) and revokes one by handle on another replica.
func TestRedis_Admin(t *testing.T) {
	a, b := replicas(t)
	s1 := a.create(t, "alice", "sid-1")
	a.clock.Advance(testTouch)
	s2 := b.create(t, "alice", "sid-2")
	b.create(t, "bob", "sid-3")
	list, err := b.ListBySubject(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Handle != s1.ID.Handle() || list[1].Handle != s2.ID.Handle() {
		t.Fatalf("list = %+v, want s1 then s2", list)
	}
	if list[0].Email != "alice@example.com" || list[0].Created.IsZero() || list[0].LastSeen.IsZero() {
		t.Errorf("info %+v", list[0])
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), "access-alice") {
		t.Error("the listing holds a token")
	}
	found, err := a.DeleteByHandle(t.Context(), s1.ID.Handle())
	if err != nil || !found {
		t.Fatalf("DeleteByHandle = %v, %v", found, err)
	}
	redistest.WaitFor(t, "the revoked session to be refused on the other replica", 2e9, func() bool {
		_, err := b.Get(t.Context(), s1.ID)
		return err != nil
	})
	if _, err := b.Get(t.Context(), s2.ID); err != nil {
		t.Errorf("the other session: %v", err)
	}
	if found, _ := a.DeleteByHandle(t.Context(), s1.ID.Handle()); found {
		t.Error("revoked twice")
	}
	if found, _ := a.DeleteByHandle(t.Context(), "not-a-handle"); found {
		t.Error("a bad handle revoked something")
	}
	list, _ = a.ListBySubject(t.Context(), "alice")
	if len(list) != 1 || !slices.ContainsFunc(list, func(i Info) bool { return i.Handle == s2.ID.Handle() }) {
		t.Errorf("after revoking: %+v", list)
	}
}
