//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// taskExec runs `ctr task exec --exec-id execID [flags] id args...` with stdin (nil: /dev/null).
func (d *daemon) taskExec(t *testing.T, stdin io.Reader, id, execID string, flags []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	fifos := filepath.Join(d.dir, "fifo")
	if slices.Contains(flags, "--detach") {
		// ctr leaves a detached exec's FIFOs behind (it never deletes the exec): keep them out
		// of the daemon's FIFO directory, which TestLeaksAfterManyRuns checks.
		fifos = t.TempDir()
	}
	full := append([]string{"task", "exec", "--fifo-dir", fifos, "--exec-id", execID}, flags...)
	full = append(append(full, id), args...)
	r := d.exec(ctx, stdin, full...)
	t.Logf("ctr %s\n%s", strings.Join(full, " "), r)
	if r.timedOut {
		t.Errorf("ctr task exec %s: timed out after %s", execID, ctrTimeout)
	}
	return r
}

// taskPids returns the PIDs `ctr task ps id` lists, with the INFO column of each (an exec's
// process details, empty for the container's own process).
func taskPids(t *testing.T, d *daemon, id string) map[int]string {
	t.Helper()
	so, se, code := d.ctr(t, "task", "ps", id)
	if code != 0 {
		t.Fatalf("ctr task ps %s: exit %d: %s", id, code, se)
	}
	t.Logf("ctr task ps %s:\n%s", id, so)
	pids := map[int]string{}
	for _, l := range lines(so)[min(1, len(lines(so))):] {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if pid, err := strconv.Atoi(f[0]); err == nil {
			pids[pid] = strings.Join(f[1:], " ")
		}
	}
	return pids
}

// execEvents returns the topics and exec IDs of the /tasks/exec-* and /tasks/exit events of
// container id in ctr events output, in order: "exec-added:ID", "exec-started:ID", "exit:ID=STATUS".
func execEvents(out, id string) []string {
	var evs []string
	for _, l := range lines(out) {
		i := strings.IndexByte(l, '{')
		if i < 0 {
			continue
		}
		var ev struct {
			ContainerID string `json:"container_id"`
			ExecID      string `json:"exec_id"`
			ID          string `json:"id"`
			ExitStatus  int    `json:"exit_status"`
		}
		if json.Unmarshal([]byte(l[i:]), &ev) != nil || ev.ContainerID != id {
			continue
		}
		switch {
		case strings.Contains(l, "/tasks/exec-added"):
			evs = append(evs, "exec-added:"+ev.ExecID)
		case strings.Contains(l, "/tasks/exec-started"):
			evs = append(evs, "exec-started:"+ev.ExecID)
		case strings.Contains(l, "/tasks/exit"):
			evs = append(evs, fmt.Sprintf("exit:%s=%d", ev.ID, ev.ExitStatus))
		}
	}
	return evs
}

// TestExec: `ctr task exec` of wasm commands in a running wasm container: they read the
// container's files (its rootfs, where an earlier exec wrote, and its bind mount), see its
// environment, return their exit codes, take stdin, are killed on their own, fail naming a
// missing module, and die with the container.
func TestExec(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		host := t.TempDir()
		if err := os.WriteFile(filepath.Join(host, "f.txt"), []byte("from-the-host-mount"), 0o644); err != nil {
			t.Fatal(err)
		}
		id := newID(t, d)
		ev := watchEvents(t, d)
		runDetached(t, d, id, testprog("sleep", "120"), "--env", "EXEC_TEST=container-env",
			"--mount", "type=bind,src="+host+",dst=/data,options=rbind:ro")

		t.Run("reads-the-container-files", func(t *testing.T) {
			if r := d.taskExec(t, nil, id, "w", nil, "/testprog.wasm", "write", "/exec-made.txt", "written-by-exec"); r.exit != 0 {
				t.Fatalf("exec write: exit %d", r.exit)
			}
			r := d.taskExec(t, nil, id, "r", nil, "/testprog.wasm", "read", "/exec-made.txt")
			if r.exit != 0 || r.stdout != "written-by-exec" {
				t.Errorf("exec read of a file an earlier exec wrote in the rootfs: exit %d, stdout %q", r.exit, r.stdout)
			}
			if _, err := os.Stat("/exec-made.txt"); err == nil {
				t.Errorf("/exec-made.txt appeared on the host's /: the exec did not see the container's rootfs")
			}
			r = d.taskExec(t, nil, id, "m", nil, "/testprog.wasm", "read", "/data/f.txt")
			if r.exit != 0 || r.stdout != "from-the-host-mount" {
				t.Errorf("exec read of the container's bind mount: exit %d, stdout %q", r.exit, r.stdout)
			}
			// The mount is read-only for the exec as for the container.
			if r := d.taskExec(t, nil, id, "ro", nil, "/testprog.wasm", "write", "/data/x", "y"); r.exit == 0 {
				t.Errorf("exec wrote into the container's read-only mount")
			}
		})
		t.Run("env", func(t *testing.T) {
			r := d.taskExec(t, nil, id, "env", nil, "/testprog.wasm", "env")
			for _, want := range []string{"EXEC_TEST=container-env", "PATH=/bin"} {
				if !hasLine(r.stdout, want) {
					t.Errorf("exec env output has no line %q", want)
				}
			}
			// args[0] looked up in the container's PATH (/bin) like the container's own.
			r = d.taskExec(t, nil, id, "path", nil, "testprog.wasm", "args", "x")
			if r.exit != 0 || !hasLine(r.stdout, "argv[1]=args") || !hasLine(r.stdout, "argv[2]=x") {
				t.Errorf("exec of a module found in PATH: exit %d", r.exit)
			}
		})
		t.Run("own-user", func(t *testing.T) {
			// The exec runs as its own process.user (ctr task exec --user), not as the container's
			// root: the rootfs's / (root's, mode 0755) refuses it a new file.
			r := d.taskExec(t, nil, id, "nobody", []string{"--user", "65534"}, "/testprog.wasm", "write", "/by-nobody.txt", "x")
			if r.exit != 1 || !strings.Contains(r.stderr, "ermission denied") {
				t.Errorf("exec --user 65534 writing into /: exit %d, want 1 with permission denied", r.exit)
			}
			if r := d.taskExec(t, nil, id, "root", nil, "/testprog.wasm", "write", "/by-root.txt", "x"); r.exit != 0 {
				t.Errorf("exec as the container's root writing into /: exit %d", r.exit)
			}
		})
		t.Run("exit-codes", func(t *testing.T) {
			for _, code := range []int{0, 3, 42} {
				r := d.taskExec(t, nil, id, fmt.Sprintf("exit%d", code), nil, "/testprog.wasm", "exit", strconv.Itoa(code))
				if r.exit != code {
					t.Errorf("exec exit %d: ctr exited %d", code, r.exit)
				}
			}
			if r := d.taskExec(t, nil, id, "trap", nil, "/testprog.wasm", "trap"); r.exit != 134 || !strings.Contains(r.stderr, trapWant) {
				t.Errorf("exec of a trapping command: exit %d, want 134 and %q on stderr", r.exit, trapWant)
			}
		})
		t.Run("stdin", func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			done := make(chan result, 1)
			go func() { done <- d.taskExec(t, pr, id, "cat", nil, "/testprog.wasm", "cat") }()
			io.WriteString(pw, "piped-into-exec\n")
			// ctr sends CloseIO at EOF only once the exec exists: wait for it to run.
			for end := time.Now().Add(30 * time.Second); len(taskPids(t, d, id)) < 2 && time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond)
			}
			pw.Close()
			if r := <-done; r.exit != 0 || r.stdout != "piped-into-exec\n" {
				t.Errorf("exec cat: exit %d, stdout %q", r.exit, r.stdout)
			}
		})
		t.Run("missing-module", func(t *testing.T) {
			r := d.taskExec(t, nil, id, "nope", nil, "/nope.wasm")
			if r.exit == 0 || !strings.Contains(r.stderr, "/nope.wasm") {
				t.Errorf("exec of a missing module: exit %d, stderr must name /nope.wasm", r.exit)
			}
		})
		t.Run("kill", func(t *testing.T) {
			if r := d.taskExec(t, nil, id, "killme-exec", []string{"--detach"}, "/testprog.wasm", "sleep", "60"); r.exit != 0 {
				t.Fatalf("exec --detach: exit %d", r.exit)
			}
			pids := taskPids(t, d, id)
			execPid := 0
			for pid, info := range pids {
				if strings.Contains(info, "killme-exec") {
					execPid = pid
				}
			}
			if len(pids) != 2 || execPid == 0 {
				t.Fatalf("ctr task ps: %v, want the container's runner and exec killme-exec's, named in its INFO", pids)
			}
			if _, se, code := d.ctr(t, "task", "kill", "--exec-id", "killme-exec", "--signal", "SIGKILL", id); code != 0 {
				t.Fatalf("ctr task kill --exec-id killme-exec: exit %d: %s", code, se)
			}
			for end := time.Now().Add(20 * time.Second); len(taskPids(t, d, id)) != 1; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("exec killme-exec still listed after SIGKILL: %v", taskPids(t, d, id))
				}
			}
			if st := d.taskStatus(t, id); st != "RUNNING" {
				t.Errorf("container status %q after its exec was killed, want RUNNING", st)
			}
			if !waitEvent(ev, id, "exit:killme-exec=137") {
				t.Errorf("no /tasks/exit of exec killme-exec with status 137; events %v", execEvents(ev.String(), id))
			}
		})
		t.Run("events-in-order", func(t *testing.T) {
			want := []string{"exec-added:exit3", "exec-started:exit3", "exit:exit3=3"}
			got := execEvents(ev.String(), id)
			var mine []string
			for _, e := range got {
				if strings.HasSuffix(strings.SplitN(e, "=", 2)[0], ":exit3") {
					mine = append(mine, e)
				}
			}
			if strings.Join(mine, " ") != strings.Join(want, " ") {
				t.Errorf("events of exec exit3: %v, want %v", mine, want)
			}
		})
		t.Run("container-exit-kills-execs", func(t *testing.T) {
			if r := d.taskExec(t, nil, id, "orphan-exec", []string{"--detach"}, "/testprog.wasm", "sleep", "60"); r.exit != 0 {
				t.Fatalf("exec --detach: exit %d", r.exit)
			}
			var execPid int
			for pid, info := range taskPids(t, d, id) {
				if strings.Contains(info, "orphan-exec") {
					execPid = pid
				}
			}
			if execPid == 0 {
				t.Fatalf("exec orphan not in ctr task ps")
			}
			killRemove(t, d, id)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", execPid)); err == nil {
				t.Errorf("exec runner %d outlived its container", execPid)
			}
			got := execEvents(ev.String(), id)
			iExec, iInit := -1, -1
			for i, e := range got {
				if e == "exit:orphan-exec=137" {
					iExec = i
				}
				if strings.HasPrefix(e, "exit:"+id+"=") {
					iInit = i
				}
			}
			if iExec < 0 || iInit < 0 || iExec > iInit {
				t.Errorf("events %v: want exec orphan's exit (137) before the container's", got)
			}
		})
	})
}

// waitEvent waits up to 10s for ev to show want (execEvents form) for container id.
func waitEvent(ev *eventWatch, id, want string) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, e := range execEvents(ev.String(), id) {
			if e == want {
				return true
			}
		}
	}
	return false
}
