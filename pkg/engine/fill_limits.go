package engine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The bounds of a filler (FillCache): its cgroup's memory and CPU limits, which the shim applies
// (pkg/shim/fillcgroup.go), and the biggest module it compiles in the background. See
// docs/coldstart.md.
const (
	// FillMemoryBytesEnv names the environment variable of the shim (and so of containerd) that
	// sets the memory limit of each filler's cgroup, in bytes; 0 means none. Unset, the limit
	// follows the module's size (FillLimits.ForModule).
	FillMemoryBytesEnv = "CONTAINERD_SHIM_WAZERO_FILL_MEMORY_BYTES"
	// Without FillMemoryBytesEnv a filler's memory limit is FillMemoryBaseBytes plus
	// FillMemoryPerModuleByte times the module's size, at most FillMemoryMaxBytes (reached from
	// 56 MiB up; the module size cap is 64 MiB by default). What compiles take under it:
	// RATIONALE.md, "Why fillers get a cgroup of their own".
	FillMemoryBaseBytes     int64 = 256 << 20
	FillMemoryPerModuleByte int64 = 32
	FillMemoryMaxBytes      int64 = 2 << 30

	// FillCPUsEnv names the environment variable of the shim that sets the CPU limit of each
	// filler's cgroup, in CPUs (a decimal number such as 1, 0.5 or 2: a CFS quota of that many
	// 100 ms periods); 0 means none.
	FillCPUsEnv = "CONTAINERD_SHIM_WAZERO_FILL_CPUS"
	// DefaultFillCPUs is each filler's CPU limit when FillCPUsEnv is not set: one CPU. At most one
	// filler per CPU compiles at a time on the node (fillSlot), so they never take more than the
	// node has, and each takes no more than one of its CPUs.
	DefaultFillCPUs = 1.0

	// FillMaxModuleBytesEnv names the environment variable of the shim that sets the biggest
	// module compiled in the background, in bytes; 0 means no cap. A bigger module is not
	// compiled: the container runs in the interpreter, as do its later first runs.
	FillMaxModuleBytesEnv = "CONTAINERD_SHIM_WAZERO_FILL_MAX_MODULE_BYTES"
	// DefaultFillMaxModuleBytes is the cap when FillMaxModuleBytesEnv is not set: 64 MiB.
	DefaultFillMaxModuleBytes int64 = 64 << 20
)

// fillOOMScoreAdj is the filler's oom_score_adj: the first process the kernel kills when the node
// runs out of memory. A background compile only saves a later run its compile; losing it costs
// nothing else, and it must not inherit containerd's score (as low as -999).
const fillOOMScoreAdj = 1000

// FillLimits bounds a filler. A zero field means no bound.
type FillLimits struct {
	// MemoryBytes is the memory limit of the filler's cgroup (and, less a margin, its Go
	// runtime's soft memory limit).
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// MemoryAuto means MemoryBytes is to follow the module's size: ForModule sets it.
	MemoryAuto bool `json:"memoryAuto,omitempty"`
	// CPUs is the CPU limit of the filler's cgroup, in CPUs.
	CPUs float64 `json:"cpus,omitempty"`
	// MaxModuleBytes is the biggest module the filler compiles.
	MaxModuleBytes int64 `json:"maxModuleBytes,omitempty"`
}

// FillLimitsFromEnv returns the fillers' bounds from the shim's environment (FillMemoryBytesEnv,
// FillCPUsEnv, FillMaxModuleBytesEnv), each its default when unset or blank. A bad value gives
// the default and an error saying so (the shim logs it).
func FillLimitsFromEnv() (FillLimits, error) {
	var l FillLimits
	var errs []error
	var err error
	if v, ok := os.LookupEnv(FillMemoryBytesEnv); !ok || strings.TrimSpace(v) == "" {
		l.MemoryAuto = true
	} else if l.MemoryBytes, err = bytesEnv(FillMemoryBytesEnv, 0); err != nil {
		l.MemoryAuto = true
		errs = append(errs, errors.New(strings.Replace(err.Error(), "using 0", "using the default", 1)))
	}
	if l.MaxModuleBytes, err = bytesEnv(FillMaxModuleBytesEnv, DefaultFillMaxModuleBytes); err != nil {
		errs = append(errs, err)
	}
	l.CPUs = DefaultFillCPUs
	if v, ok := os.LookupEnv(FillCPUsEnv); ok && strings.TrimSpace(v) != "" {
		n, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch {
		case perr != nil || n < 0 || n != n || n > 1<<20:
			errs = append(errs, fmt.Errorf("%s=%q is not a number of CPUs (0 for no limit): using %g", FillCPUsEnv, v, DefaultFillCPUs))
		case n > 0 && n < 0.01:
			errs = append(errs, fmt.Errorf("%s=%q is below 0.01 CPUs: using 0.01", FillCPUsEnv, v))
			l.CPUs = 0.01
		default:
			l.CPUs = n
		}
	}
	return l, errors.Join(errs...)
}

// ForModule returns l for a module of size bytes: with MemoryAuto, MemoryBytes is
// FillMemoryBaseBytes plus FillMemoryPerModuleByte per byte of the module, at most
// FillMemoryMaxBytes.
func (l FillLimits) ForModule(size int64) FillLimits {
	if l.MemoryAuto {
		l.MemoryAuto = false
		l.MemoryBytes = FillMemoryMaxBytes
		if size >= 0 && size < (FillMemoryMaxBytes-FillMemoryBaseBytes)/FillMemoryPerModuleByte {
			l.MemoryBytes = FillMemoryBaseBytes + FillMemoryPerModuleByte*size
		}
	}
	return l
}

// CPUQuota is the CFS quota, in microseconds per period (CPUPeriod), of l.CPUs; 0 means no limit.
func (l FillLimits) CPUQuota() int64 {
	if l.CPUs <= 0 {
		return 0
	}
	return max(1000, int64(l.CPUs*float64(CPUPeriod)))
}

// CPUPeriod is the CFS period of a filler's CPU limit: 100 ms, the kernel's default.
const CPUPeriod = 100000
