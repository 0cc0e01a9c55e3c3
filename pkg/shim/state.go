package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/atomicfile"
)

// stateFile is the file in the bundle where the shim records what the `delete` action needs to
// clean up after a shim that died: the runner's pid and start time, the cgroup, the exit status.
const stateFile = "wazero-shim.json"

// persisted is the content of stateFile.
type persisted struct {
	Pid int `json:"pid,omitempty"`
	// StartTime is the runner's start time in clock ticks since boot (/proc/PID/stat field 22),
	// so a reused pid is never mistaken for the runner.
	StartTime   uint64    `json:"startTime,omitempty"`
	CgroupsPath string    `json:"cgroupsPath,omitempty"`
	Exited      bool      `json:"exited,omitempty"`
	ExitStatus  uint32    `json:"exitStatus,omitempty"`
	ExitedAt    time.Time `json:"exitedAt,omitzero"`
	// Native is a container run by runc (native.go), RuncRoot its runc --root: the `delete`
	// action runs `runc --root RuncRoot delete --force ID`.
	Native   bool   `json:"native,omitempty"`
	RuncRoot string `json:"runcRoot,omitempty"`
}

func writeState(bundle string, st persisted) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	f, err := atomicfile.New(filepath.Join(bundle, stateFile), 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Cancel()
		return err
	}
	return f.Close()
}

func readState(bundle string) (persisted, error) {
	var st persisted
	data, err := os.ReadFile(filepath.Join(bundle, stateFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

// isLive reports whether the recorded runner still runs (same pid, same start time).
func (st persisted) isLive() bool {
	t, err := processStartTime(st.Pid)
	return err == nil && t == st.StartTime
}

// processStartTime reads field 22 (starttime) of /proc/PID/stat.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: start after its last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	// fields[0] is field 3 (state), so field 22 is fields[19].
	return strconv.ParseUint(fields[19], 10, 64)
}
