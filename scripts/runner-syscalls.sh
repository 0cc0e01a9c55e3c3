#!/usr/bin/env bash
# How pkg/seccomp.RunnerProfile (the runner's own allowlist) was derived; run it again after
# upgrading Go or wazero and compare with pkg/seccomp/runner.go.
#
#   scripts/runner-syscalls.sh           static: the system calls Go's runtime, the syscall/unix
#                                        functions linked into the runner (amd64, arm64) and
#                                        wazero can make
#   scripts/runner-syscalls.sh --trace   also dynamic (root, strace): the calls real runners make
#                                        after the drop began, in the engine's unit tests and in
#                                        the runner binary driven through the sandbox mode,
#                                        SIGTERM/SIGKILL, memory growth, the interpreter, a cache
#                                        hit, 64 concurrent per-request (WAGI) requests over IPv4
#                                        and IPv6, and a Go HTTP server guest; then the calls
#                                        RunnerProfile does not allow (should be none)
#
# Everything is built in a temporary directory; nothing in the tree changes (but testdata/build).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
GOROOT=$($GO env GOROOT)

echo "== Go runtime (runtime/sys_linux_*.s, internal/runtime/syscall/linux)"
for a in amd64 arm64; do
	printf '%s: ' "$a"
	{ grep -ho 'SYS_[a-z_0-9]*' "$GOROOT/src/runtime/sys_linux_$a.s" | sed 's/^SYS_//'
	  grep -ho 'SYS_[A-Z_0-9]*' "$GOROOT/src/internal/runtime/syscall/linux/defs_linux_$a.go" | sed 's/^SYS_//' | tr A-Z a-z
	  grep -ho 'SYS_[A-Z_0-9]*' "$GOROOT"/src/runtime/{os_linux,mem_linux,set_vma_name_linux,vgetrandom_linux,cgroup_linux}.go 2>/dev/null | sed 's/^SYS_//' | tr A-Z a-z
	} | sed 's/setittimer/setitimer/' | sort -u | tr '\n' ' '
	echo
done

echo "== syscall, x/sys/unix and internal/syscall/unix functions linked into the runner"
for a in amd64 arm64; do
	CGO_ENABLED=0 GOARCH=$a $GO build -trimpath -o "$TMP/runner.$a" ./cmd/containerd-shim-wazero-v1-runner
	printf '%s: ' "$a"
	$GO tool nm "$TMP/runner.$a" | awk '$2=="T"{print $3}' |
		grep -E '^(syscall|golang.org/x/sys/unix|internal/syscall/unix)\.[A-Za-z0-9_]+$' |
		sed 's/.*\.//' | sort -u | tr '\n' ' '
	echo
done

echo "== wazero ($($GO list -m -f '{{.Version}}' github.com/tetratelabs/wazero)): system calls in internal/platform and internal/sysfs (linux/unix files)"
W=$($GO list -m -f '{{.Dir}}' github.com/tetratelabs/wazero)
grep -hoE '(syscall|unix)\.(SYS_[A-Z0-9_]+|[A-Z][A-Za-z0-9]+)\(' \
	$(ls "$W"/internal/platform/*.go "$W"/internal/sysfs/*.go | grep -v _test | grep -vE 'windows|darwin|bsd|other|unsupported|plan9|wasip1') |
	sort -u | tr '\n' ' '
echo

[ "${1:-}" = --trace ] || exit 0

command -v strace >/dev/null || { echo "strace is not installed (apt-get install -y strace)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "--trace needs root (the runners use namespaces)" >&2; exit 1; }
make testdata >/dev/null

cat >"$TMP/analyze.py" <<'PY'
"""System calls of runner processes (argv[1] == "runner") in `strace -f` output, from the
drop's start (its first prctl(PR_CAPBSET_READ)) or, for runners without a security context,
from the status line (write(4, "{")) on. Prints them, then those pkg/seccomp/runner.go does
not allow, then the arguments of the conditionally allowed calls."""
import collections, re, sys
src = open(sys.argv[1]).read()
body = src[src.index('func runnerAllowed'):src.index('// Flags of clone')]
allowed = set(re.findall(r'"([a-z0-9_]+)"', body)) | {'clone', 'mmap', 'mprotect', 'socket', 'prlimit64', 'prctl'}
seen, args = collections.Counter(), collections.Counter()
cond = ('clone', 'clone3', 'mmap', 'mprotect', 'socket', 'prctl', 'prlimit64')
for path in sys.argv[2:]:
    lines = open(path, errors='replace').read().splitlines()
    tgid, runner, pend = {}, set(), {}
    for l in lines:
        m = re.match(r'^(\d+) +(.*)$', l)
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.startswith('execve(') and '"runner"' in rest.split(']')[0]:
            runner.add(pid)
        if rest.startswith(('clone(', 'clone3(')):
            pend[pid] = rest
        elif rest.startswith(('<... clone resumed>', '<... clone3 resumed>')):
            pend[pid] = pend.get(pid, '') + rest
        else:
            continue
        r = re.search(r'= (\d+)$', pend[pid])
        if r:
            child = int(r.group(1))
            tgid[child] = tgid.get(pid, pid) if 'CLONE_THREAD' in pend[pid] else child
            del pend[pid]
    print(f'{path}: {len(runner)} runners')
    phase = {}
    for l in lines:
        m = re.match(r'^(\d+) +(\w+)\(', l)
        if not m:
            continue
        pid, name = int(m.group(1)), m.group(2)
        g = tgid.get(pid, pid)
        if g not in runner:
            continue
        if phase.get(g, 0) == 0 and (name == 'prctl' and 'PR_CAPBSET_READ' in l or name == 'write' and l.split(' ', 1)[1].startswith('write(4, "{')):
            phase[g] = 1
        if phase.get(g, 0):
            seen[name] += 1
            if name in cond:
                a = l.split(' ', 1)[1].strip().replace(' <unfinished ...>', '')
                a = re.sub(r'\)? += .*$', '', a).rstrip(')')
                a = re.sub(r'0x[0-9a-f]{5,}|\b\d{4,}\b', 'N', a)
                a = re.sub(r'\bCAP_[A-Z_]+|0x[0-9a-f]+ /\* CAP_\?\?\? \*/', 'CAP', a)
                a = re.sub(r', tls=N.*|, ptid=.*', '', a)
                args[a[:120]] += 1
print('calls after the drop began:', ' '.join(sorted(seen)))
print('NOT ALLOWED by RunnerProfile:', ' '.join(sorted(set(seen) - allowed)) or 'none')
print('arguments of the conditionally allowed calls:')
for a in sorted(args):
    print(f'{args[a]:6d} {a}')
PY

echo "== strace of the engine's unit tests (runners are the test binary run with \"runner\")"
CGO_ENABLED=0 $GO test -c -o "$TMP/engine.test" ./pkg/engine/
(cd pkg/engine && strace -f -qq -s 64 -o "$TMP/trace.engine" "$TMP/engine.test" -test.count=1 -test.timeout=20m >"$TMP/engine.out" 2>&1) ||
	{ tail -30 "$TMP/engine.out"; echo "engine tests failed under strace" >&2; }

echo "== strace of the runner binary driven directly"
mkdir -p "$TMP/drv" "$TMP/root" "$TMP/cache"
cat >"$TMP/drv/go.mod" <<'GOMOD'
module drv

go 1.22
GOMOD
cat >"$TMP/drv/main.go" <<'GOSRC'
// Drives a runner binary over its control (fd 3) and status (fd 4) pipes.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

func run(bin, cfg string, during func(), sig syscall.Signal) {
	cr, cw, _ := os.Pipe()
	sr, sw, _ := os.Pipe()
	cmd := exec.Command(bin, "runner")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{cr, sw}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	cr.Close()
	sw.Close()
	fmt.Fprintln(cw, cfg)
	line, _ := bufio.NewReader(sr).ReadString('\n')
	fmt.Printf("status: %s", line)
	cw.Write([]byte{1})
	during()
	cmd.Process.Signal(sig)
	fmt.Println("exit:", cmd.Wait())
}

func sleep(d time.Duration) func() { return func() { time.Sleep(d) } }

func load(urls ...string) func() {
	return func() {
		time.Sleep(2 * time.Second)
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				u := urls[i%len(urls)]
				var r *http.Response
				var err error
				if i%3 == 0 {
					r, err = http.Post(u, "text/plain", strings.NewReader(strings.Repeat("x", 4000)))
				} else {
					r, err = http.Get(u)
				}
				if err != nil {
					fmt.Println(err)
					return
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}(i)
		}
		wg.Wait()
		time.Sleep(1500 * time.Millisecond) // idle
	}
}

func main() {
	bin, build, root, cache := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	mod := func(name, args, extra string) string {
		return fmt.Sprintf(`{"id":"x","module":{"guestPath":"/%s","hostPath":"%s/%s"},"args":["%s"%s],"rootfs":%q,"memoryPages":1000,"noIsolation":true%s}`,
			name, build, name, name, args, root, extra)
	}
	run(bin, `{"id":"sb","sandbox":true,"noIsolation":true}`, sleep(500*time.Millisecond), syscall.SIGTERM)
	run(bin, mod("testprog.wasm", `,"sleep","5"`, ""), sleep(700*time.Millisecond), syscall.SIGTERM)
	run(bin, mod("testprog.wasm", `,"sleep","5"`, ""), sleep(700*time.Millisecond), syscall.SIGKILL)
	run(bin, mod("testprog.wasm", `,"grow","200"`, ""), sleep(3*time.Second), syscall.SIGTERM)
	interp := fmt.Sprintf(`,"coldStart":"interpret","cacheDir":%q`, cache)
	run(bin, mod("testprog.wasm", `,"write","/f","hello"`, interp), sleep(time.Second), syscall.SIGTERM)
	run(bin, mod("testprog.wasm", `,"grow","40"`, interp), sleep(3*time.Second), syscall.SIGTERM)
	compile := fmt.Sprintf(`,"coldStart":"compile","cacheDir":%q`, cache)
	run(bin, mod("testprog.wasm", `,"grow","40"`, compile), sleep(3*time.Second), syscall.SIGTERM)
	run(bin, mod("testprog.wasm", `,"grow","40"`, compile), sleep(3*time.Second), syscall.SIGTERM) // cache hit
	run(bin, mod("wagi.wasm", "", `,"memoryLimit":536870912,"wagi":{"listen":[{"host":"127.0.0.1","port":18081},{"host":"::1","port":18082}],"concurrency":8,"timeout":10000000000,"maxBody":65536}`),
		load("http://127.0.0.1:18081/count", "http://[::1]:18082/sleep?50"), syscall.SIGTERM)
	run(bin, strings.Replace(mod("httpserver.wasm", "", `,"env":["WAZERO_LISTEN=127.0.0.1:18083"],"listen":[{"host":"127.0.0.1","port":18083}]`), `"memoryPages":1000`, `"memoryPages":4000`, 1),
		load("http://127.0.0.1:18083/hello"), syscall.SIGTERM)
}
GOSRC
(cd "$TMP/drv" && CGO_ENABLED=0 $GO build -o drv .)
strace -f -qq -s 64 -o "$TMP/trace.drv" "$TMP/drv/drv" "$TMP/runner.$($GO env GOARCH)" "$PWD/testdata/build" "$TMP/root" "$TMP/cache" >"$TMP/drv.out" 2>&1 ||
	{ cat "$TMP/drv.out"; echo "driving the runner failed" >&2; }
grep -c '^status' "$TMP/drv.out" | sed 's/^/runners driven: /'

python3 "$TMP/analyze.py" pkg/seccomp/runner.go "$TMP/trace.engine" "$TMP/trace.drv"
