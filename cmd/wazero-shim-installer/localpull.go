package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// criImagesTable is containerd 2.x's CRI images plugin table (config version 3 and 4).
var criImagesTable = []string{"plugins", "io.containerd.cri.v1.images"}

// localPullKey makes containerd 2.x's CRI plugin pull images with containerd's client (as 1.x
// and 2.2 do) rather than through the transfer service, whose unpack containerd 2.4 limits to
// images whose config says the node's platform. With it, a kubelet's pull of a bare wasip1/wasm
// manifest is unpacked and runs; without it, creating the container fails ("parent snapshot ...
// does not exist"). See docs/kubernetes.md, -local-image-pull.
const localPullKey = "use_local_image_pull"

// setLocalImagePull sets use_local_image_pull = true in the CRI images table of a version 3 or
// 4 config, as text: the key's value is replaced (with force, when it is false), or a line is
// added under the table's [header], or the table is appended. It returns the new content (src
// itself when nothing changes), whether it changed, and a summary.
func setLocalImagePull(src []byte, force, template bool) (_ []byte, changed bool, summary string, _ error) {
	scanned := src
	if template {
		scanned = maskTemplate(src)
	}
	doc, err := scan(scanned)
	if err != nil {
		return nil, false, "", fmt.Errorf("cannot follow the file (not changed): %w", err)
	}
	key := append(slices.Clone(criImagesTable), localPullKey)
	table := strings.Join(key[:2], ".")
	nl := "\n"
	if bytes.Contains(src, []byte("\r\n")) {
		nl = "\r\n"
	}
	for _, k := range doc.keys {
		if len(k.path) < len(key) && hasPrefix(key, k.path) {
			return nil, false, "", fmt.Errorf("line %d: %s is defined as an inline table or value; set %s = true there by hand (config not changed)", k.line, strings.Join(k.path, "."), localPullKey)
		}
	}
	definedByKeys := false
	for _, k := range doc.keys {
		if pathEqual(k.path, key) {
			val := strings.TrimSpace(string(src[k.valStart:k.valEnd]))
			if val == "true" {
				return src, false, localPullKey + " already true", nil
			}
			if !force {
				return nil, false, "", fmt.Errorf("%w: line %d: %s = %s in %s; config not changed (run with -force to set it to true)", errConflict, k.line, localPullKey, val, table)
			}
			return slices.Concat(src[:k.valStart], []byte("true"), src[k.valEnd:]), true, fmt.Sprintf("set %s = true (-force; it was %s)", localPullKey, val), nil
		}
		if k.table < len(criImagesTable) && hasPrefix(k.path, criImagesTable) {
			definedByKeys = true
		}
	}
	line := []byte("  " + localPullKey + " = true" + nl)
	for _, h := range doc.headers {
		if h.array || !pathEqual(h.path, criImagesTable) {
			continue
		}
		if definedByKeys {
			return nil, false, "", fmt.Errorf("%s is defined both by a [header] (line %d) and by keys elsewhere, which TOML forbids; fix config.toml by hand", table, h.line)
		}
		prefix := src[:h.end]
		if !bytes.HasSuffix(prefix, []byte("\n")) {
			prefix = slices.Concat(prefix, []byte(nl))
		}
		return slices.Concat(prefix, line, src[h.end:]), true, fmt.Sprintf("added %s = true under [%s] (line %d)", localPullKey, table, h.line), nil
	}
	if definedByKeys {
		return nil, false, "", fmt.Errorf("%s is defined with dotted keys; set %s = true there by hand (config not changed)", table, localPullKey)
	}
	out := slices.Clone(src)
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, nl...)
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte(nl+nl)) {
		out = append(out, nl...)
	}
	out = append(out, "# Added by wazero-shim-installer (-local-image-pull): the kubelet's pulls unpack bare wasip1/wasm images."+nl...)
	out = append(out, fmt.Sprintf("[plugins.'%s']", criImagesTable[1])+nl...)
	out = append(out, line...)
	return out, true, fmt.Sprintf("added [%s] with %s = true", table, localPullKey), nil
}

// hasLocalPull reports whether a `containerd config dump` output has use_local_image_pull = true.
func hasLocalPull(dump []byte, doc *document) bool {
	key := append(slices.Clone(criImagesTable), localPullKey)
	for _, k := range doc.keys {
		if pathEqual(k.path, key) && strings.TrimSpace(string(dump[k.valStart:k.valEnd])) == "true" {
			return true
		}
	}
	return false
}
