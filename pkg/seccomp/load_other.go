//go:build !linux

package seccomp

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Load installs a seccomp filter; it is only implemented on Linux.
func Load(p *specs.LinuxSeccomp) error {
	return errors.New("seccomp: only supported on Linux")
}
