package shim

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func describeRules(rules []specs.LinuxDeviceCgroup) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = describeDeviceRule(r)
	}
	return strings.Join(s, "; ")
}

// runDeviceFilter runs the filter's program, as the kernel would for a request for access ("r",
// "w", "rw" or "m") to dev ("c 1:3"), with a small interpreter of the instructions
// cgroup2.DeviceFilter emits (a BPF_PROG_TYPE_CGROUP_DEVICE program cannot be test-run).
func runDeviceFilter(t *testing.T, f *deviceFilter, dev, access string) bool {
	t.Helper()
	var typ string
	var major, minor uint32
	if _, err := fmt.Sscanf(dev, "%s %d:%d", &typ, &major, &minor); err != nil {
		t.Fatalf("device %q: %v", dev, err)
	}
	var acc uint32
	for _, c := range access {
		acc |= map[rune]uint32{'r': unix.BPF_DEVCG_ACC_READ, 'w': unix.BPF_DEVCG_ACC_WRITE, 'm': unix.BPF_DEVCG_ACC_MKNOD}[c]
	}
	devType := map[string]uint32{"c": unix.BPF_DEVCG_DEV_CHAR, "b": unix.BPF_DEVCG_DEV_BLOCK}[typ]
	// struct bpf_cgroup_dev_ctx { u32 access_type (type | access << 16); u32 major; u32 minor; }
	ctx := binary.LittleEndian.AppendUint32(nil, devType|acc<<16)
	ctx = binary.LittleEndian.AppendUint32(ctx, major)
	ctx = binary.LittleEndian.AppendUint32(ctx, minor)

	insts := f.insts
	syms := map[string]int{}
	for i, ins := range insts {
		if s := ins.Symbol(); s != "" {
			syms[s] = i
		}
	}
	var reg [11]uint64
	for pc, steps := 0, 0; pc < len(insts); steps++ {
		if steps > 10000 {
			t.Fatal("program does not end")
		}
		ins := insts[pc]
		pc++
		op := ins.OpCode
		switch op.Class() {
		case asm.LdXClass:
			if ins.Src != asm.R1 {
				t.Fatalf("load from %v: %v", ins.Src, ins)
			}
			off := int(ins.Offset)
			switch op.Size() {
			case asm.Half:
				reg[ins.Dst] = uint64(binary.LittleEndian.Uint16(ctx[off:]))
			case asm.Word:
				reg[ins.Dst] = uint64(binary.LittleEndian.Uint32(ctx[off:]))
			default:
				t.Fatalf("unexpected load size: %v", ins)
			}
		case asm.ALUClass:
			src := uint32(ins.Constant)
			if op.Source() == asm.RegSource {
				src = uint32(reg[ins.Src])
			}
			dst := uint32(reg[ins.Dst])
			switch op.ALUOp() {
			case asm.Mov:
				dst = src
			case asm.And:
				dst &= src
			case asm.RSh:
				dst >>= src
			default:
				t.Fatalf("unexpected ALU op: %v", ins)
			}
			reg[ins.Dst] = uint64(dst)
		case asm.JumpClass:
			if op.JumpOp() == asm.Exit {
				return reg[asm.R0] != 0
			}
			if op.Source() != asm.ImmSource {
				t.Fatalf("unexpected jump: %v", ins)
			}
			var jump bool
			switch op.JumpOp() {
			case asm.JEq:
				jump = reg[ins.Dst] == uint64(ins.Constant)
			case asm.JNE:
				jump = reg[ins.Dst] != uint64(ins.Constant)
			default:
				t.Fatalf("unexpected jump: %v", ins)
			}
			if jump {
				to, ok := syms[ins.Reference()]
				if !ok {
					t.Fatalf("jump to unknown symbol %q", ins.Reference())
				}
				pc = to
			}
		default:
			t.Fatalf("unexpected instruction: %v", ins)
		}
	}
	t.Fatal("program ran off its end")
	return false
}

func i64(v int64) *int64 { return &v }

// containerdDeviceRules are the device rules of a container created by containerd's CRI plugin:
// deny all (without a type or numbers), the default devices, and mknod of any device.
func containerdDeviceRules() []specs.LinuxDeviceCgroup {
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range [][2]int64{{1, 3}, {1, 8}, {1, 7}, {5, 0}, {1, 5}, {1, 9}, {5, 1}, {136, -1}, {5, 2}, {10, 200}} {
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(d[0]), Minor: i64(d[1]), Access: "rwm"})
	}
	return append(rules,
		specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: "m"},
		specs.LinuxDeviceCgroup{Allow: true, Type: "b", Access: "m"})
}

type deviceCase struct {
	dev, access string
	want        bool
}

func TestDeviceFilterRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		want  string // the converted rules
		cases []deviceCase
	}{{
		name:  "containerd default",
		rules: containerdDeviceRules(),
		want: "deny a *:* rwm; allow c 1:3 rwm; allow c 1:8 rwm; allow c 1:7 rwm; allow c 5:0 rwm; allow c 1:5 rwm; " +
			"allow c 1:9 rwm; allow c 5:1 rwm; allow c 136:* rwm; allow c 5:2 rwm; allow c 10:200 rwm; allow c *:* m; allow b *:* m",
		cases: []deviceCase{
			{"c 1:3 rw", "", true}, {"c 1:3", "r", true}, {"c 1:3", "w", true}, {"c 1:5", "rw", true},
			{"c 136:7", "rw", true}, {"c 10:200", "rw", true},
			{"c 1:11", "r", false}, {"c 1:11", "w", false}, {"c 1:11", "rw", false}, {"c 1:11", "m", true},
			{"c 1:1", "rw", false}, {"c 137:0", "rw", false}, {"b 8:0", "r", false}, {"b 8:0", "m", true},
		},
	}, {
		name:  "allow without deny-all starts from deny",
		rules: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"}},
		want:  "allow c 1:3 rwm",
		cases: []deviceCase{{"c 1:3", "rw", true}, {"c 1:11", "r", false}, {"c 1:11", "m", false}},
	}, {
		name: "read-only allow grants no O_RDWR",
		rules: []specs.LinuxDeviceCgroup{{Allow: false, Type: "a", Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "mr"}},
		want:  "deny a *:* rwm; allow c 1:3 rm; deny c 1:3 w",
		cases: []deviceCase{{"c 1:3", "r", true}, {"c 1:3", "m", true}, {"c 1:3", "w", false}, {"c 1:3", "rw", false}},
	}, {
		name: "write-only allow",
		rules: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "w"}},
		want:  "deny a *:* rwm; allow c 1:3 w; deny c 1:3 r",
		cases: []deviceCase{{"c 1:3", "w", true}, {"c 1:3", "r", false}, {"c 1:3", "rw", false}, {"c 1:3", "m", false}},
	}, {
		name: "allow all then deny",
		rules: []specs.LinuxDeviceCgroup{{Allow: true, Type: "a"},
			{Allow: false, Type: "c", Major: i64(1), Minor: i64(11), Access: "w"},
			{Allow: false, Type: "b", Access: "rwm"}},
		want: "allow a *:* rwm; deny c 1:11 w; deny b *:* rwm",
		cases: []deviceCase{{"c 1:3", "rw", true}, {"c 1:11", "r", true}, {"c 1:11", "w", false}, {"c 1:11", "rw", false},
			{"b 8:0", "r", false}, {"b 8:0", "m", false}},
	}, {
		name: "a rule of type a resets, whatever its numbers and access",
		rules: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
			{Allow: false, Type: "a", Major: i64(1), Minor: i64(3), Access: "r"}},
		want:  "deny a *:* rwm",
		cases: []deviceCase{{"c 1:3", "r", false}, {"c 1:3", "w", false}, {"c 5:0", "rw", false}},
	}, {
		name: "later rule wins",
		rules: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Access: "rwm"},
			{Allow: false, Type: "c", Major: i64(1), Minor: i64(11), Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: ""}},
		want:  "deny a *:* rwm; allow c 1:* rwm; deny c 1:11 rwm",
		cases: []deviceCase{{"c 1:3", "rw", true}, {"c 1:11", "r", false}, {"c 1:11", "m", false}, {"c 2:0", "r", false}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			orig := describeRules(tc.rules)
			f, err := newDeviceFilter(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if got := describeRules(f.rules); got != tc.want {
				t.Errorf("rules\n got %s\nwant %s", got, tc.want)
			}
			if describeRules(tc.rules) != orig {
				t.Error("the spec's rules were modified")
			}
			for _, c := range tc.cases {
				dev, access := c.dev, c.access
				if access == "" { // "c 1:3 rw"
					i := strings.LastIndexByte(dev, ' ')
					dev, access = dev[:i], dev[i+1:]
				}
				if got := runDeviceFilter(t, f, dev, access); got != c.want {
					t.Errorf("%s %s: allowed %v, want %v", dev, access, got, c.want)
				}
			}
		})
	}
}

func TestDeviceFilterRulesEmpty(t *testing.T) {
	for _, rules := range [][]specs.LinuxDeviceCgroup{nil, {}} {
		if f, err := newDeviceFilter(rules); f != nil || err != nil {
			t.Errorf("%v: got %v, %v; want no filter", rules, f, err)
		}
	}
	// Rules that all match nothing still make a filter: deny all.
	f, err := newDeviceFilter([]specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Access: ""}})
	if err != nil || f == nil {
		t.Fatalf("got %v, %v", f, err)
	}
	if runDeviceFilter(t, f, "c 1:3", "r") {
		t.Error("c 1:3 r allowed")
	}
}

func TestDeviceFilterRulesRefused(t *testing.T) {
	for _, tc := range []struct {
		rule specs.LinuxDeviceCgroup
		want string
	}{
		{specs.LinuxDeviceCgroup{Allow: true, Type: "p", Access: "rwm"}, `type "p"`},
		{specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: "rx"}, `access "rx"`},
		{specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(-2), Access: "r"}, "major -2"},
		{specs.LinuxDeviceCgroup{Allow: true, Type: "b", Minor: i64(1 << 32), Access: "r"}, "minor 4294967296"},
	} {
		_, err := newDeviceFilter([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "devices[1]") {
			t.Errorf("%s: %v, want an error naming devices[1] and %s", describeDeviceRule(tc.rule), err, tc.want)
		}
	}
}

// cgroup2Mount is the first cgroup2 mount in /proc/self/mountinfo, or "".
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(fs) > 0 && fs[0] == "cgroup2" {
			return fields[4]
		}
	}
	return ""
}

// TestDeviceFilterHelperProcess is the child of TestDeviceFilterReal, not a test: for each line
// "probe N" on stdin it makes a /dev/null node (c 1:3) and a /dev/kmsg node (c 1:11) in the
// directory it is given, opens each, and prints what happened.
func TestDeviceFilterHelperProcess(t *testing.T) {
	dir := os.Getenv("WAZERO_SHIM_DEVICE_HELPER")
	if dir == "" {
		t.Skip("helper process")
	}
	result := func(err error) string {
		var errno syscall.Errno
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &errno):
			return unix.ErrnoName(errno)
		}
		return err.Error()
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, ok := strings.CutPrefix(in.Text(), "probe ")
		if !ok {
			continue
		}
		var out []string
		for _, d := range []struct {
			name  string
			minor uint32
			flags int
		}{{"null", 3, unix.O_RDWR}, {"kmsg", 11, unix.O_WRONLY}} { // kmsg write-only: no CAP_SYSLOG check
			path := filepath.Join(dir, d.name+"-"+n)
			err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(1, d.minor)))
			out = append(out, d.name+"-mknod="+result(err))
			fd, err := unix.Open(path, d.flags|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			if err == nil {
				unix.Close(fd)
			}
			out = append(out, d.name+"-open="+result(err))
		}
		fmt.Println(strings.Join(out, " "))
	}
	os.Exit(0)
}

// TestDeviceFilterReal attaches the filter for containerd's default rules to a real cgroup2 group
// (the unified mount of a hybrid host such as this repository's CI host, where the group has no
// controllers: BPF_CGROUP_DEVICE needs none), moves a process into it, and checks that the process
// can use a /dev/null node but not a /dev/kmsg node; and that Delete leaves no program behind.
func TestDeviceFilterReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root (euid %d)", os.Geteuid())
	}
	mnt := cgroup2Mount(t)
	if mnt == "" {
		t.Skip("no cgroup2 mount in /proc/self/mountinfo")
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	path := "/wazero-shim-devtest-" + hex.EncodeToString(rnd)
	dir := filepath.Join(mnt, path)
	h := cgroupHost{unified: true, mountpoint: mnt}
	cg, err := h.create(path, &specs.LinuxResources{Devices: containerdDeviceRules()})
	if err != nil {
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS) {
			unavailable("cgroup2 at %s: cannot create a group with a device filter: %v", mnt, err)
		}
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(dir); err == nil {
			if err := deleteCgroup(cg); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})

	// Exactly one program is attached to the group.
	dirFD, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	q, err := link.QueryPrograms(link.QueryOptions{Target: dirFD, Attach: ebpf.AttachCGroupDevice})
	unix.Close(dirFD)
	if err != nil {
		t.Fatalf("query the programs attached to %s: %v", dir, err)
	}
	if len(q.Programs) != 1 {
		t.Fatalf("%d programs attached to %s, want 1", len(q.Programs), dir)
	}
	progID := q.Programs[0].ID

	nodes := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeviceFilterHelperProcess$")
	cmd.Env = append(os.Environ(), "WAZERO_SHIM_DEVICE_HELPER="+nodes)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	stopHelper := func() { stdin.Close(); _ = cmd.Process.Kill() }
	defer stopHelper()
	next := func(what string) string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case err := <-exited:
			exited <- err
			t.Fatalf("%s: helper ended: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer from the helper", what)
		}
		return ""
	}
	probe := func(n int) map[string]string {
		t.Helper()
		if _, err := fmt.Fprintf(stdin, "probe %d\n", n); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, kv := range strings.Fields(next("probe")) {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
		return got
	}
	if l := next("start"); l != "ready" {
		t.Fatalf("helper said %q", l)
	}

	// Control, outside the group: both nodes can be made and opened here, so a failure below is
	// the filter's doing.
	before := probe(0)
	t.Logf("outside the group: %v", before)
	if before["null-mknod"] != "ok" || before["null-open"] != "ok" {
		t.Fatalf("outside the group the /dev/null node cannot be made or opened (%v): is %s mounted nodev?", before, nodes)
	}
	if before["kmsg-open"] != "ok" {
		t.Logf("the /dev/kmsg node cannot be opened outside the group either (%v): the EPERM check below proves less", before)
	}

	if err := cg.AddProc(uint64(cmd.Process.Pid)); err != nil {
		t.Fatalf("AddProc: %v", err)
	}
	after := probe(1)
	t.Logf("inside the group: %v", after)
	for k, want := range map[string]string{
		"null-mknod": "ok",    // c *:* m
		"null-open":  "ok",    // c 1:3 rwm
		"kmsg-mknod": "ok",    // c *:* m
		"kmsg-open":  "EPERM", // no rule for c 1:11
	} {
		if after[k] != want {
			t.Errorf("inside the group: %s = %s, want %s", k, after[k], want)
		}
	}

	stopHelper()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("helper did not exit")
	}
	if err := deleteCgroup(cg); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists (%v)", dir, err)
	}
	// The program goes with the group: the kernel releases it asynchronously after the rmdir.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := ebpf.NewProgramFromID(progID)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Logf("cannot look program %d up (%v): not checked", progID, err)
			break
		}
		p.Close()
		if time.Now().After(deadline) {
			t.Fatalf("program %d still loaded 10s after the group was removed", progID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
