package kubernetes

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadme_SentinelAndClusterSections loads the replicas layout's
// gatehouse.yaml with each `session:` section the README offers for
// Redis Sentinel and Redis Cluster in place of its own, with the same
// Secret files, and checks that gatehouse takes it as that mode.
func TestReadme_SentinelAndClusterSections(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sections []string
	for _, block := range strings.Split(string(data), "```yaml session\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		sections = append(sections, block)
	}
	if len(sections) != 2 {
		t.Fatalf("README.md shows %d session sections (```yaml session), want 2: Sentinel and Cluster", len(sections))
	}
	m := loadManifests(t)["replicas"]
	cm := m.configMap("gatehouse")
	if m == nil || cm == nil {
		t.Fatal("no replicas layout with a gatehouse ConfigMap")
	}
	_, _, files := gatehousePod(t, m, cm)
	// The layout's own session section: from "session:" to the next
	// top-level key.
	own := regexp.MustCompile(`(?ms)^session:\n.*?(^\S)`)
	text := cm.Data["gatehouse.yaml"]
	if !own.MatchString(text) {
		t.Fatal("the replicas gatehouse.yaml has no session section followed by another")
	}
	for i, section := range sections {
		replaced := own.ReplaceAllString(text, strings.ReplaceAll(section, "$", "$$")+"\n$1")
		cfg := loadWithTestSecrets(t, replaced, files)
		r := cfg.Session.Redis
		switch {
		case cfg.Session.Store != "redis":
			t.Errorf("section %d: store %q, want redis", i+1, cfg.Session.Store)
		case i == 0 && (r.Sentinel.Master == "" || len(r.Sentinel.Addrs) < 3 || len(r.Cluster.Addrs) != 0):
			t.Errorf("section 1: want Sentinel with a master and three Sentinels, got %+v %+v", r.Sentinel, r.Cluster)
		case i == 1 && (len(r.Cluster.Addrs) < 3 || len(r.Sentinel.Addrs) != 0):
			t.Errorf("section 2: want a Cluster with three nodes, got %+v %+v", r.Sentinel, r.Cluster)
		case r.URLFile == "" && r.URL == "":
			t.Errorf("section %d: no URL for the password", i+1)
		}
	}
}
