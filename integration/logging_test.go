//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Container log URIs (`ctr run --log-uri URI`): ctr passes URI as both the stdout and the stderr
// of CreateTaskRequest and the shim writes the streams there itself, with no client attached.
//   - file:///PATH: the shim appends both streams to PATH.
//   - binary:///PATH?ARGS: the shim runs the logging binary PATH (testdata/native/logger) with the
//     container's stdout on fd 3, its stderr on fd 4 and a ready pipe on fd 5, CONTAINER_ID and
//     CONTAINER_NAMESPACE in its environment, and the query as its arguments; our logger appends
//     "stdout LINE" / "stderr LINE" to the file named by its first argument (see its doc comment).

const logMsg = "to-the-log-xyz"

// logDir returns a fresh directory for the log files of one test, below the daemon's directory
// (no characters that would need escaping in a URI).
func logDir(t *testing.T, d *daemon) string {
	t.Helper()
	dir := filepath.Join(d.dir, "logs", newID(t, d))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readLines returns the lines of file p ("" lines dropped at the end).
func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("log file: %v", err)
	}
	return lines(string(b))
}

// wantNoOutput checks that ctr itself printed none of the container's output: with a log URI it
// goes to the log only.
func wantNoOutput(t *testing.T, r result, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if strings.Contains(r.stdout+r.stderr, m) {
			t.Errorf("ctr printed %q although the output goes to the log URI\n%s", m, r)
		}
	}
}

func TestLogURIFile(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		logf := filepath.Join(logDir(t, d), "x.log")
		uri := "file://" + logf
		r := d.run(t, runOpts{args: testprog("hello"), flags: []string{"--log-uri", uri}})
		wantSuccess(t, r)
		r2 := d.run(t, runOpts{args: testprog("stderr", logMsg), flags: []string{"--log-uri", uri}})
		wantSuccess(t, r2)
		wantNoOutput(t, r, "hello from wasm")
		wantNoOutput(t, r2, logMsg)
		// Both containers appended to the same file: stdout of the first, then stderr of the second.
		got := readLines(t, logf)
		want := []string{"hello from wasm", logMsg}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s holds %q, want %q", logf, got, want)
		}
	})
}

// loggerRecord is what the logging binary wrote to its output file.
type loggerRecord struct {
	pid            int
	id, ns, args   string
	stdout, stderr []string
	sigterm, exit  bool
	raw            []string
}

var loggerStartRE = regexp.MustCompile(`^start pid=(\d+) id=(\S*) ns=(\S*) args=(.*)$`)

func parseLogger(ls []string) loggerRecord {
	rec := loggerRecord{raw: ls}
	for _, l := range ls {
		switch {
		case loggerStartRE.MatchString(l):
			m := loggerStartRE.FindStringSubmatch(l)
			rec.pid, _ = strconv.Atoi(m[1])
			rec.id, rec.ns, rec.args = m[2], m[3], m[4]
		case strings.HasPrefix(l, "stdout "):
			rec.stdout = append(rec.stdout, strings.TrimPrefix(l, "stdout "))
		case strings.HasPrefix(l, "stderr "):
			rec.stderr = append(rec.stderr, strings.TrimPrefix(l, "stderr "))
		case l == "sigterm":
			rec.sigterm = true
		case strings.HasPrefix(l, "exit pid="):
			rec.exit = true
		}
	}
	return rec
}

// loggerURI returns binary:///ABS/logger?OUT: containerd's convention is that every query key (and
// its value, if any) becomes an argument, so the logger's first argument is OUT.
func loggerURI(t *testing.T, out string) string {
	t.Helper()
	abs, err := filepath.Abs(loggerSrc)
	if err != nil {
		t.Fatal(err)
	}
	return "binary://" + abs + "?" + out
}

// loggerAlive reports whether pid is still the logging binary (not exited, not a zombie).
func loggerAlive(pid int) bool {
	state, _, _ := procStat(pid)
	if state == "" || state == "Z" || state == "X" {
		return false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	abs, _ := filepath.Abs(loggerSrc)
	return strings.TrimSuffix(exe, " (deleted)") == abs
}

// waitLoggerDone waits for the logger that writes out to have drained both streams ("exit" line)
// and for its process to be gone, and returns what it wrote.
func waitLoggerDone(t *testing.T, d *daemon, id, out string, timeout time.Duration) loggerRecord {
	t.Helper()
	start := time.Now()
	var rec loggerRecord
	for {
		if b, err := os.ReadFile(out); err == nil {
			rec = parseLogger(lines(string(b)))
		}
		if rec.exit && rec.pid > 0 && !loggerAlive(rec.pid) {
			t.Logf("logger pid %d drained and exited %s after the container was removed", rec.pid, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > timeout {
			alive := rec.pid > 0 && loggerAlive(rec.pid)
			t.Errorf("logger of %s: exit line=%v, process %d alive=%v %s after the container was removed\n%s\ndaemon log:\n%s",
				id, rec.exit, rec.pid, alive, timeout, strings.Join(rec.raw, "\n"), logLinesFor(d, id))
			if alive {
				syscallKill(rec.pid) // don't leave it behind
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("logger output:\n%s", strings.Join(rec.raw, "\n"))
	if rec.pid == 0 {
		t.Errorf("the logger's output has no start line: it never ran")
	}
	if rec.id != id || rec.ns != d.ns {
		t.Errorf("logger environment CONTAINER_ID=%q CONTAINER_NAMESPACE=%q, want %q %q", rec.id, rec.ns, id, d.ns)
	}
	if !strings.HasPrefix(rec.args, fmt.Sprintf("[%q", out)) {
		t.Errorf("logger arguments %s: the first is not the URI's query %q", rec.args, out)
	}
	if rec.sigterm {
		t.Logf("the logger got SIGTERM") // containerd's runc shim does this on close; ours lets it drain
	}
	return rec
}

func TestLogURIBinary(t *testing.T) {
	forEachDaemon(t, func(t *testing.T, d *daemon) {
		dir := logDir(t, d)
		t.Run("stdout", func(t *testing.T) {
			out := filepath.Join(dir, "stdout.log")
			id := newID(t, d)
			r := d.run(t, runOpts{id: id, args: testprog("hello"), flags: []string{"--log-uri", loggerURI(t, out)}})
			wantSuccess(t, r)
			wantNoOutput(t, r, "hello from wasm")
			rec := waitLoggerDone(t, d, id, out, 10*time.Second)
			if strings.Join(rec.stdout, "\n") != "hello from wasm" || len(rec.stderr) != 0 {
				t.Errorf("logger got stdout %q stderr %q, want stdout [hello from wasm] and no stderr", rec.stdout, rec.stderr)
			}
		})
		t.Run("stderr", func(t *testing.T) {
			out := filepath.Join(dir, "stderr.log")
			id := newID(t, d)
			r := d.run(t, runOpts{id: id, args: testprog("stderr", logMsg), flags: []string{"--log-uri", loggerURI(t, out)}})
			wantSuccess(t, r)
			wantNoOutput(t, r, logMsg)
			rec := waitLoggerDone(t, d, id, out, 10*time.Second)
			if strings.Join(rec.stderr, "\n") != logMsg || len(rec.stdout) != 0 {
				t.Errorf("logger got stdout %q stderr %q, want stderr [%s] and no stdout", rec.stdout, rec.stderr, logMsg)
			}
		})
		t.Run("lifetime", func(t *testing.T) {
			// The logger lives as long as the container: it is up while the task runs, and it has
			// drained and exited once the task and container are removed.
			id := newID(t, d)
			out := filepath.Join(dir, "lifetime.log")
			runDetached(t, d, id, testprog("sleep", "60"), "--log-uri", loggerURI(t, out))
			rec := parseLogger(readLines(t, out))
			if rec.pid == 0 || !loggerAlive(rec.pid) {
				t.Fatalf("logger of the running task %s is not alive (pid %d):\n%s", id, rec.pid, strings.Join(rec.raw, "\n"))
			}
			if rec.exit {
				t.Errorf("logger of the running task %s already reached EOF", id)
			}
			killRemove(t, d, id)
			waitLoggerDone(t, d, id, out, 10*time.Second)
		})
	})
}
