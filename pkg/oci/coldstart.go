package oci

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// ColdStartEnv is the variable of process.env that chooses what a container does when its module
// is not in the node's compilation cache yet (its first run on the node): see ColdStart.
const ColdStartEnv = "WAZERO_COLD_START"

// ColdStart is a cold-start policy.
type ColdStart string

const (
	// ColdStartAuto interprets commands and compiles services: ColdStartInterpret for a
	// container without WAZERO_LISTEN or WAZERO_WAGI, ColdStartCompile for one with either.
	ColdStartAuto ColdStart = "auto"
	// ColdStartCompile compiles the module before the container starts: the first run waits
	// for the compiler, then runs at full speed.
	ColdStartCompile ColdStart = "compile"
	// ColdStartInterpret runs the first run in wazero's interpreter, which starts at once but
	// runs guest code several times slower, while the shim compiles the module into the cache in
	// the background for the runs that follow.
	ColdStartInterpret ColdStart = "interpret"
)

// ParseColdStart reads ColdStartEnv from env; def when it is unset or blank. Any other value than
// auto, compile or interpret is an InvalidArgument error naming the variable.
func ParseColdStart(env []string, def ColdStart) (ColdStart, error) {
	v, ok := Env(env, ColdStartEnv)
	if !ok || strings.TrimSpace(v) == "" {
		return def, nil
	}
	return parseColdStart(ColdStartEnv, v)
}

// ParseColdStartDefault parses the node's default policy (the shim's environment variable name,
// value), for containers that do not choose.
func ParseColdStartDefault(name, value string) (ColdStart, error) {
	if strings.TrimSpace(value) == "" {
		return ColdStartAuto, nil
	}
	return parseColdStart(name, value)
}

func parseColdStart(name, v string) (ColdStart, error) {
	switch c := ColdStart(strings.ToLower(strings.TrimSpace(v))); c {
	case ColdStartAuto, ColdStartCompile, ColdStartInterpret:
		return c, nil
	}
	return "", fmt.Errorf("%s=%q: want auto (interpret commands, compile services), compile or interpret: %w", name, v, errdefs.ErrInvalidArgument)
}

// Resolve turns auto into compile or interpret for a container that is a service (declares
// listeners or the per-request mode) or not.
func (c ColdStart) Resolve(service bool) ColdStart {
	if c != ColdStartAuto {
		return c
	}
	if service {
		return ColdStartCompile
	}
	return ColdStartInterpret
}
