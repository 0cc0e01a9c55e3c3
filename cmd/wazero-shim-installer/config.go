package main

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// runtimeType is the containerd runtime type the shim implements; containerd turns it into the
// binary name containerd-shim-wazero-v1.
const runtimeType = "io.containerd.wazero.v1"

// CRI plugin IDs holding the runtimes table, by config version.
const (
	criPluginV2 = "io.containerd.grpc.v1.cri"    // version = 2 (containerd 1.6/1.7)
	criPluginV3 = "io.containerd.cri.v1.runtime" // version = 3 and 4 (containerd 2.x)
)

// errConflict marks a runtime section that exists with other settings: nothing is changed
// without -force.
var errConflict = errors.New("conflict")

// editResult says what editConfig did.
type editResult struct {
	version int
	changed bool
	summary string   // "added runtime wazero (version 3)", ...
	warn    []string // things worth telling the operator, not errors
}

var handlerRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// validHandler checks that the handler is what a RuntimeClass accepts (a DNS label), which is
// also always a bare TOML key.
func validHandler(h string) error {
	if len(h) > 63 || !handlerRE.MatchString(h) {
		return fmt.Errorf("handler %q is not a valid RuntimeClass handler (lowercase letters, digits and '-', at most 63)", h)
	}
	return nil
}

// runtimePath is the TOML path of the runtime table for a config version.
func runtimePath(version int, handler string) []string {
	plugin := criPluginV3
	if version == 2 {
		plugin = criPluginV2
	}
	return []string{"plugins", plugin, "containerd", "runtimes", handler}
}

// runtimeBlock is the text appended for a config version, ending in newline nl.
func runtimeBlock(version int, handler, nl string) string {
	hdr := fmt.Sprintf("[plugins.'%s'.containerd.runtimes.%s]", criPluginV3, handler)
	if version == 2 {
		hdr = fmt.Sprintf("[plugins.%q.containerd.runtimes.%s]", criPluginV2, handler)
	}
	return fmt.Sprintf("# Added by wazero-shim-installer: WebAssembly (WASI) workloads, RuntimeClass handler %q.", handler) + nl +
		hdr + nl +
		fmt.Sprintf("  runtime_type = %q", runtimeType) + nl +
		annotationLines("  ", nl)
}

// newConfig is the config written when the node has none, in the form its containerd reads:
// version 2 for containerd 1.x, version 3 for 2.x. containerd's defaults apply to the rest.
func newConfig(handler string, version int) []byte {
	return []byte(fmt.Sprintf("# Created by wazero-shim-installer: there was no config file. version = %d is the form the node's\n", version) +
		"# containerd reads (2 for containerd 1.x, 3 for 2.x); containerd's defaults apply to everything else.\n" +
		fmt.Sprintf("version = %d\n\n", version) + runcBlock(version) + runtimeBlock(version, handler, "\n"))
}

// runcBlock is, for a version 2 config, containerd's default runc runtime: containerd 1.x replaces
// its built-in runtimes by a file's, and its CRI plugin does not start without its default one.
func runcBlock(version int) string {
	if version != 2 {
		return ""
	}
	return "# containerd 1.x's default runtime: a version 2 file's runtimes replace the built-in ones.\n" +
		fmt.Sprintf("[plugins.%q.containerd.runtimes.runc]\n", criPluginV2) +
		"  runtime_type = \"io.containerd.runc.v2\"\n\n"
}

// newTemplate is the k3s/RKE2 template written when there is none: their generated config
// ("base"), then the runtime.
func newTemplate(handler string, version int) []byte {
	return []byte("{{ template \"base\" . }}\n\n" + runtimeBlock(version, handler, "\n"))
}

// templateAction matches a line that is only a Go template action, such as {{ template "base" . }}.
var templateAction = regexp.MustCompile(`(?m)^[ \t]*\{\{.*\}\}[ \t]*\r?$`)

// baseAction matches the line of a k3s/RKE2 template that stands for their generated config.
var baseAction = regexp.MustCompile(`(?m)^[ \t]*\{\{-?\s*template\s+"base"\s+\.\s*-?\}\}[ \t]*\r?$`)

// maskTemplate replaces the bytes of every template action line by spaces, so that the rest of
// the template scans as TOML with the same offsets.
func maskTemplate(src []byte) []byte {
	out := slices.Clone(src)
	for _, m := range templateAction.FindAllIndex(out, -1) {
		for i := m[0]; i < m[1]; i++ {
			if out[i] != '\r' {
				out[i] = ' '
			}
		}
	}
	return out
}

// renderTemplate puts rendered (the distribution's generated config) in place of the "base"
// action. ok is false when other template actions remain, which only the distribution can render.
func renderTemplate(tmpl, rendered []byte) (out []byte, ok bool) {
	out = baseAction.ReplaceAllLiteral(tmpl, rendered)
	return out, !bytes.Contains(out, []byte("{{"))
}

// configVersion returns the value of the top-level "version" key, 1 when there is none.
func configVersion(src []byte, doc *document) (int, error) {
	for _, k := range doc.keys {
		if k.root && len(k.path) == 1 && k.path[0] == "version" {
			raw := strings.ReplaceAll(string(src[k.valStart:k.valEnd]), "_", "")
			v, err := strconv.Atoi(raw)
			if err != nil {
				return 0, fmt.Errorf("line %d: version = %s is not an integer", k.line, src[k.valStart:k.valEnd])
			}
			return v, nil
		}
	}
	return 1, nil
}

var disabledCRI = regexp.MustCompile(`["'](cri|io\.containerd\.grpc\.v1\.cri|io\.containerd\.cri\.v1\.runtime|io\.containerd\.cri\.v1\.images)["']`)

func pathEqual(a, b []string) bool { return slices.Equal(a, b) }

func hasPrefix(p, prefix []string) bool {
	return len(p) > len(prefix) && pathEqual(p[:len(prefix)], prefix)
}

// editConfig adds the runtime section for handler to a containerd config.toml, as text. It
// returns the new content (the input itself when nothing changes). With force, a section that
// exists with another runtime_type is corrected; without, that is an errConflict.
func editConfig(src []byte, handler string, force bool) ([]byte, editResult, error) {
	return editConfigWith(src, handler, force, editOpts{})
}

// editOpts are what editConfigWith needs to know beyond the file.
type editOpts struct {
	// defaultVersion is the config version when the file has no version line (a k3s/RKE2
	// template, whose "base" carries it); 0: such a file is a version 1 config.
	defaultVersion int
	// template: lines that are only a {{ ... }} action are not TOML and are skipped.
	template bool
}

// editConfigWith is editConfig for a file that may be a template or lack its version line. Its
// steps: scan the file, check its version and that CRI is on, find the runtime's table, then
// append it when absent (with pod_annotations and container_annotations = ["wazero.dev/*"]) or,
// when it exists, with force correct its runtime_type, and add what its annotation keys lack
// (passAnnotations).
func editConfigWith(src []byte, handler string, force bool, eo editOpts) ([]byte, editResult, error) {
	var res editResult
	if err := validHandler(handler); err != nil {
		return nil, res, err
	}
	scanned := src
	if eo.template {
		scanned = maskTemplate(src)
	}
	doc, err := scan(scanned)
	if err != nil {
		return nil, res, fmt.Errorf("cannot follow the file (not changed): %w", err)
	}
	v, err := editableVersion(src, scanned, doc, eo)
	res.version = v
	if err != nil {
		return nil, res, err
	}

	target := runtimePath(v, handler)
	name := fmt.Sprintf("runtime %s (version %d)", handler, v)
	nl := "\n"
	if bytes.Contains(src, []byte("\r\n")) {
		nl = "\r\n"
	}
	rt, err := findRuntime(doc, target)
	if err != nil {
		return nil, res, err
	}
	if rt.header == nil && !rt.definedByKeys {
		// Absent (possibly only sub-tables such as [...wazero.options] exist, after which
		// defining the table itself is valid TOML). Append at the end of the file, which the
		// scanner has shown is not inside a string, array or inline table.
		out := slices.Clone(src)
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, nl...)
		}
		if len(out) > 0 && !bytes.HasSuffix(out, []byte(nl+nl)) {
			out = append(out, nl...)
		}
		out = append(out, runtimeBlock(v, handler, nl)...)
		res.changed = true
		res.summary = "added " + name
		return out, res, nil
	}
	out := src
	var did []string
	if k := rt.typeKey; k == nil || k.str == nil || *k.str != runtimeType {
		if out, res, err = setRuntimeType(src, rt, name, nl, force, res); err != nil {
			return nil, res, err
		}
		did = append(did, res.summary)
	}
	out, added, warn, err := passAnnotations(out, target, nl, eo.template)
	res.warn = append(res.warn, warn...)
	if err != nil {
		return nil, res, err
	}
	if len(added) > 0 {
		did = append(did, "added "+strings.Join(added, " and ")+" to "+name)
	}
	if len(did) == 0 {
		res.summary = "unchanged (" + name + " already set up)"
		return src, res, nil
	}
	res.changed = true
	res.summary = strings.Join(did, "; ")
	return out, res, nil
}

// editableVersion returns the file's config version (eo.defaultVersion when it has no version
// line and one is given), or why the installer does not edit it: a version 1 or unknown config,
// or one that disables the CRI plugin.
func editableVersion(src, scanned []byte, doc *document, eo editOpts) (int, error) {
	v, err := configVersion(scanned, doc)
	if err != nil {
		return v, err
	}
	if v == 1 && eo.defaultVersion != 0 && !hasVersionLine(doc) {
		v = eo.defaultVersion
	}
	var disabled string
	for _, k := range doc.keys {
		if k.root && len(k.path) == 1 && k.path[0] == "disabled_plugins" {
			if m := disabledCRI.FindSubmatch(src[k.valStart:k.valEnd]); m != nil {
				disabled = fmt.Sprintf("line %d: disabled_plugins = %s turns off containerd's CRI plugin (%q), which Kubernetes and this runtime need: remove %q from disabled_plugins (Docker's containerd.io package ships it that way)", k.line, src[k.valStart:k.valEnd], m[1], m[1])
			}
		}
	}
	switch {
	case v <= 1:
		msg := "the file has no \"version = 2\" (or 3, 4) line: it is a version 1 config (containerd 1.x's original format, whose plugin section names differ), which this installer does not edit. " +
			"Regenerate it with `containerd config default` (and carry your settings over), or on containerd 2.x convert it with `containerd config migrate`, then run the installer again"
		if disabled != "" {
			msg += "; also, " + disabled
		}
		return v, errors.New(msg)
	case v > 4:
		return v, fmt.Errorf("the file has version = %d, which this installer does not know (it knows 2, 3 and 4)", v)
	case disabled != "":
		return v, fmt.Errorf("%s; not changed", disabled)
	}
	return v, nil
}

// runtimeTable is where a config defines the runtime's table: by a [header], by keys of an
// enclosing table (definedByKeys), or not at all; typeKey is its runtime_type key, if any.
type runtimeTable struct {
	header        *header
	typeKey       *keyDef
	definedByKeys bool
}

// findRuntime locates the table at target, refusing shapes the text edit cannot extend safely:
// an enclosing inline table, an array of tables, or a table defined both ways.
func findRuntime(doc *document, target []string) (runtimeTable, error) {
	var rt runtimeTable
	// A key whose path is a strict prefix of the target (runtimes = {...}, containerd = {...})
	// defines a table inline; TOML forbids extending it with a [header].
	for _, k := range doc.keys {
		if len(k.path) < len(target) && hasPrefix(target, k.path) {
			return rt, fmt.Errorf("line %d: %s is defined as an inline table or value; add the runtime there by hand (config not changed)", k.line, strings.Join(k.path, "."))
		}
	}
	for i, h := range doc.headers {
		if pathEqual(h.path, target) || (h.array && hasPrefix(target, h.path)) {
			if h.array {
				return rt, fmt.Errorf("line %d: %s is an array of tables; not a runtime section (config not changed)", h.line, strings.Join(h.path, "."))
			}
			rt.header = &doc.headers[i]
		}
	}
	for i, k := range doc.keys {
		// "wazero.runtime_type = ..." or "wazero = {...}" in an enclosing table defines the
		// table too, and so forbids a [header] for it.
		if k.table < len(target) && (pathEqual(k.path, target) || hasPrefix(k.path, target)) {
			rt.definedByKeys = true
		}
		if pathEqual(k.path, append(slices.Clone(target), "runtime_type")) {
			rt.typeKey = &doc.keys[i]
		}
	}
	if rt.header != nil && rt.definedByKeys {
		return rt, fmt.Errorf("%s is defined both by a [header] (line %d) and by keys elsewhere, which TOML forbids; fix config.toml by hand", strings.Join(target, "."), rt.header.line)
	}
	return rt, nil
}

// setRuntimeType corrects the runtime_type of an existing runtime table that is not ours: with
// force, by replacing its value or adding the key under its header; without, errConflict.
func setRuntimeType(src []byte, rt runtimeTable, name, nl string, force bool, res editResult) ([]byte, editResult, error) {
	what := "has no runtime_type (containerd would use runc)"
	if k := rt.typeKey; k != nil {
		what = fmt.Sprintf("has runtime_type = %s (line %d)", src[k.valStart:k.valEnd], k.line)
	}
	if !force {
		return nil, res, fmt.Errorf("%w: %s %s, not %q; config not changed (run with -force to set it)", errConflict, name, what, runtimeType)
	}
	quoted := []byte(strconv.Quote(runtimeType))
	var out []byte
	switch {
	case rt.typeKey != nil:
		out = slices.Concat(src[:rt.typeKey.valStart], quoted, src[rt.typeKey.valEnd:])
	case rt.header != nil:
		line := []byte("  runtime_type = " + string(quoted) + nl)
		prefix := src[:rt.header.end]
		if !bytes.HasSuffix(prefix, []byte("\n")) {
			prefix = slices.Concat(prefix, []byte(nl))
		}
		out = slices.Concat(prefix, line, src[rt.header.end:])
	default:
		return nil, res, fmt.Errorf("%s is defined with dotted keys or an inline table and %s; edit it by hand (config not changed)", name, what)
	}
	res.changed = true
	res.summary = fmt.Sprintf("set runtime_type of %s to %q (-force; it %s)", name, runtimeType, what)
	return out, res, nil
}

func hasVersionLine(doc *document) bool {
	for _, k := range doc.keys {
		if k.root && len(k.path) == 1 && k.path[0] == "version" {
			return true
		}
	}
	return false
}

// checkEdited re-scans an edited config: it must still parse and define the runtime exactly once.
func checkEdited(out []byte, version int, handler string, template bool) error {
	if template {
		out = maskTemplate(out)
	}
	doc, err := scan(out)
	if err != nil {
		return fmt.Errorf("internal error: the edited config does not scan: %w", err)
	}
	n := 0
	for _, h := range doc.headers {
		if pathEqual(h.path, runtimePath(version, handler)) {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("internal error: the edited config defines the runtime table %d times", n)
	}
	return nil
}
