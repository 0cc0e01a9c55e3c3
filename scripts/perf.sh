#!/usr/bin/env bash
# Measurements behind docs/PERFORMANCE.md: A/B comparisons of shim builds ("variants") on one private
# containerd v2.4.2, interleaved round by round. A variant is a directory holding
# containerd-shim-wazero-v1 (and, when it has one, containerd-shim-wazero-v1-runner); containers use
# it through `ctr run --runtime DIR/containerd-shim-wazero-v1`. Run as root, after make build testdata.
#
#   scripts/perf.sh build REV DIR         build git revision REV (a commit, a branch, or "." for the
#                                         working tree) into DIR, the way make build does
#   scripts/perf.sh mem N ROUNDS DIR...   N idle containers (4 started at a time) per variant and round;
#                                         after AT seconds (default 3; AT="3 60" reads twice) prints the
#                                         PSS, anonymous and file PSS per container of the shims and of
#                                         their descendants (runners), from /proc/PID/smaps_rollup
#   scripts/perf.sh cpu ROUNDS K LABEL=CTRARGS...
#                                         K ctr invocations in a row per label and round; CPU ms per
#                                         invocation of containerd itself, of what it started (shims,
#                                         start/delete actions, runners until they join their cgroup),
#                                         of the containers (cgroup /wzperf) and of ctr; and wall time
#   scripts/perf.sh timeline ROUNDS LABEL=CTRARGS...
#                                         one traced ctr invocation per label and round (perf sched
#                                         tracepoints: exec, exit, fork); median ms of its phases
#
#   PERF_DIR=DIR scripts/perf.sh stop    stop a daemon kept with PERF_KEEP=1 and remove DIR
#
# CTRARGS are ctr arguments after `-n wzperf`; @ID@ becomes a unique container id. Settings (environment):
# IMG and ARGS (mem: image and args, default wasmtest and /testprog.wasm sleep 3600), CTR_FLAGS (mem:
# extra ctr run flags; $PORT in them is a distinct port per container), PERF_KEEP=1 keeps the daemon
# and its directory (printed) for another command with PERF_DIR=that directory.
# Images in namespace wzperf: wasmtest, wasm-hello, wasm-hello-go, native-hello, pause, wasm-cpubench.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

V=$WZ_BENCH_CONTAINERD
NS=wzperf
log() { printf 'perf.sh: %s\n' "$*" >&2; }
CG=/sys/fs/cgroup/cpuacct

cmd_build() {
	local rev=$1 dir=$2 src
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ "$rev" = . ]; then
		src=$PWD
	else
		src=$(mktemp -d)
		git archive "$rev" | tar -x -C "$src"
	fi
	(
		cd "$src"
		stamp=$(scripts/buildstamp.sh 2>/dev/null || true)
		pkgs=./cmd/containerd-shim-wazero-v1
		[ -d cmd/containerd-shim-wazero-v1-runner ] && pkgs="$pkgs ./cmd/containerd-shim-wazero-v1-runner"
		[ -d cmd/containerd-shim-wazero-v1-server ] && pkgs="$pkgs ./cmd/containerd-shim-wazero-v1-server"
		# shellcheck disable=SC2086
		CGO_ENABLED=0 go build -trimpath \
			-ldflags="-s -w -X github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine.BuildStamp=$stamp" \
			-o "$dir/" $pkgs
	)
	[ "$rev" = . ] || rm -rf "$src"
	ls -l "$dir"
}

# ---- the daemon ---------------------------------------------------------------------------------

E=
CGD=
CGC=
# cgroups: the daemon and everything it starts ($CGD), ctr invocations ($CGC); named after PERF_DIR.
cgroups() { CGD=$(basename "$PERF_DIR")-daemon; CGC=$(basename "$PERF_DIR")-ctr; }
start_daemon() {
	if [ -n "${PERF_DIR:-}" ]; then
		E=$PERF_DIR/containerd
		cgroups
		wz_pid_alive "$(cat "$E/containerd.pid")" || { log "no daemon under $PERF_DIR"; exit 1; }
		trap stop_daemon EXIT
		return
	fi
	PERF_DIR=$(mktemp -d /tmp/wzperf.XXXXXX)
	E=$PERF_DIR/containerd
	cgroups
	export CONTAINERD_SHIM_WAZERO_CACHE_DIR=$PERF_DIR/cache
	wz_start_containerd "$E" "$V" "$PWD/bin"
	local t
	for t in testdata/build/images/{wasmtest,hello,hello-go,native-hello,pause}.tar; do
		wz_ctr "$E" -n $NS images import --all-platforms "$t" >/dev/null 2>&1
	done
	testdata/build/wasmimg -o "$PERF_DIR/cpubench.tar" -name docker.io/library/wasm-cpubench:latest \
		-entrypoint /cpubench.wasm testdata/build/cpubench.wasm
	wz_ctr "$E" -n $NS images import --all-platforms "$PERF_DIR/cpubench.tar" >/dev/null 2>&1
	# cpuacct cgroups: the daemon and everything it starts; ctr invocations. Containers go to /$NS.
	mkdir -p "$CG/$CGD" "$CG/$CGC"
	cat "$E/containerd.pid" >"$CG/$CGD/cgroup.procs"
	trap stop_daemon EXIT
}

stop_daemon() {
	local d
	if [ "${PERF_KEEP:-}" = 1 ]; then
		log "kept: PERF_DIR=$PERF_DIR (daemon pid $(cat "$E/containerd.pid"))"
		return
	fi
	wz_cleanup "$E"
	for d in "$CG/$CGD" "$CG/$CGC" "$CG/$NS" /sys/fs/cgroup/*/"$NS"; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	rm -rf "$PERF_DIR"
}

CTR=$(wz_bin $V)/ctr

# ---- mem ----------------------------------------------------------------------------------------

# pss EXE N: shims (processes running EXE that are not runners) and all their descendants, per
# container (N of them).
pss() {
	python3 - "$1" "$2" <<'PY'
import os, sys
exe, n = sys.argv[1], int(sys.argv[2])
# The shim's server runs from the server binary beside the entry, when the shim has one.
exes = {exe, os.path.join(os.path.dirname(exe), 'containerd-shim-wazero-v1-server')}
ppid, roots = {}, []
for d in os.listdir('/proc'):
    if not d.isdigit():
        continue
    try:
        st = open(f'/proc/{d}/stat').read()
        ppid[int(d)] = int(st[st.rindex(')') + 2:].split()[1])
        argv = open(f'/proc/{d}/cmdline', 'rb').read().split(b'\0')
        if os.readlink(f'/proc/{d}/exe').replace(' (deleted)', '') in exes and argv[1:2] != [b'runner']:
            roots.append(int(d))
    except (OSError, IndexError, ValueError):
        pass
tree, changed = set(roots), True
while changed:
    changed = False
    for p, q in ppid.items():
        if p not in tree and q in tree:
            tree.add(p)
            changed = True
sums = {'shim': [0, 0, 0], 'runner': [0, 0, 0]}
for p in tree:
    v = {}
    for l in open(f'/proc/{p}/smaps_rollup'):
        f = l.split()
        v[f[0]] = f[1]
    s = sums['shim' if p in roots else 'runner']
    s[0] += int(v['Pss:']); s[1] += int(v['Pss_Anon:']); s[2] += int(v['Pss_File:'])
m = lambda kb: f'{kb / n / 1024:.2f}'
s, r = sums['shim'], sums['runner']
print(f'shims={len(roots)} descendants={len(tree) - len(roots)} per container (MiB): PSS={m(s[0] + r[0])}'
      f' | shim pss={m(s[0])} anon={m(s[1])} file={m(s[2])} | runner pss={m(r[0])} anon={m(r[1])} file={m(r[2])}')
PY
}

cmd_mem() {
	local n=$1 rounds=$2 r d vi id i at prev
	shift 2
	local img=${IMG:-docker.io/library/wasmtest:latest} args=${ARGS:-/testprog.wasm sleep 3600}
	for r in $(seq "$rounds"); do
		vi=0
		for d in "$@"; do
			d=$(cd "$d" && pwd)
			vi=$((vi + 1))
			for i in $(seq "$n"); do echo "m$r-$vi-$i"; done |
				xargs -P4 -I{} bash -c 'id={}; PORT=$((20000 + '"$vi"' * 1000 + ${id##*-})); '"$CTR --address $E/containerd.sock -n $NS run -d ${CTR_FLAGS:-} --runtime $d/containerd-shim-wazero-v1 $img"' $id '"$args"' >/dev/null 2>&1 || echo "perf.sh: start $id failed" >&2'
			prev=0
			for at in ${AT:-3}; do
				sleep $((at - prev))
				prev=$at
				echo "round $r $(basename "$d") N=$n at ${at}s: $(pss "$d/containerd-shim-wazero-v1" "$n")"
			done
			for i in $(seq "$n"); do echo "m$r-$vi-$i"; done |
				xargs -P4 -I{} bash -c "c='$CTR --address $E/containerd.sock -n $NS'; \$c task kill -s KILL {} >/dev/null 2>&1; sleep 0.3; \$c task rm -f {} >/dev/null 2>&1; \$c c rm {} >/dev/null 2>&1"
		done
	done
}

# ---- cpu ----------------------------------------------------------------------------------------

cmd_cpu() {
	local rounds=$1 k=$2 r i j spec label args d0 d1 c0 c1 x0 x1 o0 o1 s e cpid
	shift 2
	cpid=$(cat "$E/containerd.pid")
	u() { cat "$CG/$1/cpuacct.usage" 2>/dev/null || echo 0; }
	own() { local f; read -r -a f <"/proc/$cpid/stat"; echo $(((f[13] + f[14]) * 10000000)); } # ns, 100 Hz ticks
	for r in $(seq "$rounds"); do
		i=0
		for spec in "$@"; do
			i=$((i + 1))
			label=${spec%%=*}
			d0=$(u "$CGD"); c0=$(u $NS); x0=$(u "$CGC"); o0=$(own); s=$EPOCHREALTIME
			for j in $(seq "$k"); do
				args=${spec#*=}
				args=${args//@ID@/c$r-$i-$j}
				bash -c "echo \$\$ >$CG/$CGC/cgroup.procs; exec $CTR --address $E/containerd.sock -n $NS $args" >/dev/null 2>&1 ||
					log "$label: ctr $args failed"
			done
			e=$EPOCHREALTIME
			sleep 0.5
			d1=$(u "$CGD"); c1=$(u $NS); x1=$(u "$CGC"); o1=$(own)
			python3 -c "
k = $k
own, started = ($o1 - $o0) / 1e6 / k, ($d1 - $d0) / 1e6 / k
cont, ctr, wall = ($c1 - $c0) / 1e6 / k, ($x1 - $x0) / 1e6 / k, (${e/./} - ${s/./}) / 1e3 / k
print(f'round $r {\"$label\":10s} containerd={own:5.1f} shim-side={started - own:5.1f} containers={cont:5.1f} ctr={ctr:5.1f} total={started + cont + ctr:6.1f} wall={wall:6.1f} (ms per run)')"
		done
	done
}

# ---- timeline -----------------------------------------------------------------------------------

# timeline1 CTRARGS: phases of one traced ctr invocation, as KEY=MS words.
timeline1() {
	local data
	data=$(mktemp)
	perf record -q -e sched:sched_process_exec,sched:sched_process_exit,sched:sched_process_fork -a -o "$data" -- \
		bash -c "sleep 0.1; $CTR --address $E/containerd.sock -n $NS $* >/dev/null 2>&1; sleep 0.3" 2>/dev/null
	perf script -F comm,pid,tid,time,event,trace -i "$data" 2>/dev/null | python3 -c '
import sys, re
cpid = int(sys.argv[1])
tree, root, evs = {cpid}, False, []
for l in sys.stdin:
    m = re.match(r"\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+sched:(\w+):\s+(.*)", l)
    if not m:
        continue
    comm, pid, tid, ts, ev, rest = m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)) * 1000, m.group(5), m.group(6)
    if ev == "sched_process_exec" and not root and rest.startswith("filename=/usr/bin/bash"):
        tree.add(pid); root = True
    if ev == "sched_process_fork":
        if pid in tree:
            tree.add(int(re.search(r"child_pid=(\d+)", rest).group(1)))
        continue
    if pid not in tree or (ev == "sched_process_exit" and tid != pid):
        continue
    evs.append((ts, ev, pid, re.search(r"filename=(\S+)", rest).group(1) if ev == "sched_process_exec" else ""))
execs = [e for e in evs if e[1] == "sched_process_exec"]
ex = {e[2]: e[0] for e in evs if e[1] == "sched_process_exit"}
ctr = [e for e in execs if e[3].endswith("/ctr")][0]
shims = [e for e in execs if "containerd-shim" in e[3] and not e[3].endswith("-runner")]
runners = [e for e in execs if e[3].startswith("/proc/self/") or e[3].endswith("-runner")]
pids = {e[2] for e in shims + runners}
last = max(ex[p] for p in pids if p in ex)
out = dict(total=ex[ctr[2]] - ctr[0], pre=shims[0][0] - ctr[0], task=last - shims[0][0], post=ex[ctr[2]] - last)
if len(shims) >= 3 and runners and all(p in ex for p in pids):
    st, srv, dl, r = shims[0], shims[1], shims[-1], runners[0]
    out.update(start=srv[0] - st[0], server_to_runner=r[0] - srv[0], runner=ex[r[2]] - r[0],
               runner_exit_to_server_exit=ex[srv[2]] - ex[r[2]], delete=ex[dl[2]] - dl[0])
print(" ".join(f"{k}={v:.1f}" for k, v in out.items()))
' "$(cat "$E/containerd.pid")"
	rm -f "$data"
}

cmd_timeline() {
	local rounds=$1 r i spec args tmp
	shift
	tmp=$(mktemp)
	for r in $(seq "$rounds"); do
		i=0
		for spec in "$@"; do
			i=$((i + 1))
			args=${spec#*=}
			echo "${spec%%=*} $(timeline1 "${args//@ID@/t$r-$i}")" >>"$tmp"
		done
	done
	python3 - "$tmp" <<'PY'
import sys, statistics, collections
d, order = collections.defaultdict(lambda: collections.defaultdict(list)), []
for l in open(sys.argv[1]):
    f = l.split()
    if f[0] not in order:
        order.append(f[0])
    for kv in f[1:]:
        k, v = kv.split('=')
        d[f[0]][k].append(float(v))
for lab in order:
    print(f'{lab}: ' + '  '.join(f'{k}={statistics.median(v):.1f} [{min(v):.0f}-{max(v):.0f}]' for k, v in d[lab].items())
          + f'  ms, median [min-max], n={len(d[lab]["total"])}')
PY
	rm -f "$tmp"
}

[ $# -ge 1 ] || { sed -n '2,32p' "$0" >&2; exit 2; }
cmd=$1
shift
case $cmd in
build) cmd_build "$@" ;;
mem | cpu | timeline)
	[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
	start_daemon
	"cmd_$cmd" "$@"
	;;
stop)
	[ -n "${PERF_DIR:-}" ] || { log "stop needs PERF_DIR"; exit 2; }
	E=$PERF_DIR/containerd
	cgroups
	PERF_KEEP=
	stop_daemon
	;;
*) sed -n '2,32p' "$0" >&2; exit 2 ;;
esac
