package oci

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRootPreopen(t *testing.T) {
	for v, want := range map[string]bool{"": true, "true": true, " TRUE ": true, "false": false, "False": false} {
		s := &specs.Spec{Annotations: map[string]string{RootPreopenAnnotation: v}}
		if got, err := RootPreopen(s); err != nil || got != want {
			t.Errorf("%s=%q: %v, %v; want %v", RootPreopenAnnotation, v, got, err, want)
		}
	}
	if got, err := RootPreopen(&specs.Spec{}); err != nil || !got {
		t.Errorf("no annotations: %v, %v; want the root preopened", got, err)
	}
	_, err := RootPreopen(&specs.Spec{Annotations: map[string]string{RootPreopenAnnotation: "no"}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), RootPreopenAnnotation) {
		t.Errorf("value \"no\": %v; want InvalidArgument naming the annotation", err)
	}
}
