package shim

import (
	"flag"
	"strings"
	"testing"
)

// TestUsageDescribesEveryFlag: -h describes every flag, -v (blank in containerd's pkg/shim)
// included.
func TestUsageDescribesEveryFlag(t *testing.T) {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	var v bool
	fs.BoolVar(&v, "v", false, "")
	fs.BoolVar(&v, "version", false, "show the shim version and exit")
	fs.String("namespace", "", "namespace that owns the shim")
	var b strings.Builder
	writeUsage(&b, fs)
	out := b.String()
	for _, want := range []string{"-v\n    \tshow the shim version and exit (short for -version)", "-version\n", "-namespace string\n    \tnamespace that owns the shim"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage %q does not contain %q", out, want)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" && l != "" {
			t.Errorf("a flag without a description in %q", out)
		}
	}
}
