package seccomp

import "runtime"

func currentArch() string { return runtime.GOARCH }
