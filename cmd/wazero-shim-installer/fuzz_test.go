package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzScan: the installer's TOML structure scanner, over any config.toml a node may have. Never
// a panic; a scanned document's offsets and lines lie within the file, values are in order, and
// scanning is deterministic. Seeds: the config.toml files of testdata.
func FuzzScan(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.toml"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "a = 1\n", "[a]\nb = \"x\"\n[[c]]\nd = 'y'\n", "a = \"\"\"\n[not.a.header]\n\"\"\"\n", "a = [1,\n2]\n", "a = {b = 1, c.d = \"e\"}\n",
		"a = \"\"\"unterminated", "[a\n", "a.\"b.c\".d = 1\r\n", "\"\\u00e9\" = 1", "a = '''x'''", "[a] # c\n#x\n", "a = [[1], {b=2}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		doc, err := scan(src)
		if err != nil {
			return
		}
		lines := 1
		for _, c := range src {
			if c == '\n' {
				lines++
			}
		}
		for _, h := range doc.headers {
			if h.end < 0 || h.end > len(src) || h.line < 1 || h.line > lines || len(h.path) == 0 {
				t.Fatalf("header %+v out of the file (%d bytes, %d lines)", h, len(src), lines)
			}
		}
		for _, k := range doc.keys {
			if k.valStart < 0 || k.valStart > k.valEnd || k.valEnd > len(src) || k.line < 1 || k.line > lines || len(k.path) == 0 || k.table > len(k.path) {
				t.Fatalf("key %+v out of the file (%d bytes, %d lines)", k, len(src), lines)
			}
		}
		again, err := scan(src)
		if err != nil || !reflect.DeepEqual(again, doc) {
			t.Fatalf("scanning again: %v", err)
		}
	})
}
