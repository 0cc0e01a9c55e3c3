package shim

// The spec's device rules (linux.resources.devices) on cgroup v2.
//
// v1 has the devices controller: cgroup1.New writes each rule to devices.deny/devices.allow and the
// kernel keeps the list. v2 has no such files: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to
// the cgroup directory decides each mknod and each open of a device node. containerd/cgroups builds
// that program from a rule list (cgroup2.DeviceFilter); the shim converts the spec's list into the
// form it needs (deviceFilterRules), loads the program and attaches it (attachDeviceFilter, with
// BPF_F_ALLOW_MULTI, so the programs of the ancestors still apply as well).
//
// The program goes with the cgroup: rmdir of the directory (Delete) releases every program attached
// to it; nothing else holds it (the shim closes its own program file descriptor after attaching).

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// deviceFilterRules converts the spec's device rules into the list cgroup2.DeviceFilter compiles.
//
// The program that DeviceFilter builds decides a request (a device and the access asked for: r, w,
// rw or m) by the LAST rule that matches the device and shares an access bit with the request; no
// match denies. So the v2 filter starts from deny-all, as runc does on both v1 and v2 (a v1 cgroup
// starts from its parent's list, normally allow-all; the specs of containerd and the CRI plugin
// begin with "deny all", so both agree on them). The conversion:
//
//   - A rule without a type, or of type a, is the v1 "all devices" rule whatever its numbers and
//     access (the kernel reads only the 'a'): it becomes a *:* rwm, and the rules before it are
//     dropped, as its write resets the v1 list. DeviceFilter itself needs a type (it refuses "")
//     and numbers (it dereferences Major and Minor), which the CRI's deny-all rule leaves out.
//   - A missing major or minor is the wildcard -1; numbers below -1 or above 2^32-1 are refused.
//   - Access is checked (only r, w, m) and put in rwm order; a rule with no access matches
//     nothing, on v1 as here, and is dropped.
//   - An allow rule that grants r without w (or w without r) is followed by a rule denying the
//     other one for the same devices: the program matches an allow rule on any shared bit, so
//     "allow c 1:3 r" alone would also let an O_RDWR open (a request for rw) through, where v1
//     requires one rule to grant all of it. The price: such a rule also withdraws the other bit
//     from those devices when an earlier rule granted it (stricter than v1, never looser).
//
// An empty or nil list gives nil: devices are not controlled (the caller attaches nothing).
func deviceFilterRules(rules []specs.LinuxDeviceCgroup) ([]specs.LinuxDeviceCgroup, error) {
	var out []specs.LinuxDeviceCgroup
	rule := func(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: &major, Minor: &minor, Access: access}
	}
	for i, d := range rules {
		what := func(format string, args ...any) error {
			return fmt.Errorf("linux.resources.devices[%d] (%s): %s", i, describeDeviceRule(d), fmt.Sprintf(format, args...))
		}
		switch d.Type {
		case "", "a":
			out = append(out[:0], rule(d.Allow, "a", -1, -1, "rwm"))
			continue
		case "b", "c":
		default:
			return nil, what("type %q is not a, b or c", d.Type)
		}
		var major, minor int64 = -1, -1
		for _, n := range []struct {
			p    *int64
			to   *int64
			name string
		}{{d.Major, &major, "major"}, {d.Minor, &minor, "minor"}} {
			if n.p == nil {
				continue
			}
			if *n.p < -1 || *n.p > math.MaxUint32 {
				return nil, what("%s %d out of range", n.name, *n.p)
			}
			*n.to = *n.p
		}
		for _, c := range d.Access {
			if !strings.ContainsRune("rwm", c) {
				return nil, what("access %q: only r, w and m are allowed", d.Access)
			}
		}
		var access string
		for _, c := range "rwm" {
			if strings.ContainsRune(d.Access, c) {
				access += string(c)
			}
		}
		if access == "" {
			continue
		}
		out = append(out, rule(d.Allow, d.Type, major, minor, access))
		if r, w := strings.Contains(access, "r"), strings.Contains(access, "w"); d.Allow && r != w {
			other := "w"
			if w {
				other = "r"
			}
			out = append(out, rule(false, d.Type, major, minor, other))
		}
	}
	if len(rules) == 0 {
		return nil, nil
	}
	if out == nil {
		out = []specs.LinuxDeviceCgroup{} // rules that all match nothing: deny everything
	}
	return out, nil
}

func describeDeviceRule(d specs.LinuxDeviceCgroup) string {
	num := func(p *int64) string {
		if p == nil || *p == -1 {
			return "*"
		}
		return fmt.Sprint(*p)
	}
	verb := "deny"
	if d.Allow {
		verb = "allow"
	}
	return fmt.Sprintf("%s %s %s:%s %s", verb, d.Type, num(d.Major), num(d.Minor), d.Access)
}

// deviceFilter is the program for the spec's device rules, or nil when the spec has none.
type deviceFilter struct {
	insts   asm.Instructions
	license string
	rules   []specs.LinuxDeviceCgroup // what the program was built from, after deviceFilterRules
}

func newDeviceFilter(rules []specs.LinuxDeviceCgroup) (*deviceFilter, error) {
	conv, err := deviceFilterRules(rules)
	if err != nil || conv == nil {
		return nil, err
	}
	insts, license, err := cgroup2.DeviceFilter(conv)
	if err != nil {
		return nil, fmt.Errorf("device rules: %w", err)
	}
	return &deviceFilter{insts: insts, license: license, rules: conv}, nil
}

// attachDeviceFilter loads the program and attaches it to the cgroup directory dir. Tests on a
// fake cgroupfs replace it: a plain directory takes no BPF program.
var attachDeviceFilter = loadAttachDeviceFilter

func loadAttachDeviceFilter(dir string, f *deviceFilter) error {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "wazero_devices",
		Type:         ebpf.CGroupDevice,
		Instructions: f.insts,
		License:      f.license,
	})
	if err != nil {
		return fmt.Errorf("load the BPF_PROG_TYPE_CGROUP_DEVICE program: %w", err)
	}
	defer prog.Close() // the attachment holds its own reference to the program
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  fd,
		Program: prog,
		Attach:  ebpf.AttachCGroupDevice,
		Flags:   unix.BPF_F_ALLOW_MULTI,
	}); err != nil {
		return fmt.Errorf("BPF_PROG_ATTACH (BPF_CGROUP_DEVICE) to %s: %w", dir, err)
	}
	return nil
}

// deviceFilterError is Create's error when the kernel refuses the program: the container does not
// run without its device rules.
func deviceFilterError(path string, n int, err error) error {
	hint := "the kernel needs CONFIG_CGROUP_BPF (Linux 4.15 or later)"
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		hint = "the shim needs CAP_SYS_ADMIN (or CAP_BPF) in the initial user namespace, as containerd's shims normally have when run as root; before Linux 5.11 also enough RLIMIT_MEMLOCK"
	}
	return fmt.Errorf("create cgroup %s: cannot enforce the spec's %d linux.resources.devices rules on cgroup v2, where they need an eBPF device filter attached to the cgroup: %w; %s. The container is not started without them", path, n, err, hint)
}
