# shellcheck shell=bash
# Helpers to run a private containerd daemon whose every path lives under one directory E.
# Source it:   . scripts/lib.sh
#
#   wz_start_containerd E VERSION [SHIM_DIR]   start containerd VERSION (e.g. v2.4.2) under E; waits until ready
#   wz_ctr E [ctr args...]                     run that version's ctr against the daemon under E
#   wz_stop_containerd E                       SIGTERM the daemon by PID, wait, SIGKILL if needed
#   wz_cleanup E                               stop daemon, kill leftover shims, unmount under E, rm -rf E
#   wz_write_config E VERSION                  (used by start) write E/config.toml for VERSION
#
# Binaries come from $TOOLS/containerd-VERSION/bin (see scripts/install-deps.sh), except v1.6.20, which
# is Debian's apt package `containerd` in /usr/bin. The daemon's PATH is SHIM_DIR, then that directory,
# then $PATH without any $TOOLS directory: it finds containerd-shim-wazero-v1 and the runc shim of the
# same version (1.6 never picks a 2.x runc shim from $TOOLS). SHIM_DIR defaults to the repository's bin/.
#
# Per-version differences live in the configuration templates, scripts/containerd-config (its README):
# containerd >= 2.3 gets the shim manager's socket_dir, 1.x a `version = 2` config.

# shellcheck source=scripts/versions.sh
. "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

: "${TOOLS:=/var/tmp/wazero-shim-tools}"
WZ_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WZ_SANDBOX_IMAGE=${WZ_SANDBOX_IMAGE:-registry.k8s.io/pause:3.10.2}

wz_log() { printf '[lib] %s\n' "$*" >&2; }

# wz_bin VERSION: directory with containerd, ctr and containerd-shim-runc-v2 of VERSION.
# The releases in WZ_CONTAINERD_SYSTEM (scripts/versions.sh; Debian 12's apt `containerd`, installed
# by scripts/install-deps.sh) are in /usr/bin, the others built under $TOOLS.
wz_bin() {
	case " $WZ_CONTAINERD_SYSTEM " in
	*" $1 "*) printf '/usr/bin' ;;
	*) printf '%s/containerd-%s/bin' "$TOOLS" "$1" ;;
	esac
}

# wz_major VERSION: the major version number (1 for v1.6.20).
wz_major() {
	local v=${1#v}
	printf '%s' "${v%%.*}"
}

# wz_path BIN: PATH for a daemon whose own binaries are in BIN (after SHIM_DIR, see wz_start_containerd):
# BIN, then $PATH without any directory under $TOOLS, then the sbin directories.
wz_path() {
	local out=$1 p IFS=:
	for p in $PATH /usr/local/sbin /usr/sbin /sbin; do
		case $p in "" | "${TOOLS%/}" | "${TOOLS%/}"/*) continue ;; esac
		out=$out:$p
	done
	printf '%s' "$out"
}

# wz_has_socket_dir VERSION: true if the daemon supports the shim manager's socket_dir (>= 2.3).
wz_has_socket_dir() {
	local v=${1#v} major minor
	major=${v%%.*}
	minor=${v#*.}
	minor=${minor%%.*}
	[ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 3 ]; }
}

# wz_write_config E VERSION: E/config.toml from scripts/containerd-config/v3.toml (containerd 2.x) or
# v2.toml (1.x), the templates integration/testenv fills in for the Go suites too (see their README).
wz_write_config() {
	local E=$1 V=$2 socket_dir_line="" tmpl=v3.toml
	if wz_has_socket_dir "$V"; then
		socket_dir_line="socket_dir = \"$E/s\""
	fi
	if [ "$(wz_major "$V")" -lt 2 ]; then
		tmpl=v2.toml
	fi
	mkdir -p "$E/root" "$E/state" "$E/opt" "$E/s" "$E/cni" "$E/fifo"
	wz_render_config "$WZ_REPO/scripts/containerd-config/$tmpl" "$V" "$E" "$socket_dir_line" \
		"$WZ_SANDBOX_IMAGE" io.containerd.wazero.v1 /usr/lib/cni "$E/cni" >"$E/config.toml"
}

# wz_render_config TEMPLATE VERSION E SOCKET_DIR_LINE SANDBOX_IMAGE RUNTIME_TYPE CNI_BIN CNI_CONF:
# the template with its @PLACEHOLDERS@ replaced, on stdout (values hold no '|', '&' or '\').
wz_render_config() {
	sed -e "s|@VERSION@|$2|g" -e "s|@E@|$3|g" -e "s|@SOCKET_DIR_LINE@|$4|g" -e "s|@SANDBOX_IMAGE@|$5|g" \
		-e "s|@RUNTIME_TYPE@|$6|g" -e "s|@CNI_BIN@|$7|g" -e "s|@CNI_CONF@|$8|g" "$1"
}

# wz_ctr E [args...]: ctr of the daemon's version against the daemon under E.
wz_ctr() {
	local E=$1
	shift
	"$(wz_bin "$(cat "$E/version")")/ctr" --address "$E/containerd.sock" "$@"
}

# wz_pid_alive PID: running and not a zombie.
wz_pid_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

wz_start_containerd() {
	local E=$1 V=$2 SHIM_DIR=${3:-$WZ_REPO/bin} bin pid i
	bin=$(wz_bin "$V")
	for b in containerd ctr containerd-shim-runc-v2; do
		[ -x "$bin/$b" ] || { wz_log "missing $bin/$b (run scripts/install-deps.sh)"; return 1; }
	done
	[ -x "$SHIM_DIR/containerd-shim-wazero-v1" ] || wz_log "warning: no $SHIM_DIR/containerd-shim-wazero-v1 (make build)"
	mkdir -p "$E"
	echo "$V" >"$E/version"
	wz_write_config "$E" "$V"
	PATH="$SHIM_DIR:$(wz_path "$bin")" \
		"$bin/containerd" --config "$E/config.toml" >"$E/containerd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$E/containerd.pid"
	for i in $(seq 150); do
		if ! wz_pid_alive "$pid"; then
			wz_log "containerd $V exited during startup; log tail:"
			tail -n 30 "$E/containerd.log" >&2
			return 1
		fi
		if [ -S "$E/containerd.sock" ] && wz_ctr "$E" version >/dev/null 2>&1; then
			wz_log "containerd $V ready (pid $pid, dir $E, after ~$((i / 10)).$((i % 10))s)"
			if grep -q 'Ignoring unknown key' "$E/containerd.log"; then
				wz_log "warning: containerd $V ignored config keys:"
				grep 'Ignoring unknown key' "$E/containerd.log" >&2
			fi
			return 0
		fi
		sleep 0.1
	done
	wz_log "containerd $V did not answer within 15s; log tail:"
	tail -n 30 "$E/containerd.log" >&2
	return 1
}

wz_stop_containerd() {
	local E=$1 pid i
	[ -f "$E/containerd.pid" ] || return 0
	pid=$(cat "$E/containerd.pid")
	# Only signal the PID if it is still our daemon (guards against PID reuse).
	if wz_pid_alive "$pid" && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$E/config.toml"; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 100); do
			wz_pid_alive "$pid" || break
			sleep 0.1
		done
		if wz_pid_alive "$pid"; then
			wz_log "containerd (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true # reap if it is our child
	rm -f "$E/containerd.pid"
}

# wz_kill_shims E: SIGKILL leftover shim processes of the daemon under E (and their children, which
# inherit the shim's environment): matched by the daemon's socket in their command line or environment.
wz_kill_shims() {
	local E=$1 p n=0 shims=" " ppid
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		if { tr '\0' '\n' <"/proc/$p/cmdline"; } 2>/dev/null | grep -qxF -- "$E/containerd.sock" ||
			{ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qE -- "^(GRPC|TTRPC)_ADDRESS=$E/containerd\.sock"; then
			shims="$shims$p "
		fi
	done
	# A shim's runners (and background compiles) have an environment of their own and outlive a
	# killed shim (they are reparented): kill the children of those shims first.
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		# The parent pid follows the command name, which may hold spaces: read after the last ')'.
		ppid=$(sed -E 's/^.*\) [A-Za-z] ([0-9]+) .*$/\1/' "/proc/$p/stat" 2>/dev/null) || continue
		case "$shims" in *" $ppid "*) kill -KILL "$p" 2>/dev/null && n=$((n + 1)) ;; esac
	done
	for p in $shims; do
		kill -KILL "$p" 2>/dev/null && n=$((n + 1))
	done
	[ "$n" -eq 0 ] || { wz_log "killed $n leftover shim process(es) of $E and their runners"; sleep 0.2; }
}

# wz_unmount_under DIR: unmount every mount at or below DIR, deepest first.
wz_unmount_under() {
	local D m
	D=$(readlink -f "$1")
	# mountinfo field 5 is the mount point (octal-escaped; our paths have no spaces).
	awk -v d="$D" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || wz_log "could not unmount $m"
	done
}

# wz_cleanup E: stop the daemon, kill leftover shims, unmount everything below E, remove E.
wz_cleanup() {
	local E=$1
	[ -n "$E" ] && [ "$E" != / ] || return 0
	[ -d "$E" ] || return 0
	wz_stop_containerd "$E"
	wz_kill_shims "$E"
	wz_unmount_under "$E"
	rm -rf "$E" 2>/dev/null || { sleep 0.5; wz_unmount_under "$E"; rm -rf "$E"; }
}

# wz_rm_cgroups NS ID...: remove the (empty) cgroup directories ctr created at /<NS>/<ID>, then /<NS>
# if empty (cgroup v1 controllers and v2).
wz_rm_cgroups() {
	local ns=$1 d id
	shift
	for d in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
		[ -d "$d" ] || continue
		for id in "$@"; do
			[ -d "$d/$id" ] && rmdir "$d/$id" 2>/dev/null
		done
		rmdir "$d" 2>/dev/null || true
	done
	return 0
}
