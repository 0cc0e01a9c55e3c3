package wasi

import (
	"context"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// ModuleName is the name guests import WASI preview 1 from.
const ModuleName = wasi_snapshot_preview1.ModuleName

// host holds wazero's original functions, which this package's call: by name (orig), and
// those the overrides call in fields (o), saving a map lookup per call.
type host struct {
	orig map[string]api.GoModuleFunction
	o    originals
}

// originals are wazero's functions that the overrides call.
type originals struct {
	fdClose              api.GoModuleFunction
	fdFdstatGet          api.GoModuleFunction
	fdFdstatSetFlags     api.GoModuleFunction
	fdFdstatSetRights    api.GoModuleFunction
	fdPrestatDirName     api.GoModuleFunction
	fdPrestatGet         api.GoModuleFunction
	fdPwrite             api.GoModuleFunction
	fdRenumber           api.GoModuleFunction
	fdSeek               api.GoModuleFunction
	fdTell               api.GoModuleFunction
	fdWrite              api.GoModuleFunction
	pathFilestatSetTimes api.GoModuleFunction
	pathLink             api.GoModuleFunction
	pathOpen             api.GoModuleFunction
	pathReadlink         api.GoModuleFunction
	pollOneoff           api.GoModuleFunction
	sockAccept           api.GoModuleFunction
	sockShutdown         api.GoModuleFunction
}

// wazeroFunc is one of wazero's WASI functions: its Go implementation and its signature.
type wazeroFunc struct {
	fn                      api.GoModuleFunction
	params, results         []api.ValueType
	paramNames, resultNames []string
}

var (
	wazeroFuncsOnce sync.Once
	wazeroFuncs     map[string]wazeroFunc
	wazeroFuncsErr  error
)

// wazeroFunctions returns wazero's WASI functions by name, taken once per process from a host
// module compiled in wazero's interpreter and never instantiated. The functions are package-level
// Go values of wazero's, the same in every runtime; the interpreter only records them, where the
// compiler would generate machine code for each (about half of Instantiate's CPU when it was
// compiled in r each time: docs/PERFORMANCE.md, "Session 6: start-up levers"). The caller's
// context (with its function listeners) is not used: it applies to the instantiated module only.
func wazeroFunctions() (map[string]wazeroFunc, error) {
	wazeroFuncsOnce.Do(func() {
		ctx := context.Background()
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer r.Close(ctx)
		ob := r.NewHostModuleBuilder(ModuleName)
		wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(ob)
		oc, err := ob.Compile(ctx)
		if err != nil {
			wazeroFuncsErr = fmt.Errorf("compile wazero's WASI functions: %w", err)
			return
		}
		funcs := map[string]wazeroFunc{}
		for name, def := range oc.ExportedFunctions() {
			fn, ok := def.GoFunction().(api.GoModuleFunction)
			if !ok {
				wazeroFuncsErr = fmt.Errorf("wazero's WASI function %s is not a Go module function", name)
				return
			}
			funcs[name] = wazeroFunc{fn: fn, params: def.ParamTypes(), results: def.ResultTypes(),
				paramNames: def.ParamNames(), resultNames: def.ResultNames()}
		}
		wazeroFuncs = funcs
	})
	return wazeroFuncs, wazeroFuncsErr
}

// Instantiate instantiates the WASI preview 1 host module in r: wazero's functions, those that
// take descriptors behind this package's table (see the package documentation). ctx is passed
// to wazero's instantiation (a function listener factory in it applies to these functions).
func Instantiate(ctx context.Context, r wazero.Runtime) (api.Closer, error) {
	defs, err := wazeroFunctions()
	if err != nil {
		return nil, err
	}
	h := &host{orig: map[string]api.GoModuleFunction{}}
	for name, def := range defs {
		h.orig[name] = def.fn
	}
	h.o.fdClose = h.orig["fd_close"]
	h.o.fdFdstatGet = h.orig["fd_fdstat_get"]
	h.o.fdFdstatSetFlags = h.orig["fd_fdstat_set_flags"]
	h.o.fdFdstatSetRights = h.orig["fd_fdstat_set_rights"]
	h.o.fdPrestatDirName = h.orig["fd_prestat_dir_name"]
	h.o.fdPrestatGet = h.orig["fd_prestat_get"]
	h.o.fdPwrite = h.orig["fd_pwrite"]
	h.o.fdRenumber = h.orig["fd_renumber"]
	h.o.fdSeek = h.orig["fd_seek"]
	h.o.fdTell = h.orig["fd_tell"]
	h.o.fdWrite = h.orig["fd_write"]
	h.o.pathFilestatSetTimes = h.orig["path_filestat_set_times"]
	h.o.pathLink = h.orig["path_link"]
	h.o.pathOpen = h.orig["path_open"]
	h.o.pathReadlink = h.orig["path_readlink"]
	h.o.pollOneoff = h.orig["poll_oneoff"]
	h.o.sockAccept = h.orig["sock_accept"]
	h.o.sockShutdown = h.orig["sock_shutdown"]
	b := r.NewHostModuleBuilder(ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	for name, fn := range h.overrides() {
		def, ok := defs[name]
		if !ok {
			return nil, fmt.Errorf("wazero's WASI has no function %s to override", name)
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(fn, def.params, def.results).
			WithParameterNames(def.paramNames...).
			WithResultNames(def.resultNames...).
			Export(name)
	}
	return b.Instantiate(ctx)
}

// overrides are this package's functions, by name.
func (h *host) overrides() map[string]api.GoModuleFunction {
	m := map[string]api.GoModuleFunction{
		"environ_get":             api.GoModuleFunc(h.environGet),
		"environ_sizes_get":       api.GoModuleFunc(h.environSizesGet),
		"fd_close":                api.GoModuleFunc(h.fdClose),
		"fd_renumber":             api.GoModuleFunc(h.fdRenumber),
		"fd_fdstat_get":           api.GoModuleFunc(h.fdFdstatGet),
		"fd_fdstat_set_flags":     api.GoModuleFunc(h.fdFdstatSetFlags),
		"fd_fdstat_set_rights":    api.GoModuleFunc(h.fdFdstatSetRights),
		"fd_prestat_get":          api.GoModuleFunc(h.fdPrestatGet),
		"fd_prestat_dir_name":     api.GoModuleFunc(h.fdPrestatDirName),
		"fd_pwrite":               api.GoModuleFunc(h.fdPwrite),
		"path_open":               api.GoModuleFunc(h.pathOpen),
		"path_readlink":           api.GoModuleFunc(h.pathReadlink),
		"path_filestat_set_times": api.GoModuleFunc(h.pathFilestatSetTimes),
		"path_link":               api.GoModuleFunc(h.pathLink),
		"poll_oneoff":             api.GoModuleFunc(h.pollOneoff),
		"sock_accept":             api.GoModuleFunc(h.sockAccept),
		"sock_shutdown":           api.GoModuleFunc(h.sockShutdown),
	}
	// The others only translate their descriptors (the params at these indexes), after checking
	// the right they need, if any.
	for name, t := range map[string]struct {
		fds   []int
		right uint64
	}{
		"fd_advise":             {[]int{0}, 0},
		"fd_allocate":           {[]int{0}, rightFdAllocate},
		"fd_datasync":           {[]int{0}, 0},
		"fd_filestat_get":       {[]int{0}, 0},
		"fd_filestat_set_size":  {[]int{0}, rightFdFilestatSetSize},
		"fd_filestat_set_times": {[]int{0}, 0},
		"fd_pread":              {[]int{0}, rightFdRead},
		"fd_read":               {[]int{0}, rightFdRead},
		"fd_readdir":            {[]int{0}, 0},
		"fd_seek":               {[]int{0}, 0},
		"fd_sync":               {[]int{0}, 0},
		"fd_tell":               {[]int{0}, 0},
		"fd_write":              {[]int{0}, rightFdWrite},
		"path_create_directory": {[]int{0}, 0},
		"path_filestat_get":     {[]int{0}, 0},
		"path_remove_directory": {[]int{0}, 0},
		"path_rename":           {[]int{0, 3}, 0},
		"path_symlink":          {[]int{2}, 0},
		"path_unlink_file":      {[]int{0}, 0},
		"sock_recv":             {[]int{0}, rightFdRead},
		"sock_send":             {[]int{0}, rightFdWrite},
	} {
		m[name] = h.translated(name, t.fds, t.right)
	}
	return m
}

// translated is wazero's function name with the guest's descriptors at the indexes fds replaced
// by wazero's, after checking that the first has right (unless 0).
func (h *host) translated(name string, fds []int, right uint64) api.GoModuleFunction {
	orig := h.orig[name]
	return api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		t := h.tableOf(ctx, mod)
		if t == nil {
			orig.Call(ctx, mod, stack)
			return
		}
		for i, at := range fds {
			e := t.get(stack[at])
			if e == nil {
				stack[0] = uint64(errBadf)
				return
			}
			if i == 0 && right != 0 && !e.may(right) {
				stack[0] = uint64(errNotcapable)
				return
			}
			stack[at] = uint64(uint32(e.wfd))
		}
		orig.Call(ctx, mod, stack)
	})
}
