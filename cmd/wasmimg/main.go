// Command wasmimg packages a WebAssembly module (and, in the rootfs layout, other files) into an
// OCI image-layout tarball for `ctr images import`, in one of three layouts (docs/images.md):
// rootfs (default; a tar layer holding the files, like `docker buildx --platform wasi/wasm`),
// wasm-layers (an OCI image config with architecture wasm and the module as an application/wasm
// layer, runwasi style) or artifact (the CNCF Wasm OCI artifact, config
// application/vnd.wasm.config.v0+json).
//
//	wasmimg -o OUT.tar -name REF [-layout rootfs|wasm-layers|artifact] [-entrypoint /app.wasm] [-cmd arg]... [-env K=V]... [-arch wasm -os wasip1] FILE[=/DEST]...
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var opts Options
	var cmd, env, chardevs multi
	out := flag.String("o", "", "output tarball path (required)")
	flag.StringVar(&opts.Name, "name", "", "image reference (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint (default: first file's destination)")
	flag.Var(&cmd, "cmd", "Cmd argument (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE environment entry (repeatable)")
	flag.Var(&chardevs, "chardev", "/DEST=MAJOR:MINOR character device node in the rootfs layer (repeatable; for tests)")
	flag.StringVar(&opts.Arch, "arch", "wasm", "image architecture")
	flag.StringVar(&opts.OS, "os", "wasip1", "image OS")
	flag.StringVar(&opts.Layout, "layout", LayoutRootfs, "image layout: rootfs (files in a tar layer), wasm-layers (module as an application/wasm layer) or artifact (CNCF Wasm OCI artifact); the last two take one file")
	flag.StringVar(&opts.LayerMediaType, "layer-media-type", "", "media type of the module layer in the wasm-layers layout (default application/wasm)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: wasmimg -o OUT.tar -name REF [-layout rootfs|wasm-layers|artifact] [flags] FILE[=/DEST]...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || opts.Name == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *entrypoint != "" {
		opts.Entrypoint = []string{*entrypoint}
	}
	opts.Cmd, opts.Env = cmd, env
	for _, a := range chardevs {
		d, err := ParseCharDevice(a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "wasmimg:", err)
			os.Exit(2)
		}
		opts.CharDevices = append(opts.CharDevices, d)
	}
	for _, a := range flag.Args() {
		opts.Files = append(opts.Files, ParseFile(a))
	}
	if err := run(*out, opts); err != nil {
		fmt.Fprintln(os.Stderr, "wasmimg:", err)
		os.Exit(1)
	}
}

// run builds the image into a temporary file and renames it over out.
func run(out string, opts Options) error {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".wasmimg-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Build(tmp, opts); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
