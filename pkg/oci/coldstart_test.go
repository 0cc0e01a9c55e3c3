package oci

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseColdStart(t *testing.T) {
	for _, tc := range []struct {
		env    []string
		def    ColdStart
		want   ColdStart
		errHas string
	}{
		{env: nil, def: ColdStartAuto, want: ColdStartAuto},
		{env: []string{"WAZERO_COLD_START="}, def: ColdStartCompile, want: ColdStartCompile},
		{env: []string{"WAZERO_COLD_START=interpret"}, def: ColdStartCompile, want: ColdStartInterpret},
		{env: []string{"WAZERO_COLD_START= Compile "}, def: ColdStartAuto, want: ColdStartCompile},
		{env: []string{"WAZERO_COLD_START=auto"}, def: ColdStartCompile, want: ColdStartAuto},
		{env: []string{"WAZERO_COLD_START=jit"}, errHas: `WAZERO_COLD_START="jit": want auto`},
	} {
		got, err := ParseColdStart(tc.env, tc.def)
		if tc.errHas != "" {
			if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseColdStart(%q): err = %v, want InvalidArgument with %q", tc.env, err, tc.errHas)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseColdStart(%q, %s) = %q, %v; want %q", tc.env, tc.def, got, err, tc.want)
		}
	}
	if c, err := ParseColdStartDefault("NODE_VAR", ""); err != nil || c != ColdStartAuto {
		t.Errorf("empty node default: %q %v", c, err)
	}
	if _, err := ParseColdStartDefault("NODE_VAR", "never"); err == nil || !strings.Contains(err.Error(), `NODE_VAR="never"`) {
		t.Errorf("bad node default: %v", err)
	}
	for _, tc := range []struct {
		c       ColdStart
		service bool
		want    ColdStart
	}{
		{ColdStartAuto, false, ColdStartInterpret},
		{ColdStartAuto, true, ColdStartCompile},
		{ColdStartInterpret, true, ColdStartInterpret},
		{ColdStartCompile, false, ColdStartCompile},
	} {
		if got := tc.c.Resolve(tc.service); got != tc.want {
			t.Errorf("%s.Resolve(service=%v) = %s, want %s", tc.c, tc.service, got, tc.want)
		}
	}
}
