package kubernetes

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/deploytest"
)

// checkGatehouseConfigs loads each gatehouse.yaml the way gatehouse would
// in its pod: the Secret files it names must be mounted from a Secret
// key, and with test values in their place the configuration must load
// without problems. It then checks the Deployment around it against the
// configuration and the layout's promises.
func checkGatehouseConfigs(t *testing.T, all map[string]*manifests) {
	for _, name := range slices.Sorted(maps.Keys(all)) {
		m := all[name]
		want, ok := layouts[name]
		if !ok {
			continue // checkLayouts reports it
		}
		found := 0
		for _, cm := range m.configMaps {
			if _, ok := cm.Data["gatehouse.yaml"]; !ok {
				continue
			}
			found++
			t.Run(name+"/"+cm.Metadata.Name, func(t *testing.T) {
				checkGatehouse(t, m, cm, want)
			})
		}
		if found != 1 {
			t.Errorf("%s: %d ConfigMaps hold gatehouse.yaml, want 1", name, found)
		}
	}
}

func checkGatehouse(t *testing.T, m *manifests, cm *configMap, want layout) {
	d, c, files := gatehousePod(t, m, cm)
	text := cm.Data["gatehouse.yaml"]
	cfg := loadWithTestSecrets(t, text, files)

	if cfg.Listen != gatehouseListen {
		t.Errorf("listen = %q, want %q", cfg.Listen, gatehouseListen)
	}
	if cfg.Session.Store != want.store {
		t.Errorf("session.store = %q, want %q", cfg.Session.Store, want.store)
	}
	checkWarnings(t, cfg.Warnings, want.warnings)
	if want.store == "redis" && cfg.Assertion.KeyFile == "" {
		t.Error("replicas sharing sessions need assertion.key_file, one key for all")
	}
	if up := cfg.UpstreamURL; up == nil {
		t.Error("no upstream")
	} else if want.loopbackUpstream != config.IsLoopback(up.Hostname()) {
		t.Errorf("upstream %s: loopback = %t, want %t", up, !want.loopbackUpstream, want.loopbackUpstream)
	} else if !want.loopbackUpstream {
		checkServiceURL(t, m, "upstream", up)
	}
	checkPlaceholdersRefused(t, m, text, files)
	if want.store == "redis" {
		checkRedisURL(t, m, text, files)
	}
	checkContainer(t, m, d, c, cfg)
	checkLayout(t, m, d, want)
}

// secretFile is a file a container sees, and the Secret key behind it.
type secretFile struct{ secret, key string }

// gatehousePod finds the one Deployment container that mounts cm, checks
// that it reads gatehouse.yaml from it, and returns the files it sees
// from Secrets, by path in the container.
func gatehousePod(t *testing.T, m *manifests, cm *configMap) (*deployment, container, map[string]secretFile) {
	t.Helper()
	type hit struct {
		d    *deployment
		c    container
		path string
	}
	var hits []hit
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			for p, f := range mountedFiles(m, d, c) {
				if f.kind == "ConfigMap" && f.name == cm.Metadata.Name && f.key == "gatehouse.yaml" {
					hits = append(hits, hit{d, c, p})
				}
			}
		}
	}
	if len(hits) != 1 {
		t.Fatalf("ConfigMap %s's gatehouse.yaml is mounted by %d containers, want 1", cm.Metadata.Name, len(hits))
	}
	h := hits[0]
	if h.c.Name != "gatehouse" {
		t.Errorf("the container reading gatehouse.yaml is named %q; name it gatehouse", h.c.Name)
	}
	if len(h.c.Command) > 0 {
		t.Errorf("container %s: leave command unset; the image's entrypoint is /gatehouse", h.c.Name)
	}
	configPath := defaultConfig
	if i := slices.Index(h.c.Args, "-config"); i >= 0 && i+1 < len(h.c.Args) {
		configPath = h.c.Args[i+1]
	}
	if len(h.c.Args) > 0 && h.c.Args[0] != "serve" {
		t.Errorf("container %s: args %q should start with serve", h.c.Name, h.c.Args)
	}
	if h.path != configPath {
		t.Errorf("container %s reads %s but gatehouse.yaml is mounted at %s", h.c.Name, configPath, h.path)
	}
	files := map[string]secretFile{}
	for p, f := range mountedFiles(m, h.d, h.c) {
		if f.kind == "Secret" {
			files[p] = secretFile{secret: f.name, key: f.key}
		}
	}
	return h.d, h.c, files
}

// mounted is a file in a container and where it comes from.
type mounted struct{ kind, name, key string }

// mountedFiles lists the files a container sees from ConfigMaps and
// Secrets, by path. A volume without items holds every key of its object.
func mountedFiles(m *manifests, d *deployment, c container) map[string]mounted {
	volumes := map[string]volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	out := map[string]mounted{}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			continue // checkDeploymentRefs reports it
		}
		for rel, f := range volumeFiles(m, v) {
			switch {
			case vm.SubPath == "":
				out[path.Join(vm.MountPath, rel)] = f
			case vm.SubPath == rel:
				out[vm.MountPath] = f
			}
		}
	}
	return out
}

// volumeFiles lists a volume's files, by path within the volume.
func volumeFiles(m *manifests, v volume) map[string]mounted {
	out := map[string]mounted{}
	for _, src := range volumeSources(v) {
		for _, it := range src.items {
			out[it.Path] = mounted{src.kind, src.name, it.Key}
		}
		if len(src.items) > 0 {
			continue
		}
		var keys []string
		switch src.kind {
		case "Secret":
			if s := m.secret(src.name); s != nil {
				keys = append(slices.Collect(maps.Keys(s.StringData)), slices.Collect(maps.Keys(s.Data))...)
			}
		case "ConfigMap":
			if c := m.configMap(src.name); c != nil {
				keys = slices.Collect(maps.Keys(c.Data))
			}
		}
		for _, k := range keys {
			out[k] = mounted{src.kind, src.name, k}
		}
	}
	return out
}

// fileKeys are the configuration keys naming a file; their YAML paths
// (lists end in []) and what a valid file holds.
var fileKeys = map[string]func(t *testing.T) string{
	"oidc.client_secret_file":        deploytest.ClientSecret,
	"cookie.secret_file":             deploytest.CookieSecret,
	"session.redis.url_file":         deploytest.RedisURL,
	"assertion.key_file":             deploytest.ECDSAKeyPEM,
	"assertion.previous_key_files[]": deploytest.ECDSAKeyPEM,
	"admin.token_file":               deploytest.AdminToken,
}

// loadWithTestSecrets loads the configuration with a valid test value in
// every file it names, and fails on any problem.
func loadWithTestSecrets(t *testing.T, text string, files map[string]secretFile) *config.Config {
	t.Helper()
	cfg, err := load(t, text, files, func(ref deploytest.FileRef, _ secretFile) string {
		gen := fileKeys[ref.Key]
		if gen == nil {
			t.Fatalf("%s: add a test value for this key to fileKeys", ref.Key)
		}
		return gen(t)
	})
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return cfg
}

// load writes the configuration with every file path it names replaced
// by a temporary file holding value's result, and runs config.Load on it.
// Each named file must be one the container mounts from a Secret key
// (files, by path in the container).
func load(t *testing.T, text string, files map[string]secretFile, value func(deploytest.FileRef, secretFile) string) (*config.Config, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("gatehouse.yaml: %v", err)
	}
	dir := t.TempDir()
	written := map[string]string{} // path in the container → temporary file
	for _, ref := range deploytest.FileRefs(&doc, "") {
		inPod := ref.Node.Value
		f, ok := files[inPod]
		if !ok {
			t.Errorf("%s: %s is not a file the gatehouse container mounts from a Secret", ref.Key, inPod)
			continue
		}
		tmp, done := written[inPod]
		if !done {
			tmp = filepath.Join(dir, fmt.Sprintf("secret-%d", len(written)))
			if err := os.WriteFile(tmp, []byte(value(ref, f)), 0o600); err != nil {
				t.Fatal(err)
			}
			written[inPod] = tmp
		}
		ref.Node.Value = tmp
	}
	if t.Failed() {
		t.FailNow()
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(p)
}

// checkWarnings fails unless every warning starts with one of the allowed
// prefixes and every allowed prefix is seen.
func checkWarnings(t *testing.T, got, allowed []string) {
	for _, w := range got {
		if !slices.ContainsFunc(allowed, func(p string) bool { return strings.HasPrefix(w, p) }) {
			t.Errorf("unexpected warning (gatehouse check prints it): %s", w)
		}
	}
	for _, p := range allowed {
		if !slices.ContainsFunc(got, func(w string) bool { return strings.HasPrefix(w, p) }) {
			t.Errorf("expected a warning starting %q; the layout's table is out of date", p)
		}
	}
}

// checkPlaceholdersRefused loads the configuration with the placeholder
// values of the Secret manifests: gatehouse must refuse them, so that a
// Secret applied unchanged cannot run with a published cookie secret.
func checkPlaceholdersRefused(t *testing.T, m *manifests, text string, files map[string]secretFile) {
	_, err := load(t, text, files, func(ref deploytest.FileRef, f secretFile) string {
		s := m.secret(f.secret)
		if s == nil {
			t.Fatalf("%s: no Secret %s among the manifests", ref.Key, f.secret)
		}
		v, ok := s.value(f.key)
		if !ok {
			t.Fatalf("%s: Secret %s has no value for %s", ref.Key, f.secret, f.key)
		}
		return v
	})
	var ce *config.Error
	if !errors.As(err, &ce) || !slices.ContainsFunc(ce.Problems, func(p config.Problem) bool { return p.Path == "cookie.secret_file" }) {
		t.Errorf("with the placeholder Secret values, config.Load must refuse cookie.secret_file; got %v", err)
	}
}

// checkRedisURL checks that the placeholder Redis URL in the Secret names
// the layout's Redis Service, so that a real URL made the same way does.
func checkRedisURL(t *testing.T, m *manifests, text string, files map[string]secretFile) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	for _, ref := range deploytest.FileRefs(&doc, "") {
		if ref.Key != "session.redis.url_file" {
			continue
		}
		f, ok := files[ref.Node.Value]
		s := m.secret(f.secret)
		if !ok || s == nil {
			t.Errorf("%s: %s is not mounted from a Secret of the layout", ref.Key, ref.Node.Value)
			return
		}
		v, _ := s.value(f.key)
		u, err := url.Parse(strings.TrimSpace(v))
		if err != nil {
			t.Errorf("Secret %s key %s: not a URL", f.secret, f.key) // no %v: it may hold a password
			return
		}
		checkServiceURL(t, m, "Secret "+f.secret+" key "+f.key, u)
		return
	}
	t.Error("session.store is redis but no session.redis.url_file is given")
}

// checkServiceURL fails unless the URL's host is a Service of the layout
// and its port one of that Service's ports.
func checkServiceURL(t *testing.T, m *manifests, what string, u *url.URL) {
	for _, s := range m.services {
		if s.Metadata.Name != u.Hostname() {
			continue
		}
		for _, p := range s.Spec.Ports {
			if strconv.Itoa(p.Port) == u.Port() {
				return
			}
		}
		t.Errorf("%s %s: Service %s has no port %s", what, u.Redacted(), s.Metadata.Name, u.Port())
		return
	}
	t.Errorf("%s %s: no Service named %s among the manifests", what, u.Redacted(), u.Hostname())
}

// checkContainer checks the gatehouse container against its configuration.
func checkContainer(t *testing.T, m *manifests, d *deployment, c container, cfg *config.Config) {
	port := listenPort(t, "listen", cfg.Listen)
	if _, ok := containerPort(c, intOrString{strconv.Itoa(port)}); !ok {
		t.Errorf("no container port %d (listen %s)", port, cfg.Listen)
	}
	checkGatehouseServices(t, m, d, c, port)
	for _, p := range []struct {
		what  string
		probe *probe
		path  string
	}{
		{"livenessProbe", c.LivenessProbe, healthzPath},
		{"readinessProbe", c.ReadinessProbe, readyzPath},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", p.what, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path = %q, want %q", p.what, p.probe.HTTPGet.Path, p.path)
		}
		if n, _ := containerPort(c, p.probe.HTTPGet.Port); n != port {
			t.Errorf("%s port %q is %d, want the listen port %d", p.what, p.probe.HTTPGet.Port.value, n, port)
		}
	}
	annotations := d.Spec.Template.Metadata.Annotations
	if cfg.Admin.Listen != "" {
		admin := listenPort(t, "admin.listen", cfg.Admin.Listen)
		if _, ok := containerPort(c, intOrString{strconv.Itoa(admin)}); !ok {
			t.Errorf("no container port %d (admin.listen %s)", admin, cfg.Admin.Listen)
		}
		if annotations["prometheus.io/scrape"] != "true" || annotations["prometheus.io/port"] != strconv.Itoa(admin) {
			t.Errorf("pod annotations: want prometheus.io/scrape \"true\" and prometheus.io/port %q (got %v)", strconv.Itoa(admin), annotations)
		}
	} else if annotations["prometheus.io/scrape"] != "" {
		t.Error("prometheus.io/scrape without admin.listen: there are no metrics to scrape")
	}
	checkMemory(t, c)
	checkSecretModes(t, d, c)
	grace := 30 * time.Second // Kubernetes's default
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	var preStop time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	if need := preStop + cfg.Server.ShutdownTimeout; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %s must exceed the preStop sleep %s plus server.shutdown_timeout %s", grace, preStop, cfg.Server.ShutdownTimeout)
	}
}

// checkGatehouseServices fails unless every port of every Service in
// front of gatehouse's pods leads to its listen port: never past it to an
// app in the same pod, nor to the admin port.
func checkGatehouseServices(t *testing.T, m *manifests, d *deployment, c container, listen int) {
	n := 0
	for _, s := range m.services {
		if !(labelSelector{MatchLabels: s.Spec.Selector}).selects(d.Spec.Template.Metadata.Labels) {
			continue
		}
		n++
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.value == "" {
				target.value = strconv.Itoa(p.Port)
			}
			if got, _ := containerPort(c, target); got != listen {
				t.Errorf("Service %s port %d: targetPort %q leads to %d, want gatehouse's listen port %d", s.Metadata.Name, p.Port, target.value, got, listen)
			}
		}
	}
	if n == 0 {
		t.Errorf("no Service selects the pods of Deployment %s", d.Metadata.Name)
	}
}

// checkSecretModes fails unless gatehouse, running as a non-root user,
// can read its Secret files while no other user can: the files belong to
// root and the pod's fsGroup, so the mode grants the group read and
// others nothing.
func checkSecretModes(t *testing.T, d *deployment, c container) {
	pod := d.Spec.Template.Spec
	mounted := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		mounted[vm.Name] = true
	}
	for _, v := range pod.Volumes {
		var mode *int
		switch {
		case !mounted[v.Name]:
			continue
		case v.Secret != nil:
			mode = v.Secret.DefaultMode
		case v.Projected != nil:
			mode = v.Projected.DefaultMode
		default:
			continue
		}
		if mode == nil || *mode&0o077 != 0o040 {
			t.Errorf("volume %s: defaultMode = %s, want 0440 (the fsGroup reads, others nothing)", v.Name, optionalOctal(mode))
		}
		if pod.SecurityContext.FSGroup == nil {
			t.Errorf("volume %s: set the pod's fsGroup, or gatehouse cannot read the files", v.Name)
		}
	}
}

func optionalOctal(p *int) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprintf("%#o", *p)
}

func listenPort(t *testing.T, key, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("%s %q is not host:port", key, addr)
	}
	return n
}

// checkMemory fails unless GOMEMLIMIT is set a little below the memory
// limit: under it, for the runtime's own overhead, and at least 75% of it.
func checkMemory(t *testing.T, c container) {
	limit, err := parseBytes(c.Resources.Limits["memory"], map[string]int64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30})
	if err != nil {
		t.Errorf("resources.limits.memory: %v", err)
		return
	}
	i := slices.IndexFunc(c.Env, func(e envVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 {
		t.Error("no GOMEMLIMIT env: set it a little below the memory limit")
		return
	}
	soft, err := parseBytes(c.Env[i].Value, map[string]int64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30})
	if err != nil {
		t.Errorf("GOMEMLIMIT: %v", err)
		return
	}
	if soft >= limit || soft < limit*3/4 {
		t.Errorf("GOMEMLIMIT %s: want between 75%% and 100%% of the memory limit %s", c.Env[i].Value, c.Resources.Limits["memory"])
	}
}

// parseBytes reads a number with one of the given unit suffixes.
func parseBytes(s string, units map[string]int64) (int64, error) {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	mult, ok := units[s[len(num):]]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil {
		return 0, fmt.Errorf("%q is not a size with a unit of %v", s, slices.Sorted(maps.Keys(units)))
	}
	return n * mult, nil
}

// checkLayout checks what the layout promises about the gatehouse
// Deployment: replicas, a PodDisruptionBudget, spreading over nodes.
func checkLayout(t *testing.T, m *manifests, d *deployment, want layout) {
	if got := d.Spec.Replicas; got == nil || *got != want.replicas {
		t.Errorf("Deployment %s: replicas = %s, want %d", d.Metadata.Name, optional(got), want.replicas)
	}
	labels := d.Spec.Template.Metadata.Labels
	var pdbs []*podDisruptionBudget
	for _, p := range m.pdbs {
		if p.Spec.Selector.selects(labels) {
			pdbs = append(pdbs, p)
		}
	}
	switch {
	case want.pdbMinAvailable == 0 && len(pdbs) > 0:
		t.Errorf("a PodDisruptionBudget selects the single replica of %s: it would block node drains", d.Metadata.Name)
	case want.pdbMinAvailable > 0 && len(pdbs) != 1:
		t.Errorf("%d PodDisruptionBudgets select the pods of %s, want 1", len(pdbs), d.Metadata.Name)
	case want.pdbMinAvailable > 0:
		if got := pdbs[0].Spec.MinAvailable; got == nil || got.value != strconv.Itoa(want.pdbMinAvailable) {
			t.Errorf("PodDisruptionBudget %s: minAvailable = %s, want %d", pdbs[0].Metadata.Name, optional(got), want.pdbMinAvailable)
		}
	}
	if want.loopbackUpstream {
		// The app shares the pod and listens on loopback: it has no port
		// for anything outside the pod.
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != "gatehouse" && len(c.Ports) > 0 {
				t.Errorf("container %s declares ports; in the sidecar layout only gatehouse is reachable from outside the pod", c.Name)
			}
		}
	}
	if want.antiAffinity {
		a := d.Spec.Template.Spec.Affinity
		ok := a != nil && a.PodAntiAffinity != nil && slices.ContainsFunc(a.PodAntiAffinity.Preferred, func(p weightedPodAffinityTerm) bool {
			return p.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && p.PodAffinityTerm.LabelSelector.selects(labels)
		})
		if !ok {
			t.Errorf("Deployment %s: want a preferred pod anti-affinity on kubernetes.io/hostname selecting its own pods", d.Metadata.Name)
		}
	}
}
