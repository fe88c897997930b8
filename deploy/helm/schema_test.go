package helm

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/config"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite gatehouse/values.schema.json's config from gatehouse's configuration schema")

// TestValuesSchema_ConfigInSync keeps the config value's schema in the
// chart's values.schema.json equal to gatehouse's own configuration
// schema (config.JSONSchema, gatehouse.schema.json), so that helm install
// refuses a misspelt configuration key before anything is deployed. Helm
// cannot follow a $ref out of the chart, hence the copy; go test
// -update-schema rewrites it.
func TestValuesSchema_ConfigInSync(t *testing.T) {
	file := filepath.Join(chartDir, "values.schema.json")
	old, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := valuesSchema(old)
	if err != nil {
		t.Fatal(err)
	}
	if *updateSchema {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, old) {
		t.Errorf("%s: the config schema is out of date with gatehouse's configuration; run (cd deploy/helm && go test -run TestValuesSchema -update-schema .)", file)
	}
}

// valuesSchema returns the chart's values schema with the config
// property replaced by gatehouse's configuration schema.
func valuesSchema(old []byte) ([]byte, error) {
	var values map[string]any
	if err := json.Unmarshal(old, &values); err != nil {
		return nil, err
	}
	b, err := config.JSONSchema()
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, err
	}
	// A subschema, not a document: the chart's schema names the draft.
	delete(cfg, "$schema")
	delete(cfg, "title")
	cfg["description"] = "gatehouse's configuration (gatehouse.yaml), as in gatehouse.schema.json; the chart sets listen, admin.listen, the secrets' *_file keys and, in sidecar mode, upstream."
	values["properties"].(map[string]any)["config"] = cfg
	out, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
