package helm

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gatehouse/gatehouse/config"
)

const (
	healthzPath  = "/_gatehouse/healthz"
	readyzPath   = "/_gatehouse/readyz"
	configPath   = "/etc/gatehouse/gatehouse.yaml" // the image's CMD
	gatehouseUID = 65532                           // distroless nonroot
)

// renderCase is one values file and what its rendering must hold.
type renderCase struct {
	values   string // under testdata/
	mode     string
	replicas int32
	store    string
	// existing lists the Secrets the values name but the chart does not
	// create, with their keys: the operator made them.
	existing map[string][]string
	// created lists the keys of the Secret the chart creates; nil: none.
	created []string
	// warnings are the prefixes of the only warnings config.Load may
	// report (what gatehouse check prints).
	warnings []string
	// goMemLimit is the GOMEMLIMIT the memory limit gives.
	goMemLimit string
	check      func(t *testing.T, objs *objects)
}

var renderCases = []renderCase{
	{
		values: "standalone.yaml", mode: "standalone", replicas: 1, store: "memory",
		created: []string{"client-secret", "cookie-secret"}, goMemLimit: "230MiB",
		check: func(t *testing.T, objs *objects) {
			if !strings.Contains(objs.notes, "WARNING: nothing keeps other pods from calling http://wiki:8080") {
				t.Error("NOTES.txt: want the warning that no NetworkPolicy protects the app")
			}
			checkSecretValues(t, objs, map[string]string{"cookie-secret": "TEST-COOKIE-SECRET", "client-secret": "TEST-CLIENT-SECRET"})
		},
	},
	{
		values: "sidecar.yaml", mode: "sidecar", replicas: 1, store: "memory",
		created: []string{"assertion-key.pem", "client-secret", "cookie-secret"}, goMemLimit: "230MiB",
		check: checkSidecar,
	},
	{
		values: "redis.yaml", mode: "standalone", replicas: 3, store: "redis",
		existing: map[string][]string{
			"wiki-gatehouse": {"cookie-secret", "client-secret", "assertion-key.pem"},
			"wiki-redis":     {"url"},
		},
		goMemLimit: "230MiB",
	},
	{
		values: "existing-secrets.yaml", mode: "standalone", replicas: 1, store: "memory",
		existing: map[string][]string{
			"sso-cookie": {"secret"}, "sso-client": {"secret"}, "sso-assertion": {"tls.key"},
		},
		goMemLimit: "921MiB",
	},
	{
		values: "monitoring.yaml", mode: "standalone", replicas: 1, store: "memory",
		existing:   map[string][]string{"wiki-gatehouse": {"cookie-secret", "client-secret"}},
		warnings:   []string{"admin.listen :9090 is not loopback"},
		goMemLimit: "230MiB",
		check:      checkMonitoring,
	},
}

// TestChart_Render renders the chart for each values file and checks the
// objects and the gatehouse configuration it produces.
func TestChart_Render(t *testing.T) {
	for _, c := range renderCases {
		t.Run(strings.TrimSuffix(c.values, ".yaml"), func(t *testing.T) {
			files, err := renderChart(t, c.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			objs := parseObjects(t, files)
			if len(objs.deployments) != 1 || len(objs.configMaps) != 1 {
				t.Fatalf("want one Deployment and one ConfigMap, got %d and %d", len(objs.deployments), len(objs.configMaps))
			}
			d := objs.deployments[0]
			gh := gatehouseContainer(t, d)
			checkPod(t, c, d, gh)
			checkSecretsMounted(t, c, objs, d)
			cfg := loadRenderedConfig(t, objs, d, gh)
			checkWarnings(t, cfg.Warnings, c.warnings)
			if cfg.Session.Store != c.store {
				t.Errorf("session.store = %q, want %q", cfg.Session.Store, c.store)
			}
			checkAgainstConfig(t, objs, d, gh, cfg)
			checkAvailability(t, c, objs, d)
			if c.check != nil {
				c.check(t, objs)
			}
		})
	}
}

// gatehouseContainer returns the container named gatehouse.
func gatehouseContainer(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == "gatehouse" })
	if i < 0 {
		t.Fatalf("Deployment %s has no container named gatehouse", d.Name)
	}
	return &cs[i]
}

// checkPod checks the pod around gatehouse: mode, replicas, probes,
// security context and memory.
func checkPod(t *testing.T, c renderCase, d *appsv1.Deployment, gh *corev1.Container) {
	if d.Name != fullname {
		t.Errorf("Deployment name = %q, want %q", d.Name, fullname)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != c.replicas {
		t.Errorf("replicas = %v, want %d", d.Spec.Replicas, c.replicas)
	}
	wantContainers := 1
	if c.mode == "sidecar" {
		wantContainers = 2
	}
	if n := len(d.Spec.Template.Spec.Containers); n != wantContainers {
		t.Errorf("%d containers, want %d in %s mode", n, wantContainers, c.mode)
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	if len(gh.Command) > 0 || !slices.Equal(gh.Args, []string{"serve", "-config", configPath}) {
		t.Errorf("gatehouse command %q args %q: want the image's entrypoint with serve -config %s", gh.Command, gh.Args, configPath)
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{
		{"livenessProbe", gh.LivenessProbe, healthzPath},
		{"readinessProbe", gh.ReadinessProbe, readyzPath},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", p.what, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path = %q, want %q", p.what, p.probe.HTTPGet.Path, p.path)
		}
		if port, _ := containerPort(gh, p.probe.HTTPGet.Port); port != 4180 {
			t.Errorf("%s port %s is %d, want gatehouse's 4180", p.what, p.probe.HTTPGet.Port.String(), port)
		}
	}
	pod := d.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken: want false; gatehouse does not call the Kubernetes API")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.FSGroup == nil || *psc.FSGroup != gatehouseUID ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v: want runAsNonRoot, fsGroup %d and the RuntimeDefault seccomp profile", psc, gatehouseUID)
	}
	for _, ct := range pod.Containers {
		checkContainerSecurity(t, ct)
	}
	checkMemory(t, gh, c.goMemLimit)
}

// checkContainerSecurity fails unless the container runs as non-root with
// a read-only root file system, no privilege escalation and no
// capabilities.
func checkContainerSecurity(t *testing.T, c corev1.Container) {
	sc := c.SecurityContext
	ok := sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot &&
		sc.RunAsUser != nil && *sc.RunAsUser != 0 &&
		sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem &&
		sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
		sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0
	if !ok {
		t.Errorf("container %s: securityContext %+v: want runAsNonRoot with a non-zero runAsUser, readOnlyRootFilesystem, no allowPrivilegeEscalation, capabilities drop [ALL]", c.Name, sc)
	}
}

// checkMemory checks GOMEMLIMIT: the value the memory limit gives, under
// the limit and at least 75% of it.
func checkMemory(t *testing.T, c *corev1.Container, want string) {
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Error("no memory limit")
		return
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 {
		t.Error("no GOMEMLIMIT env: set it a little below the memory limit")
		return
	}
	got := c.Env[i].Value
	if got != want {
		t.Errorf("GOMEMLIMIT = %q, want %q for a memory limit of %s", got, want, limit.String())
	}
	mib, err := strconv.ParseInt(strings.TrimSuffix(got, "MiB"), 10, 64)
	if err != nil || mib<<20 >= limit.Value() || mib<<20 < limit.Value()*3/4 {
		t.Errorf("GOMEMLIMIT %s: want between 75%% and 100%% of the memory limit %s", got, limit.String())
	}
}

// containerPort resolves a port given by number or name to the
// container's port number.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// checkAgainstConfig checks the pod and Services against the loaded
// configuration: listen port, admin port, grace period.
func checkAgainstConfig(t *testing.T, objs *objects, d *appsv1.Deployment, gh *corev1.Container, cfg *config.Config) {
	listen := listenPort(t, "listen", cfg.Listen)
	if _, ok := containerPort(gh, intstr.FromInt32(listen)); !ok {
		t.Errorf("no container port %d (listen %s)", listen, cfg.Listen)
	}
	// Every port of every Service in front of the pods leads to gatehouse's
	// listen port, never past it to the app, except the metrics Service,
	// which leads to the admin port alone.
	n := 0
	for _, s := range objs.services {
		if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
			continue
		}
		n++
		want, what := listen, "listen"
		if s.Labels["app.kubernetes.io/component"] == "metrics" {
			if cfg.Admin.Listen == "" {
				t.Errorf("Service %s: a metrics Service without admin.listen", s.Name)
			}
			want, what = listenPort(t, "admin.listen", cfg.Admin.Listen), "admin.listen"
		}
		for _, p := range s.Spec.Ports {
			if got, _ := containerPort(gh, p.TargetPort); got != want {
				t.Errorf("Service %s port %d: targetPort %s leads to %d, want gatehouse's %s port %d", s.Name, p.Port, p.TargetPort.String(), got, what, want)
			}
		}
	}
	if n == 0 {
		t.Error("no Service selects gatehouse's pods")
	}
	grace := 30 * time.Second
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	var preStop time.Duration
	if l := gh.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	if need := preStop + cfg.Server.ShutdownTimeout; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %s must exceed the preStop sleep %s plus server.shutdown_timeout %s", grace, preStop, cfg.Server.ShutdownTimeout)
	}
}

func listenPort(t *testing.T, key, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.ParseInt(p, 10, 32)
	if err != nil || err2 != nil {
		t.Fatalf("%s %q is not host:port", key, addr)
	}
	return int32(n)
}

// checkAvailability checks the PodDisruptionBudget and anti-affinity:
// present with more than one replica, absent with one (a budget for a
// single pod would block every node drain).
func checkAvailability(t *testing.T, c renderCase, objs *objects, d *appsv1.Deployment) {
	labels := d.Spec.Template.Labels
	var pdbs int
	for _, p := range objs.pdbs {
		if p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, labels) {
			pdbs++
			if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 {
				t.Errorf("PodDisruptionBudget %s: maxUnavailable = %v, want 1", p.Name, p.Spec.MaxUnavailable)
			}
		}
	}
	if len(objs.pdbs) != pdbs {
		t.Errorf("%d PodDisruptionBudgets select nothing of the chart's", len(objs.pdbs)-pdbs)
	}
	aff := d.Spec.Template.Spec.Affinity
	spread := aff != nil && aff.PodAntiAffinity != nil && slices.ContainsFunc(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
		func(w corev1.WeightedPodAffinityTerm) bool {
			return w.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && w.PodAffinityTerm.LabelSelector != nil &&
				selects(w.PodAffinityTerm.LabelSelector.MatchLabels, labels)
		})
	switch {
	case c.replicas > 1 && pdbs != 1:
		t.Errorf("%d replicas: %d PodDisruptionBudgets select the pods, want 1", c.replicas, pdbs)
	case c.replicas <= 1 && pdbs != 0:
		t.Errorf("one replica: a PodDisruptionBudget would block every node drain")
	case c.replicas > 1 && !spread:
		t.Errorf("%d replicas: want a preferred pod anti-affinity on kubernetes.io/hostname", c.replicas)
	}
	if s := d.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Error("rolling update: want maxUnavailable 0, a new pod before an old one stops")
	}
}

// checkSidecar checks the sidecar layout: the app shares the pod, declares
// no port, and gatehouse's upstream is its loopback address.
func checkSidecar(t *testing.T, objs *objects) {
	d := objs.deployments[0]
	var app *corev1.Container
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "wiki" {
			app = &d.Spec.Template.Spec.Containers[i]
		}
	}
	if app == nil {
		t.Fatal("no app container named wiki (app.name)")
	}
	if app.Image != "registry.example.com/wiki:1.0" {
		t.Errorf("app image = %q", app.Image)
	}
	if len(app.Ports) > 0 {
		t.Errorf("app container declares ports %v; only gatehouse is reachable from outside the pod", app.Ports)
	}
	text := objs.configMaps[0].Data["gatehouse.yaml"]
	if !strings.Contains(text, "upstream: http://127.0.0.1:3000\n") {
		t.Errorf("gatehouse.yaml: want upstream http://127.0.0.1:3000 (app.port on loopback):\n%s", text)
	}
	if !slices.ContainsFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
		t.Error("app: want a writable /tmp, the root file system being read-only")
	}
	if strings.Contains(objs.notes, "WARNING") {
		t.Errorf("NOTES.txt warns in sidecar mode, where only gatehouse reaches the app:\n%s", objs.notes)
	}
}

// checkMonitoring checks the metrics Service, the ServiceMonitor and the
// NetworkPolicies.
func checkMonitoring(t *testing.T, objs *objects) {
	d := objs.deployments[0]
	labels := d.Spec.Template.Labels
	gh := gatehouseContainer(t, d)
	if port, ok := containerPort(gh, intstr.FromString("admin")); !ok || port != 9090 {
		t.Errorf("container port admin = %d, want 9090", port)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9090" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io scrape, port 9090 and path /metrics", ann)
	}
	if len(objs.serviceMonitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(objs.serviceMonitors))
	}
	sm := objs.serviceMonitors[0]
	if sm.Labels["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v: want metrics.serviceMonitor.labels", sm.Labels)
	}
	var selected []*corev1.Service
	for _, s := range objs.services {
		if selects(sm.Spec.Selector.MatchLabels, s.Labels) {
			selected = append(selected, s)
		}
	}
	if len(selected) != 1 || !selects(selected[0].Spec.Selector, labels) {
		t.Fatalf("the ServiceMonitor selects %d Services, want the metrics Service of gatehouse's pods", len(selected))
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		!slices.ContainsFunc(selected[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "admin" }) {
		t.Errorf("ServiceMonitor endpoints %+v: want port admin, path /metrics, a port of Service %s", sm.Spec.Endpoints, selected[0].Name)
	}

	gate := find(t, objs.networkPolicies, fullname, func(p *networkingv1.NetworkPolicy) metav1.ObjectMeta { return p.ObjectMeta })
	if !selects(gate.Spec.PodSelector.MatchLabels, labels) {
		t.Errorf("NetworkPolicy %s selects %v, not gatehouse's pods", gate.Name, gate.Spec.PodSelector.MatchLabels)
	}
	var ports []string
	for _, rule := range gate.Spec.Ingress {
		if len(rule.From) != 1 || rule.From[0].NamespaceSelector == nil {
			t.Errorf("NetworkPolicy %s: a rule without the from of the values: %+v", gate.Name, rule.From)
		}
		for _, p := range rule.Ports {
			ports = append(ports, p.Port.String())
		}
	}
	if !slices.Equal(ports, []string{"http", "admin"}) {
		t.Errorf("NetworkPolicy %s lets in ports %v, want [http admin]", gate.Name, ports)
	}
	app := find(t, objs.networkPolicies, fullname+"-app", func(p *networkingv1.NetworkPolicy) metav1.ObjectMeta { return p.ObjectMeta })
	if app.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "wiki" || len(app.Spec.Ingress) != 1 ||
		len(app.Spec.Ingress[0].From) != 1 || app.Spec.Ingress[0].From[0].PodSelector == nil ||
		!selects(app.Spec.Ingress[0].From[0].PodSelector.MatchLabels, labels) {
		t.Errorf("NetworkPolicy %s: want the app's pods reachable from gatehouse's pods only: %+v", app.Name, app.Spec)
	}
	if strings.Contains(objs.notes, "WARNING") {
		t.Errorf("NOTES.txt warns although a NetworkPolicy protects the app:\n%s", objs.notes)
	}
}

// checkSecretValues checks the values in the Secret the chart creates.
func checkSecretValues(t *testing.T, objs *objects, want map[string]string) {
	s := find(t, objs.secrets, fullname, func(s *corev1.Secret) metav1.ObjectMeta { return s.ObjectMeta })
	for k, v := range want {
		if got := string(s.Data[k]); got != v {
			t.Errorf("Secret %s key %s = %q, want %q", s.Name, k, got, v)
		}
	}
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
			t.Errorf("expected a warning starting %q", p)
		}
	}
}

// TestChart_GoMemLimit checks GOMEMLIMIT for memory limits in each unit
// Kubernetes takes: 90% of the limit, in MiB, rounded down.
func TestChart_GoMemLimit(t *testing.T) {
	for _, c := range []struct {
		name string
		set  string
		want string // "": no GOMEMLIMIT
	}{
		{"binary units", "resources.limits.memory=512Mi", "460MiB"},
		{"gibibytes", "resources.limits.memory=2Gi", "1843MiB"},
		{"decimal units", "resources.limits.memory=512M", "439MiB"},
		{"bytes as a number in a values file", "json:resources.limits.memory=268435456", "230MiB"},
		{"given outright", "goMemLimit=100MiB", "100MiB"},
		{"no memory limit", "resources.limits=null", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			files, err := renderChart(t, "standalone.yaml", c.set)
			if err != nil {
				t.Fatal(err)
			}
			gh := gatehouseContainer(t, parseObjects(t, files).deployments[0])
			var got string
			for _, e := range gh.Env {
				if e.Name == "GOMEMLIMIT" {
					got = e.Value
				}
			}
			if got != c.want {
				t.Errorf("--set %s: GOMEMLIMIT = %q, want %q", c.set, got, c.want)
			}
		})
	}
}

// TestChart_RolloutOnConfigChange checks the checksum annotation: absent
// by default (gatehouse reloads an edited configuration without signing
// anyone out), and with rolloutOnConfigChange one that changes with the
// configuration, so that helm upgrade restarts the pods.
func TestChart_RolloutOnConfigChange(t *testing.T) {
	checksum := func(sets ...string) string {
		t.Helper()
		files, err := renderChart(t, "standalone.yaml", sets...)
		if err != nil {
			t.Fatal(err)
		}
		return parseObjects(t, files).deployments[0].Spec.Template.Annotations["checksum/config"]
	}
	if got := checksum(); got != "" {
		t.Errorf("checksum/config = %q by default; want none", got)
	}
	a := checksum("rolloutOnConfigChange=true")
	b := checksum("rolloutOnConfigChange=true", "config.upstream=http://wiki:8081")
	if a == "" || a == b {
		t.Errorf("checksum/config = %q, then %q after an upstream change; want two different checksums", a, b)
	}
}
