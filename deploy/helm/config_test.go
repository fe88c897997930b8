package helm

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/deploytest"
)

// secretRef is a file the gatehouse container sees, and the Secret key
// behind it.
type secretRef struct{ secret, key string }

// secretFiles lists the files the container sees from Secrets, by path,
// and checks that only the pod's fsGroup may read them.
func secretFiles(t *testing.T, d *appsv1.Deployment, c *corev1.Container) map[string]secretRef {
	t.Helper()
	volumes := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	out := map[string]secretRef{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("volumeMount %s: no such volume", m.Name)
			continue
		}
		var mode *int32
		switch {
		case v.Secret != nil:
			mode = v.Secret.DefaultMode
			for _, it := range v.Secret.Items {
				out[path.Join(m.MountPath, it.Path)] = secretRef{v.Secret.SecretName, it.Key}
			}
		case v.Projected != nil:
			mode = v.Projected.DefaultMode
			for _, src := range v.Projected.Sources {
				if src.Secret == nil {
					continue
				}
				if len(src.Secret.Items) == 0 {
					t.Errorf("volume %s: Secret %s without items; name each file", v.Name, src.Secret.Name)
				}
				for _, it := range src.Secret.Items {
					p := path.Join(m.MountPath, it.Path)
					if _, dup := out[p]; dup {
						t.Errorf("volume %s: two sources for %s", v.Name, p)
					}
					out[p] = secretRef{src.Secret.Name, it.Key}
				}
			}
		default:
			continue
		}
		if mode == nil || *mode != 0o440 {
			got := "unset"
			if mode != nil {
				got = fmt.Sprintf("%#o", *mode)
			}
			t.Errorf("volume %s: defaultMode = %s, want 0440 (the fsGroup reads, others nothing)", v.Name, got)
		}
	}
	return out
}

// checkSecretsMounted checks that every Secret key the pod mounts exists:
// in the Secret the chart renders, or among the Secrets the values name
// (created by the operator), and that the chart creates exactly the keys
// given as values.
func checkSecretsMounted(t *testing.T, c renderCase, objs *objects, d *appsv1.Deployment) {
	var createdKeys []string
	for _, s := range objs.secrets {
		if s.Name != fullname {
			t.Errorf("Secret %s: the chart creates only %s", s.Name, fullname)
		}
		createdKeys = slices.Sorted(maps.Keys(s.Data))
	}
	if !slices.Equal(createdKeys, c.created) {
		t.Errorf("the chart's Secret holds %v, want %v", createdKeys, c.created)
	}
	used := map[secretRef]bool{}
	for p, ref := range secretFiles(t, d, gatehouseContainer(t, d)) {
		used[ref] = true
		if keys, ok := c.existing[ref.secret]; ok {
			if !slices.Contains(keys, ref.key) {
				t.Errorf("%s: Secret %s has no key %s (it holds %v)", p, ref.secret, ref.key, keys)
			}
			continue
		}
		if ref.secret != fullname || !slices.Contains(createdKeys, ref.key) {
			t.Errorf("%s: Secret %s key %s is neither rendered by the chart nor one the values name", p, ref.secret, ref.key)
		}
	}
	for name, keys := range c.existing {
		for _, k := range keys {
			if !used[secretRef{name, k}] {
				t.Errorf("Secret %s key %s, named in the values, is not mounted", name, k)
			}
		}
	}
}

// loadRenderedConfig finds the gatehouse.yaml the container reads from
// the ConfigMap and loads it with config.Load, offline: every file it
// names must be mounted from a Secret, and a temporary file with a valid
// stand-in value takes its place. Any configuration problem fails.
//
// gatehouse check -offline would do the same on a real pod's files; the
// test calls the config package directly.
func loadRenderedConfig(t *testing.T, objs *objects, d *appsv1.Deployment, c *corev1.Container) *config.Config {
	t.Helper()
	cm := objs.configMaps[0]
	text, ok := cm.Data["gatehouse.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no gatehouse.yaml", cm.Name)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 {
			continue
		}
		v := d.Spec.Template.Spec.Volumes[i]
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name && m.SubPath == "" && path.Join(m.MountPath, "gatehouse.yaml") == configPath {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("ConfigMap %s is not mounted as a directory at %s (a subPath mount would never see an edit)", cm.Name, path.Dir(configPath))
	}

	files := secretFiles(t, d, c)
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("gatehouse.yaml: %v", err)
	}
	dir := t.TempDir()
	for _, ref := range deploytest.FileRefs(&doc, "") {
		if _, ok := files[ref.Node.Value]; !ok {
			t.Errorf("%s: %s is not a file the gatehouse container mounts from a Secret", ref.Key, ref.Node.Value)
			continue
		}
		gen, ok := standIns[ref.Key]
		if !ok {
			t.Fatalf("%s: add a stand-in value for this key to standIns", ref.Key)
		}
		tmp := filepath.Join(dir, strings.NewReplacer(".", "-", "[]", "").Replace(ref.Key))
		if err := os.WriteFile(tmp, []byte(gen(t)), 0o600); err != nil {
			t.Fatal(err)
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
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("config.Load of the rendered gatehouse.yaml: %v\n%s", err, text)
	}
	return cfg
}

// standIns are valid values for the files the chart mounts, by the YAML
// path of the key naming them.
var standIns = map[string]func(t *testing.T) string{
	"oidc.client_secret_file": deploytest.ClientSecret,
	"cookie.secret_file":      deploytest.CookieSecret,
	"session.redis.url_file":  deploytest.RedisURL,
	"assertion.key_file":      deploytest.ECDSAKeyPEM,
}
