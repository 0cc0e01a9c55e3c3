// Command wasmimg packages a WebAssembly module (and, in the tar-layer layouts, other files) as
// an image, pushes it to a registry (-push) and/or writes it as an OCI image-layout tarball for
// `ctr images import` (-o), in one of four layouts (docs/images.md):
// portable (the default when pushing: an index of the wasip1/wasm manifest and linux/amd64 and
// linux/arm64 manifests over the same tar layer, which every supported containerd pulls
// through CRI), rootfs (the default for -o alone; one wasip1/wasm manifest with a tar layer,
// -index wraps it in an index as `docker buildx --platform wasi/wasm` does), wasm-layers (an OCI
// image config with architecture wasm and the module as an application/wasm layer, runwasi
// style) or artifact (the CNCF Wasm OCI artifact, config application/vnd.wasm.config.v0+json).
//
//	wasmimg -push REGISTRY/REPO:TAG [-plain-http] [-layout portable|rootfs|wasm-layers|artifact] [-platform linux/amd64]... [flags] FILE[=/DEST]...
//	wasmimg -o OUT.tar -name REF [-layout rootfs|portable|wasm-layers|artifact] [flags] FILE[=/DEST]...
//
// Registry credentials come from the docker config ($DOCKER_CONFIG/config.json or
// ~/.docker/config.json, as `docker login` writes it).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var opts Options
	var cmd, env, chardevs, platforms multi
	out := flag.String("o", "", "write an OCI image-layout tarball for `ctr images import` to this path")
	push := flag.String("push", "", "push the image to this registry reference (REGISTRY/REPO[:TAG]); credentials from the docker config")
	plainHTTP := flag.Bool("plain-http", false, "talk plain HTTP to the registry of -push (a local registry; localhost and loopback addresses use HTTP anyway)")
	flag.StringVar(&opts.Name, "name", "", "image reference recorded in the tarball (required with -o unless -push names it)")
	entrypoint := flag.String("entrypoint", "", "entrypoint (default: first file's destination)")
	flag.Var(&cmd, "cmd", "Cmd argument (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE environment entry (repeatable)")
	flag.Var(&chardevs, "chardev", "/DEST=MAJOR:MINOR character device node in the rootfs layer (repeatable; for tests)")
	flag.StringVar(&opts.Arch, "arch", "wasm", "image architecture")
	flag.StringVar(&opts.OS, "os", "wasip1", "image OS")
	flag.StringVar(&opts.Layout, "layout", "", "image layout: portable (default with -push: index of wasip1/wasm and node-platform manifests over one tar layer), rootfs (default with -o alone: one wasip1/wasm manifest, files in a tar layer), wasm-layers (module as an application/wasm layer) or artifact (CNCF Wasm OCI artifact); the last two take one file")
	flag.Var(&platforms, "platform", "node platform OS/ARCH[/VARIANT] of the portable layout (repeatable; default linux/amd64 and linux/arm64)")
	flag.BoolVar(&opts.Index, "index", false, "wrap the rootfs, wasm-layers or artifact manifest in an index listing it under the wasm platform, as docker buildx publishes (not pullable by a kubelet: docs/kubernetes.md)")
	flag.StringVar(&opts.LayerMediaType, "layer-media-type", "", "media type of the module layer in the wasm-layers layout (default application/wasm)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: wasmimg -push REGISTRY/REPO:TAG [-plain-http] [flags] FILE[=/DEST]...\n       wasmimg -o OUT.tar -name REF [flags] FILE[=/DEST]...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if opts.Name == "" {
		opts.Name = *push
	}
	if (*out == "" && *push == "") || opts.Name == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if opts.Layout == "" {
		opts.Layout = LayoutRootfs
		if *push != "" {
			opts.Layout = LayoutPortable
		}
	}
	opts.Platforms = platforms
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
	if *out != "" {
		if err := run(*out, opts); err != nil {
			fmt.Fprintln(os.Stderr, "wasmimg:", err)
			os.Exit(1)
		}
	}
	if *push != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		img, err := Assemble(opts)
		if err == nil {
			var pushed string
			if pushed, err = Push(ctx, img, *push, PushOptions{PlainHTTP: *plainHTTP}); err == nil {
				fmt.Println(pushed)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "wasmimg:", err)
			os.Exit(1)
		}
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
