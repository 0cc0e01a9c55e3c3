// wasicompat.c: one check per WASI preview 1 behaviour where the shim's WASI layer (pkg/wasi)
// differs from wazero v1.12 to behave as wasmtime does (docs/WASI.md). argv[1] names the check,
// argv[2] a writable directory (a bind mount) to work in. Prints "ok CHECK" and exits 0 when the
// behaviour is right; otherwise prints what was wrong on stderr and exits 1. Some checks leave
// files for the test to inspect from the host.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

static const char *dir;

// path is dir/name, in a static buffer per call site slot.
static const char *path(const char *name) {
	static char bufs[4][512];
	static int n;
	char *b = bufs[n++ % 4];
	snprintf(b, 512, "%s/%s", dir, name);
	return b;
}

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)

static int open_or_die(const char *p, int flags) {
	int fd = open(p, flags, 0644);
	CHECK(fd >= 0, "open %s: %s", p, strerror(errno));
	return fd;
}

// renumber-stdout: a file renumbered onto stdout receives what the program prints (dup2,
// freopen), and the old number is closed.
static void renumber_stdout(void) {
	int fd = open_or_die(path("stdout.txt"), O_WRONLY | O_CREAT | O_TRUNC);
	__wasi_errno_t e = __wasi_fd_renumber(fd, 1);
	CHECK(e == 0, "fd_renumber(%d, 1) = %d, want 0", fd, e);
	__wasi_fdstat_t st;
	CHECK(__wasi_fd_fdstat_get(fd, &st) == __WASI_ERRNO_BADF, "fd %d still open after renumber", fd);
	printf("to the file through stdout\n");
	fflush(stdout);
	// stdout is the file now: say ok on stderr.
	fprintf(stderr, "ok renumber-stdout\n");
}

// renumber-preopen: a directory renumbered onto the preopened directory's number works there.
static void renumber_preopen(void) {
	int pre = -1;
	for (int fd = 3; fd < 64; fd++) {
		__wasi_prestat_t ps;
		if (__wasi_fd_prestat_get(fd, &ps) != 0)
			break;
		char name[256] = {0};
		if (ps.u.dir.pr_name_len < sizeof name && __wasi_fd_prestat_dir_name(fd, (uint8_t *)name, ps.u.dir.pr_name_len) == 0 && strcmp(name, dir) == 0)
			pre = fd;
	}
	CHECK(pre >= 0, "no preopen named %s", dir);
	int sub = open_or_die(path("."), O_RDONLY | O_DIRECTORY);
	__wasi_filestat_t before, after;
	CHECK(__wasi_fd_filestat_get(sub, &before) == 0, "fd_filestat_get(%d)", sub);
	__wasi_errno_t e = __wasi_fd_renumber(sub, pre);
	CHECK(e == 0, "fd_renumber(%d, %d) onto the preopen = %d, want 0", sub, pre, e);
	CHECK(__wasi_fd_filestat_get(pre, &after) == 0, "fd_filestat_get(%d) after renumber", pre);
	CHECK(before.ino == after.ino && before.dev == after.dev, "fd %d is not the renumbered directory", pre);
	printf("ok renumber-preopen\n");
}

// renumber-closed: renumbering onto a number that is not open is EBADF, and leaves from open.
static void renumber_closed(void) {
	int fd = open_or_die(path("a.txt"), O_WRONLY | O_CREAT | O_TRUNC);
	__wasi_errno_t e = __wasi_fd_renumber(fd, 1000);
	CHECK(e == __WASI_ERRNO_BADF, "fd_renumber(%d, 1000) = %d, want EBADF (%d)", fd, e, __WASI_ERRNO_BADF);
	__wasi_fdstat_t st;
	CHECK(__wasi_fd_fdstat_get(fd, &st) == 0, "fd %d closed by a failed renumber", fd);
	printf("ok renumber-closed\n");
}

// poll-write: stdout subscribed for writing and a regular file for reading, with a 5 s clock: both
// are reported ready at once, and the clock is not.
static void poll_write(void) {
	close(open_or_die(path("r.txt"), O_WRONLY | O_CREAT | O_TRUNC));
	int rd = open_or_die(path("r.txt"), O_RDONLY);
	__wasi_subscription_t subs[3] = {0};
	subs[0].userdata = 1;
	subs[0].u.tag = __WASI_EVENTTYPE_FD_WRITE;
	subs[0].u.u.fd_write.file_descriptor = 1;
	subs[1].userdata = 2;
	subs[1].u.tag = __WASI_EVENTTYPE_CLOCK;
	subs[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
	subs[1].u.u.clock.timeout = 5000000000ull;
	subs[2].userdata = 3;
	subs[2].u.tag = __WASI_EVENTTYPE_FD_READ;
	subs[2].u.u.fd_read.file_descriptor = rd;
	__wasi_event_t ev[3];
	__wasi_size_t n = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	__wasi_errno_t e = __wasi_poll_oneoff(subs, ev, 3, &n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(e == 0, "poll_oneoff = %d, want 0", e);
	int write = 0, read = 0;
	for (__wasi_size_t i = 0; i < n; i++) {
		CHECK(ev[i].userdata != 2, "poll_oneoff reported the clock with descriptors ready");
		CHECK(ev[i].error == 0, "poll_oneoff: event %llu has error %d", (unsigned long long)ev[i].userdata, ev[i].error);
		write += ev[i].userdata == 1 && ev[i].type == __WASI_EVENTTYPE_FD_WRITE;
		read += ev[i].userdata == 3 && ev[i].type == __WASI_EVENTTYPE_FD_READ;
	}
	CHECK(n == 2 && write == 1 && read == 1, "poll_oneoff: %lu events, want stdout writable and the file readable",
	      (unsigned long)n);
	CHECK(t1.tv_sec - t0.tv_sec < 4, "poll_oneoff waited for the clock");
	printf("ok poll-write\n");
}

// symlink-times: utimensat with AT_SYMLINK_NOFOLLOW sets the link's times, not its target's
// (the test checks both on the host: link mtime 1000000000 s, target untouched).
static void symlink_times(void) {
	close(open_or_die(path("target"), O_WRONLY | O_CREAT | O_TRUNC));
	CHECK(symlink("target", path("link")) == 0, "symlink: %s", strerror(errno));
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = 1000000000}};
	CHECK(utimensat(AT_FDCWD, path("link"), ts, AT_SYMLINK_NOFOLLOW) == 0, "utimensat(link, NOFOLLOW): %s", strerror(errno));
	struct stat l, t;
	CHECK(lstat(path("link"), &l) == 0 && stat(path("target"), &t) == 0, "stat: %s", strerror(errno));
	CHECK(l.st_mtim.tv_sec == 1000000000, "link mtime %lld, want 1000000000", (long long)l.st_mtim.tv_sec);
	CHECK(t.st_mtim.tv_sec != 1000000000, "the target's mtime changed");
	printf("ok symlink-times\n");
}

// pwrite-append: pwrite on an O_APPEND file appends (as Linux), and leaves the offset alone (the
// test checks the file holds "abXYZ").
static void pwrite_append(void) {
	int fd = open_or_die(path("append.txt"), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
	CHECK(write(fd, "ab", 2) == 2, "write: %s", strerror(errno));
	ssize_t n = pwrite(fd, "XYZ", 3, 0);
	CHECK(n == 3, "pwrite on O_APPEND = %zd (%s), want 3", n, strerror(errno));
	off_t off = lseek(fd, 0, SEEK_CUR);
	CHECK(off == 2, "offset after pwrite %lld, want 2", (long long)off);
	close(fd);
	printf("ok pwrite-append\n");
}

// readlink-short: readlink into a buffer shorter than the target truncates it (no ERANGE).
static void readlink_short(void) {
	CHECK(symlink("0123456789", path("long-link")) == 0, "symlink: %s", strerror(errno));
	char buf[8] = "........";
	ssize_t n = readlink(path("long-link"), buf, 4);
	CHECK(n == 4, "readlink into 4 bytes = %zd (%s), want 4", n, strerror(errno));
	CHECK(memcmp(buf, "0123....", 8) == 0, "buffer %.8s, want 0123....", buf);
	printf("ok readlink-short\n");
}

// open-flags: fcntl(F_GETFL) tells how a file was opened (read-only, O_SYNC), and a file opened
// read-only cannot be written.
static void open_flags(void) {
	close(open_or_die(path("f.txt"), O_WRONLY | O_CREAT | O_TRUNC));
	int ro = open_or_die(path("f.txt"), O_RDONLY);
	int fl = fcntl(ro, F_GETFL);
	CHECK((fl & O_ACCMODE) == O_RDONLY, "F_GETFL of a read-only file: %#x, want O_RDONLY", fl);
	CHECK(write(ro, "x", 1) < 0, "wrote to a read-only file");
	int sync = open_or_die(path("f.txt"), O_WRONLY | O_SYNC);
	fl = fcntl(sync, F_GETFL);
	CHECK((fl & O_SYNC) == O_SYNC, "F_GETFL of an O_SYNC file: %#x, no O_SYNC", fl);
	CHECK((fl & O_ACCMODE) == O_WRONLY, "F_GETFL of a write-only file: %#x, want O_WRONLY", fl);
	printf("ok open-flags\n");
}

// rights: dropped rights are reported, enforced, and cannot come back; a directory has no size
// right.
static void rights(void) {
	int fd = open_or_die(path("r.txt"), O_RDWR | O_CREAT | O_TRUNC);
	__wasi_fdstat_t st;
	CHECK(__wasi_fd_fdstat_get(fd, &st) == 0, "fd_fdstat_get");
	__wasi_rights_t all = st.fs_rights_base;
	CHECK(all & __WASI_RIGHTS_FD_WRITE, "a file opened O_RDWR lacks FD_WRITE");
	__wasi_errno_t e = __wasi_fd_fdstat_set_rights(fd, all & ~__WASI_RIGHTS_FD_WRITE, st.fs_rights_inheriting);
	CHECK(e == 0, "fd_fdstat_set_rights (drop FD_WRITE) = %d", e);
	CHECK(__wasi_fd_fdstat_get(fd, &st) == 0 && !(st.fs_rights_base & __WASI_RIGHTS_FD_WRITE), "FD_WRITE still reported");
	ssize_t w = write(fd, "x", 1);
	// wasi-libc reports ENOTCAPABLE from fd_write as EBADF, as POSIX does for a read-only fd.
	CHECK(w < 0 && (errno == EBADF || errno == ENOTCAPABLE), "write without FD_WRITE = %zd (%s), want EBADF", w, strerror(errno));
	e = __wasi_fd_fdstat_set_rights(fd, all, st.fs_rights_inheriting);
	CHECK(e == __WASI_ERRNO_NOTCAPABLE, "fd_fdstat_set_rights (add FD_WRITE back) = %d, want ENOTCAPABLE", e);
	int d = open_or_die(dir, O_RDONLY | O_DIRECTORY);
	CHECK(__wasi_fd_fdstat_get(d, &st) == 0, "fd_fdstat_get(dir)");
	CHECK(!(st.fs_rights_base & __WASI_RIGHTS_FD_FILESTAT_SET_SIZE), "a directory has FD_FILESTAT_SET_SIZE");
	e = __wasi_fd_allocate(d, 0, 1);
	CHECK(e != 0, "fd_allocate on a directory succeeded");
	printf("ok rights\n");
}

// prestat-name: fd_prestat_dir_name with a buffer shorter than the name fails; one longer works.
static void prestat_name(void) {
	__wasi_prestat_t ps;
	CHECK(__wasi_fd_prestat_get(3, &ps) == 0, "fd 3 is no preopen");
	uint8_t name[256];
	__wasi_size_t len = ps.u.dir.pr_name_len;
	CHECK(len > 0 && len < sizeof name - 1, "name length %lu", (unsigned long)len);
	CHECK(__wasi_fd_prestat_dir_name(3, name, len - 1) != 0, "a short buffer was accepted");
	CHECK(__wasi_fd_prestat_dir_name(3, name, len + 1) == 0, "a long buffer was refused");
	printf("ok prestat-name\n");
}

// link-follow: path_link with LOOKUPFLAGS_SYMLINK_FOLLOW is EINVAL (no link is made).
static void link_follow(void) {
	int d = open_or_die(dir, O_RDONLY | O_DIRECTORY);
	close(open_or_die(path("src"), O_WRONLY | O_CREAT | O_TRUNC));
	__wasi_errno_t e = __wasi_path_link(d, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "src", d, "dst");
	CHECK(e == __WASI_ERRNO_INVAL, "path_link with SYMLINK_FOLLOW = %d, want EINVAL (%d)", e, __WASI_ERRNO_INVAL);
	struct stat s;
	CHECK(stat(path("dst"), &s) < 0, "a link was made");
	printf("ok link-follow\n");
}

// shutdown-notsock: shutdown of a descriptor that is no socket is ENOTSOCK.
static void shutdown_notsock(void) {
	CHECK(shutdown(1, SHUT_RD) < 0 && errno == ENOTSOCK, "shutdown(stdout): %s, want ENOTSOCK", strerror(errno));
	printf("ok shutdown-notsock\n");
}

// no-root: run with the root preopen left out (annotation io.containerd.wazero.v1.root-preopen=false),
// the bind mount DIR is the only preopen, at descriptor 3; the rootfs (this module's own file)
// is out of reach, and descriptor 4 is not open.
static void no_root(void) {
	__wasi_prestat_t ps;
	char name[256];
	for (int fd = 3; fd < 64; fd++) {
		if (__wasi_fd_prestat_get(fd, &ps) != 0)
			continue;
		CHECK(ps.u.dir.pr_name_len < sizeof name, "fd %d: name length %lu", fd, (unsigned long)ps.u.dir.pr_name_len);
		CHECK(__wasi_fd_prestat_dir_name(fd, (uint8_t *)name, ps.u.dir.pr_name_len) == 0, "fd %d: no name", fd);
		name[ps.u.dir.pr_name_len] = 0;
		CHECK(fd == 3 && strcmp(name, dir) == 0, "preopen %s at fd %d, want only %s at 3", name, fd, dir);
	}
	CHECK(__wasi_fd_prestat_get(3, &ps) == 0, "fd 3 is no preopen");
	CHECK(open("/wasicompat.wasm", O_RDONLY) < 0, "the rootfs is reachable: /wasicompat.wasm opened");
	CHECK(shutdown(4, SHUT_RD) < 0 && errno == EBADF, "shutdown(4): %s, want EBADF (nothing open)", strerror(errno));
	close(open_or_die(path("made"), O_WRONLY | O_CREAT | O_TRUNC));
	printf("ok no-root\n");
}

int main(int argc, char **argv) {
	static const struct {
		const char *name;
		void (*fn)(void);
	} checks[] = {
		{"renumber-stdout", renumber_stdout}, {"renumber-preopen", renumber_preopen},
		{"renumber-closed", renumber_closed}, {"poll-write", poll_write},
		{"symlink-times", symlink_times}, {"pwrite-append", pwrite_append},
		{"readlink-short", readlink_short}, {"open-flags", open_flags},
		{"rights", rights}, {"prestat-name", prestat_name},
		{"link-follow", link_follow}, {"shutdown-notsock", shutdown_notsock},
		{"no-root", no_root},
	};
	if (argc == 3) {
		dir = argv[2];
		for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
			if (strcmp(argv[1], checks[i].name) == 0) {
				checks[i].fn();
				return 0;
			}
		}
	}
	fprintf(stderr, "usage: wasicompat CHECK DIR; checks:");
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
		fprintf(stderr, " %s", checks[i].name);
	fputc('\n', stderr);
	return 2;
}
