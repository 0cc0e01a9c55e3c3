// Command wasmimg packages files into an OCI image-layout tarball suitable for
// `ctr images import`, shaped like `docker buildx --platform wasi/wasm` output.
//
//	wasmimg -o OUT.tar -name REF [-entrypoint /app.wasm] [-cmd arg]... [-env K=V]... [-arch wasm -os wasip1] FILE[=/DEST]...
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
	var cmd, env multi
	out := flag.String("o", "", "output tarball path (required)")
	flag.StringVar(&opts.Name, "name", "", "image reference (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint (default: first file's destination)")
	flag.Var(&cmd, "cmd", "Cmd argument (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE environment entry (repeatable)")
	flag.StringVar(&opts.Arch, "arch", "wasm", "image architecture")
	flag.StringVar(&opts.OS, "os", "wasip1", "image OS")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: wasmimg -o OUT.tar -name REF [flags] FILE[=/DEST]...")
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
