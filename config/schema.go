package config

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"time"
)

// configSource is this package's schema file: the doc comments of its
// fields are the user documentation, and the JSON Schema takes its
// descriptions from them, so the two cannot drift apart.
//
//go:embed config.go
var configSource string

// JSONSchema returns a JSON Schema (draft 2020-12) of the configuration
// file, generated from the Go types and their doc comments, for editors to
// complete and check gatehouse.yaml. Durations are strings in Go's
// duration syntax; unknown keys are not allowed, as in gatehouse itself.
func JSONSchema() ([]byte, error) {
	docs, err := fieldDocs()
	if err != nil {
		return nil, err
	}
	s := schemaOf(reflect.TypeFor[Config](), docs)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["title"] = "gatehouse configuration"
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// fieldDocs maps "Type.Field" to the field's doc comment.
func fieldDocs() (map[string]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", configSource, parser.ParseComments)
	if err != nil {
		return nil, fmt.Errorf("parse config.go: %w", err)
	}
	docs := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, spec := range gd.Specs {
			ts, ok := spec.(*ast.TypeSpec)
			if !ok {
				continue
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			if gd.Doc != nil {
				docs[ts.Name.Name] = clean(gd.Doc.Text())
			}
			for _, fld := range st.Fields.List {
				if fld.Doc == nil {
					continue
				}
				for _, n := range fld.Names {
					docs[ts.Name.Name+"."+n.Name] = clean(fld.Doc.Text())
				}
			}
		}
	}
	return docs, nil
}

func clean(s string) string { return strings.Join(strings.Fields(s), " ") }

var durationKind = reflect.TypeFor[time.Duration]()

func schemaOf(t reflect.Type, docs map[string]string) map[string]any {
	switch {
	case t == durationKind:
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`,
			"description": "A Go duration, e.g. 90s, 30m, 12h."}
	case t.Kind() == reflect.Pointer:
		return schemaOf(t.Elem(), docs)
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() == reflect.Int:
		return map[string]any{"type": "integer"}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), docs)}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), docs)}
	case t.Kind() == reflect.Struct:
		props := map[string]any{}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			p := schemaOf(f.Type, docs)
			if d := docs[t.Name()+"."+f.Name]; d != "" {
				p["description"] = d
			} else if d := docs[f.Type.Name()]; d != "" && f.Type.Kind() == reflect.Struct {
				p["description"] = d
			}
			props[tag] = p
		}
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}
