// Package kubernetes holds only tests: they check the example manifests
// in this directory without a cluster. Every YAML document is decoded
// strictly into the subset of the Kubernetes schema the examples use (an
// unknown or misspelt field fails), references between objects are
// resolved (selectors, ports, Secret keys, ConfigMap mounts), and each
// gatehouse configuration is loaded with config.Load against generated
// stand-ins for the Secret files it names.
package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// layout is what a directory of manifests promises beyond what every
// layout shares.
type layout struct {
	replicas         int    // of the Deployment running gatehouse
	store            string // session.store
	loopbackUpstream bool   // the app shares gatehouse's pod
	pdbMinAvailable  int    // 0: no PodDisruptionBudget expected
	antiAffinity     bool   // gatehouse pods prefer different nodes
	// warnings are the prefixes of the only warnings config.Load may
	// report (what gatehouse check prints).
	warnings []string
}

// layouts lists every directory of manifests; a directory missing here
// fails the test, so that nothing ships unchecked.
var layouts = map[string]layout{
	"sidecar": {replicas: 1, store: "memory", loopbackUpstream: true},
	"replicas": {
		replicas: 3, store: "redis", pdbMinAvailable: 2, antiAffinity: true,
		// Prometheus scrapes the pod's IP, so admin.listen is ":9090",
		// which gatehouse check reports; the assertion-key warning must
		// not appear.
		warnings: []string{"admin.listen :9090 is not loopback"},
	},
}

const (
	gatehouseListen = ":4180"
	healthzPath     = "/_gatehouse/healthz"
	readyzPath      = "/_gatehouse/readyz"
	defaultConfig   = "/etc/gatehouse/gatehouse.yaml" // the image's CMD
	gatehouseUID    = 65532                           // distroless nonroot
)

// manifests is one layout's objects, by kind.
type manifests struct {
	configMaps    []*configMap
	secrets       []*secret
	services      []*service
	deployments   []*deployment
	pdbs          []*podDisruptionBudget
	networkPolicy []*networkPolicy
	// secretFiles are the files holding Secret manifests, relative to the
	// layout's directory.
	secretFiles []string
	// raw holds every object decoded without a schema, by "kind/name".
	raw map[string]any
}

func (m *manifests) secret(name string) *secret {
	for _, s := range m.secrets {
		if s.Metadata.Name == name {
			return s
		}
	}
	return nil
}

func (m *manifests) configMap(name string) *configMap {
	for _, c := range m.configMaps {
		if c.Metadata.Name == name {
			return c
		}
	}
	return nil
}

// podsOf returns the Deployments whose pods the selector picks.
func (m *manifests) podsOf(sel labelSelector) []*deployment {
	var out []*deployment
	for _, d := range m.deployments {
		if sel.selects(d.Spec.Template.Metadata.Labels) {
			out = append(out, d)
		}
	}
	return out
}

// loadManifests decodes every YAML document under this directory, by
// layout (the first directory below this one). Problems are test errors;
// the documents that decode are returned.
func loadManifests(t *testing.T) map[string]*manifests {
	t.Helper()
	out := map[string]*manifests{}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return err
		}
		p = filepath.ToSlash(p)
		name, rel, ok := strings.Cut(p, "/")
		if !ok {
			t.Errorf("%s: put manifests in a layout's directory", p)
			return nil
		}
		if out[name] == nil {
			out[name] = &manifests{raw: map[string]any{}}
		}
		decodeFile(t, p, rel, out[name])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no manifests found")
	}
	return out
}

// decodeFile decodes each document of one file into m, in two passes
// over the same bytes: the first reads every document's kind, the second
// decodes each strictly into its kind's type, so that an unknown or
// misspelt field fails with its line in the file.
func decodeFile(t *testing.T, file, rel string, m *manifests) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var metas []*typeMeta // nil for a document holding only comments
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Errorf("%s: document %d: %v", file, len(metas)+1, err)
			return
		}
		if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
			metas = append(metas, nil)
			continue
		}
		tm := &typeMeta{}
		if err := doc.Decode(tm); err != nil {
			t.Errorf("%s:%d: %v", file, doc.Content[0].Line, err)
			return
		}
		if err := tm.check(); err != nil {
			t.Errorf("%s:%d: %v", file, doc.Content[0].Line, err)
			tm = nil // skipped below
		} else {
			var raw any
			if err := doc.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			m.raw[tm.Kind+"/"+tm.Metadata.Name] = raw
		}
		metas = append(metas, tm)
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	for _, tm := range metas {
		var obj any = &yaml.Node{} // skips the document
		if tm != nil {
			obj = newObject(tm.Kind)
		}
		if err := strict.Decode(obj); err != nil {
			t.Errorf("%s: %s %s: %v", file, tm.Kind, tm.Metadata.Name, err)
			continue
		}
		if tm != nil {
			m.add(obj, rel)
		}
	}
}

// check fails unless the object has a type, a known kind with its
// apiVersion, and a name, and no namespace.
func (tm *typeMeta) check() error {
	switch {
	case tm.APIVersion == "" || tm.Kind == "" || tm.Metadata.Name == "":
		return fmt.Errorf("every object needs apiVersion, kind and metadata.name (got %q, %q, %q)", tm.APIVersion, tm.Kind, tm.Metadata.Name)
	case apiVersions[tm.Kind] == "":
		return fmt.Errorf("kind %s: add its type to this test", tm.Kind)
	case apiVersions[tm.Kind] != tm.APIVersion:
		return fmt.Errorf("%s %s: apiVersion %q, want %q", tm.Kind, tm.Metadata.Name, tm.APIVersion, apiVersions[tm.Kind])
	case tm.Metadata.Namespace != "":
		return fmt.Errorf("%s %s: leave out metadata.namespace, so that kubectl apply -n chooses it", tm.Kind, tm.Metadata.Name)
	}
	return nil
}

// newObject returns a new object of a kind listed in apiVersions.
func newObject(kind string) any {
	switch kind {
	case "ConfigMap":
		return &configMap{}
	case "Secret":
		return &secret{}
	case "Service":
		return &service{}
	case "Deployment":
		return &deployment{}
	case "PodDisruptionBudget":
		return &podDisruptionBudget{}
	case "NetworkPolicy":
		return &networkPolicy{}
	}
	panic("newObject: no type for kind " + kind) // apiVersions and this switch disagree
}

// add files a decoded object under its kind; rel is its file, relative
// to the layout's directory.
func (m *manifests) add(obj any, rel string) {
	switch o := obj.(type) {
	case *configMap:
		m.configMaps = append(m.configMaps, o)
	case *secret:
		m.secrets = append(m.secrets, o)
		if !slices.Contains(m.secretFiles, rel) {
			m.secretFiles = append(m.secretFiles, rel)
		}
	case *service:
		m.services = append(m.services, o)
	case *deployment:
		m.deployments = append(m.deployments, o)
	case *podDisruptionBudget:
		m.pdbs = append(m.pdbs, o)
	case *networkPolicy:
		m.networkPolicy = append(m.networkPolicy, o)
	}
}

// TestManifests decodes every manifest once, then checks them without a
// cluster.
func TestManifests(t *testing.T) {
	all := loadManifests(t)
	t.Run("layouts", func(t *testing.T) { checkLayouts(t, all) })
	t.Run("references", func(t *testing.T) { checkReferences(t, all) })
	t.Run("security context", func(t *testing.T) { checkSecurity(t, all) })
	t.Run("gatehouse config", func(t *testing.T) { checkGatehouseConfigs(t, all) })
	t.Run("readme", func(t *testing.T) { checkReadme(t, all) })
}

// checkReadme fails unless every object shown in a yaml block of
// README.md is the same as in the manifests, so the text cannot drift
// from the files.
func checkReadme(t *testing.T, all map[string]*manifests) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	shown := 0
	for i, block := range strings.Split(string(data), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		dec := yaml.NewDecoder(strings.NewReader(block))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("README.md yaml block %d: %v", i+1, err)
			}
			meta, _ := doc["metadata"].(map[string]any)
			id := fmt.Sprint(doc["kind"], "/", meta["name"])
			shown++
			found := false
			for _, m := range all {
				if raw, ok := m.raw[id]; ok {
					found = true
					if !reflect.DeepEqual(raw, doc) {
						t.Errorf("README.md shows %s differently from the manifests; copy it again", id)
					}
				}
			}
			if !found {
				t.Errorf("README.md shows %s, which no manifest holds", id)
			}
		}
	}
	if shown == 0 {
		t.Error("README.md shows no manifest; it should show the NetworkPolicy")
	}
}

// checkLayouts checks that every layout directory is known to this test
// and that applying a layout's directory cannot overwrite real Secrets
// with placeholders.
func checkLayouts(t *testing.T, all map[string]*manifests) {
	for name := range layouts {
		if all[name] == nil {
			t.Errorf("layout %s has no manifests", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		m := all[name]
		if _, ok := layouts[name]; !ok {
			t.Errorf("directory %s: add it to layouts in this test", name)
		}
		if len(m.secrets) == 0 {
			t.Errorf("%s: no Secret manifest documents the keys the pods use", name)
		}
		for _, f := range m.secretFiles {
			// kubectl apply -f DIR/ reads DIR's files, not its subdirectories.
			if !strings.Contains(f, "/") {
				t.Errorf("%s/%s holds a Secret: move it to a subdirectory, so kubectl apply -f %s/ cannot replace the real one with placeholders", name, f, name)
			}
		}
	}
}

// checkReferences resolves every reference between objects: selectors,
// target ports, Secret and ConfigMap keys.
func checkReferences(t *testing.T, all map[string]*manifests) {
	for _, name := range slices.Sorted(maps.Keys(all)) {
		m := all[name]
		t.Run(name, func(t *testing.T) {
			for _, d := range m.deployments {
				checkDeploymentRefs(t, m, d)
			}
			for _, s := range m.services {
				checkService(t, m, s)
			}
			for _, p := range m.pdbs {
				if len(m.podsOf(p.Spec.Selector)) == 0 {
					t.Errorf("PodDisruptionBudget %s selects no pods (%v)", p.Metadata.Name, p.Spec.Selector.MatchLabels)
				}
			}
			for _, n := range m.networkPolicy {
				checkNetworkPolicy(t, m, n)
			}
		})
	}
}

func checkDeploymentRefs(t *testing.T, m *manifests, d *deployment) {
	name := "Deployment " + d.Metadata.Name
	if !d.Spec.Selector.selects(d.Spec.Template.Metadata.Labels) {
		t.Errorf("%s: selector %v does not match its pod labels %v", name, d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
		t.Errorf("%s: spec.replicas must be set and positive", name)
	}
	pod := &d.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		t.Errorf("%s: no containers", name)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		for _, ref := range volumeKeys(v) {
			checkKey(t, m, name+" volume "+v.Name, ref)
		}
	}
	for _, c := range pod.Containers {
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s container %s mounts volume %s, which the pod does not have", name, c.Name, vm.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			r := e.ValueFrom.SecretKeyRef
			if r.Optional != nil && *r.Optional {
				t.Errorf("%s container %s env %s: a required secret must not be optional", name, c.Name, e.Name)
			}
			checkKey(t, m, name+" container "+c.Name+" env "+e.Name, keyRef{kind: "Secret", name: r.Name, key: r.Key})
		}
		for what, p := range map[string]*probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
			if p == nil {
				continue
			}
			port := intOrString{}
			switch {
			case p.HTTPGet != nil:
				port = p.HTTPGet.Port
			case p.TCPSocket != nil:
				port = p.TCPSocket.Port
			default:
				continue
			}
			if _, ok := containerPort(c, port); !ok {
				t.Errorf("%s container %s %s: port %q is not one of the container's", name, c.Name, what, port.value)
			}
		}
	}
}

// keyRef names one key of a Secret or ConfigMap.
type keyRef struct{ kind, name, key string }

// volumeKeys lists the objects a volume reads and the keys it names
// (items); an empty key stands for all of the object's keys.
func volumeKeys(v volume) []keyRef {
	var out []keyRef
	for _, src := range volumeSources(v) {
		if len(src.items) == 0 {
			out = append(out, keyRef{kind: src.kind, name: src.name})
		}
		for _, it := range src.items {
			out = append(out, keyRef{kind: src.kind, name: src.name, key: it.Key})
		}
	}
	return out
}

// checkKey fails unless the layout has the object, and the key when one is
// named.
func checkKey(t *testing.T, m *manifests, where string, r keyRef) {
	var keys map[string]bool
	switch r.kind {
	case "Secret":
		if s := m.secret(r.name); s != nil {
			keys = map[string]bool{}
			for k := range s.Data {
				keys[k] = true
			}
			for k := range s.StringData {
				keys[k] = true
			}
		}
	case "ConfigMap":
		if c := m.configMap(r.name); c != nil {
			keys = map[string]bool{}
			for k := range c.Data {
				keys[k] = true
			}
		}
	}
	switch {
	case keys == nil:
		t.Errorf("%s: no %s %s among the manifests", where, r.kind, r.name)
	case r.key != "" && !keys[r.key]:
		t.Errorf("%s: %s %s has no key %q (it has %v)", where, r.kind, r.name, r.key, slices.Sorted(maps.Keys(keys)))
	}
}

// containerPort resolves a port given by number or name to one of the
// container's ports.
func containerPort(c container, p intOrString) (int, bool) {
	n, isNum := p.number()
	for _, cp := range c.Ports {
		if (isNum && cp.ContainerPort == n) || (!isNum && cp.Name == p.value) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// podPort resolves a port of any container of the pod.
func podPort(d *deployment, p intOrString) (int, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		if n, ok := containerPort(c, p); ok {
			return n, true
		}
	}
	return 0, false
}

func checkService(t *testing.T, m *manifests, s *service) {
	name := "Service " + s.Metadata.Name
	pods := m.podsOf(labelSelector{MatchLabels: s.Spec.Selector})
	if len(pods) != 1 {
		t.Errorf("%s: selector %v picks the pods of %d Deployments, want 1", name, s.Spec.Selector, len(pods))
		return
	}
	if len(s.Spec.Ports) == 0 {
		t.Errorf("%s: no ports", name)
	}
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.value == "" {
			target.value = strconv.Itoa(p.Port)
		}
		if _, ok := podPort(pods[0], target); !ok {
			t.Errorf("%s port %d: targetPort %q is not a port of Deployment %s's pods", name, p.Port, target.value, pods[0].Metadata.Name)
		}
	}
}

func checkNetworkPolicy(t *testing.T, m *manifests, n *networkPolicy) {
	name := "NetworkPolicy " + n.Metadata.Name
	targets := m.podsOf(n.Spec.PodSelector)
	if len(targets) == 0 {
		t.Errorf("%s: podSelector %v selects no pods", name, n.Spec.PodSelector.MatchLabels)
		return
	}
	if !slices.Contains(n.Spec.PolicyTypes, "Ingress") || len(n.Spec.Ingress) == 0 {
		t.Errorf("%s: expected an Ingress policy with rules", name)
	}
	for _, rule := range n.Spec.Ingress {
		if len(rule.From) == 0 {
			t.Errorf("%s: a rule without from admits every peer", name)
		}
		for _, from := range rule.From {
			if from.PodSelector == nil {
				t.Errorf("%s: a peer without podSelector", name)
				continue
			}
			peers := m.podsOf(*from.PodSelector)
			if len(peers) == 0 {
				t.Errorf("%s: from podSelector %v selects no pods", name, from.PodSelector.MatchLabels)
			}
			for _, p := range peers {
				if gatehouseContainer(p) == nil {
					t.Errorf("%s admits Deployment %s, which does not run gatehouse", name, p.Metadata.Name)
				}
			}
		}
		for _, p := range rule.Ports {
			for _, d := range targets {
				if _, ok := podPort(d, p.Port); !ok {
					t.Errorf("%s: port %q is not a port of Deployment %s's pods", name, p.Port.value, d.Metadata.Name)
				}
			}
		}
	}
}

// gatehouseContainer returns the pod's container named gatehouse, or nil.
// checkGatehouseConfigs checks that it is the one reading
// gatehouse.yaml.
func gatehouseContainer(d *deployment) *container {
	pod := &d.Spec.Template.Spec
	for i, c := range pod.Containers {
		if c.Name == "gatehouse" {
			return &pod.Containers[i]
		}
	}
	return nil
}

// checkSecurity checks every container of every layout: non-root, a
// read-only root file system, no privilege escalation, no capabilities,
// the runtime's seccomp profile, resources, no service account token.
func checkSecurity(t *testing.T, all map[string]*manifests) {
	for _, name := range slices.Sorted(maps.Keys(all)) {
		m := all[name]
		for _, d := range m.deployments {
			pod := d.Spec.Template.Spec
			for _, c := range pod.Containers {
				t.Run(name+"/"+d.Metadata.Name+"/"+c.Name, func(t *testing.T) {
					checkSecurityContext(t, pod.SecurityContext, c)
					if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
						t.Error("automountServiceAccountToken: none of the examples calls the Kubernetes API; set it false")
					}
					if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
						t.Errorf("resources: want cpu and memory requests and a memory limit (got %+v)", c.Resources)
					}
				})
			}
		}
	}
}

func checkSecurityContext(t *testing.T, pod podSecurityContext, c container) {
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot)
	if !nonRoot {
		t.Error("runAsNonRoot is not true")
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = pod.RunAsUser
	}
	if uid == nil || *uid == 0 {
		t.Errorf("runAsUser: want a non-zero uid (got %s)", optional(uid))
	}
	if c.Name == "gatehouse" && (uid == nil || *uid != gatehouseUID) {
		t.Errorf("runAsUser: want %d, the image's nonroot user", gatehouseUID)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities: want drop [ALL] and nothing added (got %+v)", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		t.Errorf("seccompProfile: want RuntimeDefault (got %+v)", seccomp)
	}
}

// optional formats an optional value for a message.
func optional[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
