package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Prepared is a module compiled and checked, ready to instantiate in its runtime.
type Prepared struct {
	Runtime  wazero.Runtime
	Compiled wazero.CompiledModule
	// CacheHit is true when the compilation cache already held this module.
	CacheHit bool
}

// Prepare compiles the module of cfg in a new runtime with WASI preview 1 and checks that it can
// run as a command: it must validate, export a _start function, and import only functions that
// WASI preview 1 provides. Each error names the module and says what is wrong.
func Prepare(ctx context.Context, cfg *Config) (*Prepared, error) {
	name := cfg.Module.GuestPath
	code, err := os.ReadFile(cfg.Module.HostPath)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", name, err)
	}
	rc := wazero.NewRuntimeConfig().WithMemoryLimitPages(cfg.MemoryPages)
	var before int
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", cfg.CacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
		before = countEntries(cfg.CacheDir)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	compiled, err := r.CompileModule(ctx, code)
	if err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("module %s is invalid: %w", name, err)
	}
	if err := checkCommand(name, compiled, r.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions()); err != nil {
		r.Close(ctx)
		return nil, err
	}
	p := &Prepared{Runtime: r, Compiled: compiled}
	if cfg.CacheDir != "" {
		p.CacheHit = countEntries(cfg.CacheDir) == before
	}
	return p, nil
}

// checkCommand reports, in one message, why a compiled module cannot run as a WASI command.
func checkCommand(name string, m wazero.CompiledModule, wasi map[string]api.FunctionDefinition) error {
	var problems []string
	if def, ok := m.ExportedFunctions()["_start"]; !ok {
		problems = append(problems, "it exports no _start function (is it a library or a reactor rather than a command?)")
	} else if len(def.ParamTypes()) != 0 || len(def.ResultTypes()) != 0 {
		problems = append(problems, "its _start function has parameters or results")
	}
	var unknown []string
	for _, f := range m.ImportedFunctions() {
		mod, fn, _ := f.Import()
		if mod != wasi_snapshot_preview1.ModuleName {
			unknown = append(unknown, mod+"."+fn)
			continue
		}
		if _, ok := wasi[fn]; !ok {
			unknown = append(unknown, mod+"."+fn)
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, n, _ := mem.Import()
		unknown = append(unknown, mod+"."+n+" (memory)")
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		problems = append(problems, fmt.Sprintf("it imports %s, which this runtime does not provide (only %s is available)",
			strings.Join(unknown, ", "), wasi_snapshot_preview1.ModuleName))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("module %s cannot run as a WASI command: %s", name, strings.Join(problems, "; "))
}

// countEntries counts the cache entries under dir. wazero keeps them in a per-version
// subdirectory (wazero-VERSION-ARCH-OS) that it creates when the cache is opened, so the count
// must look below dir, not at it.
func countEntries(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(d.Name(), ".tmp") {
			n++
		}
		return nil
	})
	return n
}
