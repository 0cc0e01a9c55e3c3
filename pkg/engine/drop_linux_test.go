package engine

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// procStatus reads the fields of /proc/PID/task/TID/status for every thread of pid.
func procStatus(t *testing.T, pid int) []map[string]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, task := range tasks {
		f, err := os.Open(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		m := map[string]string{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			m[k] = strings.Join(strings.Fields(v), " ")
		}
		f.Close()
		out = append(out, m)
	}
	return out
}

// TestRunnerDrop runs a guest in an isolated runner with a non-root security context and checks,
// on every thread of the real process, what runc's container process would have for the same
// spec: ids, groups, the five capability sets, no_new_privs, an rlimit, oom_score_adj, umask.
func TestRunnerDrop(t *testing.T) {
	r, stdout, stderr := spawn(t)
	cfg := testConfig(t, "testprog.wasm", "sleep", "30")
	cfg.NoIsolation = false
	if err := os.Chmod(cfg.Rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	adj := 678
	umask := uint32(0o027)
	cfg.Security = &oci.Security{
		UID: 1000, GID: 1001, Groups: []uint32{1001, 2000}, Umask: &umask,
		Caps: &oci.Capabilities{
			Bounding:    []int{unix.CAP_NET_BIND_SERVICE, unix.CAP_KILL, unix.CAP_CHOWN},
			Effective:   []int{unix.CAP_NET_BIND_SERVICE, unix.CAP_KILL},
			Permitted:   []int{unix.CAP_NET_BIND_SERVICE, unix.CAP_KILL},
			Inheritable: []int{unix.CAP_NET_BIND_SERVICE},
			Ambient:     []int{unix.CAP_NET_BIND_SERVICE},
		},
		NoNewPrivileges: true,
		Rlimits:         []oci.Rlimit{{Type: "RLIMIT_NOFILE", Resource: unix.RLIMIT_NOFILE, Soft: 321, Hard: 654}},
		OOMScoreAdj:     &adj,
		Seccomp: &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"kexec_load"}, Action: specs.ActErrno}},
		},
	}
	if _, err := r.Configure(cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	pid := r.Pid()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout(), "sleeping") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stdout(), "sleeping") {
		t.Fatalf("the guest did not start: stdout %q, stderr %q", stdout(), stderr())
	}
	nab := fmt.Sprintf("%016x", 1<<unix.CAP_NET_BIND_SERVICE)
	want := map[string]string{
		"Uid":        "1000 1000 1000 1000",
		"Gid":        "1001 1001 1001 1001",
		"Groups":     "1001 2000",
		"CapInh":     nab,
		"CapPrm":     nab,
		"CapEff":     nab,
		"CapBnd":     fmt.Sprintf("%016x", 1<<unix.CAP_NET_BIND_SERVICE|1<<unix.CAP_KILL|1<<unix.CAP_CHOWN),
		"CapAmb":     nab,
		"NoNewPrivs": "1",
		"Seccomp":    "2",
		// The runner's own allowlist and the spec's profile, stacked.
		"Seccomp_filters": "2",
		"Umask":           "0027",
	}
	threads := procStatus(t, pid)
	if len(threads) < 2 {
		t.Logf("only %d thread(s) to check", len(threads))
	}
	for i, st := range threads {
		for k, v := range want {
			if st[k] != v {
				t.Errorf("thread %d: %s = %q, want %q", i, k, st[k], v)
			}
		}
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if !hasLimitLine(string(limits), "Max open files", "321", "654") {
		t.Errorf("limits:\n%s\nwant Max open files 321 654", limits)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid)); strings.TrimSpace(string(b)) != strconv.Itoa(adj) {
		t.Errorf("oom_score_adj = %q, want %d", b, adj)
	}
	// The host's tree is gone from the runner's namespace: only its rootfs is mounted there.
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(string(mi)), "\n") + 1; n > 2 {
		t.Errorf("the runner's namespace holds %d mounts, want the rootfs only:\n%s", n, mi)
	}
	r.Cmd.Process.Kill()
	wait(t, r)
}

// hasLimitLine reports whether text has a line that starts with prefix and holds the fields.
func hasLimitLine(text, prefix string, fields ...string) bool {
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(l, prefix))
		if len(f) >= len(fields) {
			ok := true
			for i := range fields {
				ok = ok && f[i] == fields[i]
			}
			if ok {
				return true
			}
		}
	}
	return false
}

// TestRunnerDropRootFile checks what the dropped guest can reach: a file only root may read is
// refused, and a file it creates is owned by its uid and gid.
func TestRunnerDropRootFile(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		args       []string
		code       int
	}{
		{"read root-only", "secret", []string{"read", "/data/secret"}, 1},
		{"create", "new", []string{"write", "/data/new", "x"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _, stderr := spawn(t)
			cfg := testConfig(t, "testprog.wasm", tc.args...)
			cfg.NoIsolation = false
			os.Chmod(cfg.Rootfs, 0o755)
			src := t.TempDir()
			os.Chmod(src, 0o777)
			if err := os.WriteFile(filepath.Join(src, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.Mounts = []oci.Mount{{Source: src, Destination: "/data"}}
			cfg.Security = &oci.Security{UID: 1000, GID: 1000}
			if _, err := r.Configure(cfg); err != nil {
				t.Fatalf("Configure: %v", err)
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			if code := wait(t, r); code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, stderr())
			}
			if tc.code != 0 {
				if !strings.Contains(stderr(), "Permission denied") {
					t.Errorf("stderr %q, want EACCES", stderr())
				}
				return
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(src, tc.path), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 1000 || st.Gid != 1000 {
				t.Errorf("created file: uid %d gid %d, want 1000 1000", st.Uid, st.Gid)
			}
		})
	}
}

// TestBindMountSymlinkRace mounts into a directory that another process keeps swapping with a
// symlink to a host directory (CVE-2021-30465): the mount must never land outside the rootfs.
func TestBindMountSymlinkRace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	rootfs, src, outside := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(rootfs, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		x, tmp := filepath.Join(vol, "x"), filepath.Join(vol, "x.tmp")
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.Symlink(outside, tmp)
			os.Rename(tmp, x) // fails while x is a directory (or a mount point)
			os.Remove(x)
			os.Mkdir(x, 0o755)
		}
	}()
	done := make(chan error, 1)
	go func() {
		// The mounts happen in a private mount namespace of this thread; the thread stays locked
		// (never unlocked), so it ends with the goroutine and takes the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			done <- err
			return
		}
		mounted := 0
		for i := 0; i < 300; i++ {
			err := bindMounts(rootfs, []oci.Mount{{Source: src, Destination: "/vol/x"}})
			if err == nil {
				mounted++
			}
			if _, err := os.Stat(filepath.Join(outside, "marker")); err == nil {
				done <- fmt.Errorf("iteration %d: the mount landed on the host directory %s", i, outside)
				return
			}
			unmountUnder(rootfs)
		}
		t.Logf("%d of 300 mounts succeeded while racing", mounted)
		done <- nil
	}()
	err := <-done
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
}

// unmountUnder detaches every mount of the calling thread's namespace under dir.
func unmountUnder(dir string) {
	b, _ := os.ReadFile("/proc/thread-self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

// confine makes cfg run isolated, as uid and gid 1000 without capabilities, with no_new_privs and
// containerd's default seccomp profile: what a restricted Kubernetes pod's container gets.
func confine(t *testing.T, cfg *Config) {
	t.Helper()
	cfg.NoIsolation = false
	if err := os.Chmod(cfg.Rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range cfg.Mounts {
		os.Chmod(m.Source, 0o755)
	}
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	cfg.Security = &oci.Security{
		UID: 1000, GID: 1000, Caps: &oci.Capabilities{}, NoNewPrivileges: true,
		Seccomp: ctrdseccomp.DefaultProfile(spec),
	}
}

// TestRunnerConfinedModes runs guests compiled and interpreted, growing memory, as a confined
// runner (see confine): the drop leaves the engine everything it needs.
func TestRunnerConfinedModes(t *testing.T) {
	for _, tc := range []struct {
		cold oci.ColdStart
		args []string
		want string
	}{
		{oci.ColdStartCompile, []string{"hello"}, "hello from wasm\n"},
		{oci.ColdStartInterpret, []string{"hello"}, "hello from wasm\n"},
		{oci.ColdStartCompile, []string{"grow", "64"}, ""},
		{oci.ColdStartInterpret, []string{"grow", "64"}, ""},
	} {
		t.Run(string(tc.cold)+"-"+tc.args[0], func(t *testing.T) {
			r, stdout, stderr := spawn(t)
			cfg := testConfig(t, "testprog.wasm", tc.args...)
			cfg.ColdStart = tc.cold
			cfg.CacheDir = t.TempDir()
			confine(t, cfg)
			if _, err := r.Configure(cfg); err != nil {
				t.Fatalf("Configure: %v", err)
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			if code := wait(t, r); code != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout(), stderr())
			}
			if tc.want != "" && stdout() != tc.want {
				t.Errorf("stdout %q, want %q", stdout(), tc.want)
			}
		})
	}
}
