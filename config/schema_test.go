package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite ../gatehouse.schema.json")

// TestJSONSchema_InSync keeps the published schema equal to what the Go
// types and their doc comments say; go test ./config -update-schema
// rewrites it.
func TestJSONSchema_InSync(t *testing.T) {
	got, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	const file = "../gatehouse.schema.json"
	if *updateSchema {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./config -update-schema)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("gatehouse.schema.json is out of date with config.go; run go test ./config -update-schema")
	}
}

// TestJSONSchema_Describes checks that the schema knows every key and
// carries the doc comments.
func TestJSONSchema_Describes(t *testing.T) {
	b, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	props := s["properties"].(map[string]any)
	cookie := props["cookie"].(map[string]any)["properties"].(map[string]any)
	secret := cookie["secret"].(map[string]any)
	if d, _ := secret["description"].(string); !bytes.Contains([]byte(d), []byte("openssl rand -base64 32")) {
		t.Errorf("cookie.secret description %q", d)
	}
	if s["additionalProperties"] != false {
		t.Error("the schema allows unknown top-level keys")
	}
	idle := props["session"].(map[string]any)["properties"].(map[string]any)["idle_timeout"].(map[string]any)
	if idle["type"] != "string" || idle["pattern"] == nil {
		t.Errorf("durations: %v", idle)
	}
	routes := props["routes"].(map[string]any)
	if routes["type"] != "array" {
		t.Errorf("routes: %v", routes)
	}
}
