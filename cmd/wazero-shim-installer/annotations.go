package main

import (
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"
)

// The shim reads its own annotations (wazero.dev/shared-server, wazero.dev/runtime and
// wazero.dev/runtime.<container>) from a container's OCI spec. containerd's CRI plugin copies a
// pod's annotations into its sandbox's and containers' specs only when the runtime's
// pod_annotations lists a pattern matching them, and a container's own CRI annotations only when
// container_annotations does (containerd matches each key with path.Match). So the installer
// writes both keys, with the one pattern annotationPattern, in the runtime table it creates, and
// adds the pattern to a table that is already there. See RATIONALE.md, "Why the installer passes
// wazero.dev/* pod annotations on".

// annotationPattern is the pattern the installer writes: every annotation of the shim's prefix,
// and nothing else.
const annotationPattern = "wazero.dev/*"

// annotationKeys are the runtime keys that list the annotations the CRI plugin passes on, in the
// order they are written.
var annotationKeys = []string{"pod_annotations", "container_annotations"}

// shimAnnotations are keys the shim reads; a pattern covers the prefix only when it matches all
// of them, and the literal key "wazero.dev/*" (so that it matches any name under the prefix).
var shimAnnotations = []string{"wazero.dev/*", "wazero.dev/shared-server", "wazero.dev/runtime", "wazero.dev/runtime.istio-proxy"}

// annotationLines are the lines of a new runtime table that pass the shim's annotations on.
func annotationLines(indent, nl string) string {
	var b strings.Builder
	for _, k := range annotationKeys {
		fmt.Fprintf(&b, "%s%s = [%q]%s", indent, k, annotationPattern, nl)
	}
	return b.String()
}

// coversShim reports whether one of the patterns makes containerd pass on every annotation of the
// shim's prefix (as containerd matches them: path.Match, so "*" alone does not cross the '/').
func coversShim(patterns []string) bool {
	for _, p := range patterns {
		all := true
		for _, k := range shimAnnotations {
			if ok, _ := path.Match(p, k); !ok {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// stringArray is a TOML array of single-line strings as written in a file.
type stringArray struct {
	elems   []string
	open    int // offset just after '['
	lastEnd int // offset just after the last element; -1 when the array is empty
}

// parseStringArray reads val, a TOML value as written, as an array of single-line strings. Any
// other value (a string, a number, an inline table, an array holding something else) is an error
// that says what was found.
func parseStringArray(val []byte) (stringArray, error) {
	a := stringArray{lastEnd: -1}
	s := &scanner{src: val, line: 1}
	if s.peek() != '[' {
		return a, fmt.Errorf("it is not an array")
	}
	s.p++
	a.open = s.p
	for {
		s.skipBlank()
		switch c := s.peek(); {
		case s.eof():
			return a, fmt.Errorf("the array is not closed")
		case c == ']':
			if s.p+1 != len(val) {
				return a, fmt.Errorf("unexpected text after the array")
			}
			return a, nil
		case c == '"' && !s.hasPrefix(`"""`), c == '\'' && !s.hasPrefix(`'''`):
			var v string
			var err error
			if c == '"' {
				v, err = s.basicString()
			} else {
				v, err = s.literalString()
			}
			if err != nil {
				return a, err
			}
			a.elems = append(a.elems, v)
			a.lastEnd = s.p
		default:
			return a, fmt.Errorf("it holds %s, which is not a single-line string", describeElement(val[s.p:]))
		}
		s.skipBlank()
		if s.peek() == ',' {
			s.p++
		} else if s.peek() != ']' {
			return a, fmt.Errorf("expected ',' or ']' after an element")
		}
	}
}

// describeElement names the array element that starts rest, for an error.
func describeElement(rest []byte) string {
	end := bytes.IndexAny(rest, ",]\n")
	if end < 0 {
		end = len(rest)
	}
	return strings.TrimSpace(string(rest[:end]))
}

// passAnnotations makes the runtime table at target (which exists, defined by a [header] or by
// keys) pass the shim's annotations on: each of annotationKeys that is missing is added under the
// table's header, and one whose list lacks a pattern covering wazero.dev/ gets annotationPattern
// appended, the other patterns kept. It returns the new content (src itself when nothing changes),
// what it added (`pod_annotations = ["wazero.dev/*"]`, `"wazero.dev/*" to pod_annotations (line
// 6, its other 1 kept)`), and warnings: a table defined by dotted keys or an inline table that lacks a key is
// not extended (the operator is told what to add). A value that is not an array of strings is an
// error naming its line and key.
func passAnnotations(src []byte, target []string, nl string, template bool) (out []byte, did, warn []string, err error) {
	out = src
	table := strings.Join(target, ".")
	for _, key := range annotationKeys {
		scanned := out
		if template {
			scanned = maskTemplate(out)
		}
		doc, err := scan(scanned)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("internal error: the edited config does not scan: %w", err)
		}
		rt, err := findRuntime(doc, target)
		if err != nil {
			return nil, nil, nil, err
		}
		full := append(slices.Clone(target), key)
		for _, h := range doc.headers {
			if pathEqual(h.path, full) || hasPrefix(h.path, full) {
				return nil, nil, nil, fmt.Errorf("line %d: [%s] makes %s a table; it must be an array of strings: remove that table and write %s = [%q] under [%s], then run the installer again (config not changed)", h.line, strings.Join(h.path, "."), key, key, annotationPattern, table)
			}
		}
		var def *keyDef
		for i, k := range doc.keys {
			if pathEqual(k.path, full) {
				def = &doc.keys[i]
			} else if hasPrefix(k.path, full) {
				return nil, nil, nil, fmt.Errorf("line %d: %s is defined as a table (%s); it must be an array of strings such as %s = [%q]: fix it, then run the installer again (config not changed)", k.line, key, strings.Join(k.path, "."), key, annotationPattern)
			}
		}
		if def == nil {
			if rt.header == nil {
				where := ""
				if rt.typeKey != nil {
					where = fmt.Sprintf(" (its runtime_type is on line %d)", rt.typeKey.line)
				}
				warn = append(warn, fmt.Sprintf("runtime table %s is defined by dotted keys or an inline table%s, which the installer does not extend, and has no %s: add %s = [%q] to it by hand, or containerd's CRI plugin passes no wazero.dev/ annotation to the shim (docs/kubernetes.md)", table, where, key, key, annotationPattern))
				continue
			}
			out = insertUnderHeader(out, doc, rt, target, key, nl)
			did = append(did, fmt.Sprintf("%s = [%q]", key, annotationPattern))
			continue
		}
		val := out[def.valStart:def.valEnd]
		arr, perr := parseStringArray(val)
		if perr != nil {
			shown := string(val)
			if len(shown) > 80 {
				shown = shown[:80] + "..."
			}
			return nil, nil, nil, fmt.Errorf("line %d: %s = %s in %s is not an array of strings (%v): write it as %s = [%q], with any patterns of your own as more strings in the list, then run the installer again (config not changed)", def.line, key, shown, table, perr, key, annotationPattern)
		}
		if coversShim(arr.elems) {
			continue
		}
		ins, at := fmt.Sprintf(", %q", annotationPattern), def.valStart+arr.lastEnd
		if arr.lastEnd < 0 {
			ins, at = fmt.Sprintf("%q", annotationPattern), def.valStart+arr.open
		}
		out = slices.Concat(out[:at], []byte(ins), out[at:])
		did = append(did, fmt.Sprintf("%q to %s (line %d, its other %d kept)", annotationPattern, key, def.line, len(arr.elems)))
	}
	return out, did, warn, nil
}

// insertUnderHeader adds "key = [pattern]" to the runtime table's [header] section: on the line
// after the last of runtime_type and the annotation keys written under it (with that line's
// indentation), or right after the header.
func insertUnderHeader(src []byte, doc *document, rt runtimeTable, target []string, key, nl string) []byte {
	at, indent := rt.header.end, "  "
	for _, k := range doc.keys {
		if k.table != len(target) || len(k.path) != len(target)+1 || !hasPrefix(k.path, target) {
			continue
		}
		if name := k.path[len(target)]; name != "runtime_type" && !slices.Contains(annotationKeys, name) {
			continue
		}
		if k.valEnd < rt.header.end {
			continue
		}
		lineStart := bytes.LastIndexByte(src[:k.valStart], '\n') + 1
		eol := bytes.IndexByte(src[k.valEnd:], '\n')
		if eol < 0 {
			at = len(src)
		} else {
			at = k.valEnd + eol + 1
		}
		line := src[lineStart:]
		indent = string(line[:len(line)-len(bytes.TrimLeft(line, " \t"))])
	}
	prefix := src[:at]
	if len(prefix) > 0 && !bytes.HasSuffix(prefix, []byte("\n")) {
		prefix = slices.Concat(prefix, []byte(nl))
	}
	line := fmt.Sprintf("%s%s = [%q]%s", indent, key, annotationPattern, nl)
	return slices.Concat(prefix, []byte(line), src[at:])
}
