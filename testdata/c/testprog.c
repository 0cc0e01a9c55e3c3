// testprog.c: multi-command WASI preview 1 test program for the shim's
// integration tests. argv[1] selects the behaviour; see usage().
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void usage(void) {
	fputs("usage: testprog hello | args ... | env | exit N | cat | stderr MSG |\n"
	      "  write PATH TEXT | read PATH | ls PATH | mkdir PATH | sleep SECS | grow MB [AFTER_SECS] |\n"
	      "  trap | clock | random | spin SECS\n", stderr);
	exit(2);
}

// need exits with usage unless at least n arguments follow the command.
static void need(int argc, int n) {
	if (argc < 2 + n)
		usage();
}

// fail reports "op path: strerror(errno)" on stderr and exits 1.
static void fail(const char *op, const char *path) {
	fprintf(stderr, "%s %s: %s\n", op, path, strerror(errno));
	exit(1);
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmd_write(const char *path, const char *text) {
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("write", path);
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0)
			fail("write", path);
		off += (size_t)n;
	}
	if (close(fd) < 0)
		fail("write", path);
	printf("wrote %s\n", path);
	return 0;
}

static int cmd_read(const char *path) {
	FILE *f = fopen(path, "rb");
	if (!f)
		fail("read", path);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		fwrite(buf, 1, n, stdout);
	if (ferror(f))
		fail("read", path);
	fclose(f);
	return 0;
}

static int cmd_ls(const char *path) {
	DIR *d = opendir(path);
	if (!d)
		fail("ls", path);
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			puts(e->d_name);
		errno = 0;
	}
	if (errno)
		fail("ls", path);
	closedir(d);
	return 0;
}

static int cmd_cat(void) {
	char buf[4096];
	ssize_t n;
	while ((n = read(0, buf, sizeof buf)) > 0) {
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = write(1, buf + off, (size_t)(n - off));
			if (w < 0)
				return 1;
			off += w;
		}
	}
	return n < 0 ? 1 : 0;
}

static int cmd_sleep(const char *arg) {
	double secs = atof(arg);
	puts("sleeping");
	fflush(stdout);
	struct timespec ts = {(time_t)secs, (long)((secs - (time_t)secs) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	puts("slept");
	fflush(stdout);
	return 0;
}

// grown links the chunks allocated by grow so the compiler cannot elide them.
static void *volatile grown;

static int cmd_grow(const char *arg) {
	long mb = atol(arg);
	for (long i = 0; i < mb; i++) {
		void **p = malloc(1 << 20);
		if (!p) {
			fprintf(stderr, "out of memory after %ld MiB\n", i);
			exit(3);
		}
		memset(p, 0xa5, 1 << 20); // touch every page; never freed on purpose
		*p = grown;
		grown = p;
	}
	printf("grew %ld MiB\n", mb);
	return 0;
}

static int cmd_spin(const char *arg) {
	double end = now() + atof(arg);
	volatile unsigned long x = 0;
	for (;;) {
		for (int i = 0; i < 1000000; i++)
			x++;
		if (now() >= end)
			break;
	}
	puts("spun");
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	const char *cmd = argv[1];
	if (!strcmp(cmd, "hello")) {
		puts("hello from wasm");
	} else if (!strcmp(cmd, "args")) {
		for (int i = 0; i < argc; i++)
			printf("argv[%d]=%s\n", i, argv[i]);
	} else if (!strcmp(cmd, "env")) {
		for (char **e = environ; e && *e; e++)
			puts(*e);
	} else if (!strcmp(cmd, "exit")) {
		need(argc, 1);
		fflush(stdout);
		exit(atoi(argv[2]));
	} else if (!strcmp(cmd, "cat")) {
		return cmd_cat();
	} else if (!strcmp(cmd, "stderr")) {
		need(argc, 1);
		fprintf(stderr, "%s\n", argv[2]);
	} else if (!strcmp(cmd, "write")) {
		need(argc, 2);
		return cmd_write(argv[2], argv[3]);
	} else if (!strcmp(cmd, "read")) {
		need(argc, 1);
		return cmd_read(argv[2]);
	} else if (!strcmp(cmd, "ls")) {
		need(argc, 1);
		return cmd_ls(argv[2]);
	} else if (!strcmp(cmd, "mkdir")) {
		need(argc, 1);
		if (mkdir(argv[2], 0755) < 0)
			fail("mkdir", argv[2]);
		printf("made %s\n", argv[2]);
	} else if (!strcmp(cmd, "sleep")) {
		need(argc, 1);
		return cmd_sleep(argv[2]);
	} else if (!strcmp(cmd, "grow")) {
		need(argc, 1);
		if (argc > 3)
			cmd_sleep(argv[3]); // grow MB SECS: sleep first (a test changes the limit meanwhile)
		return cmd_grow(argv[2]);
	} else if (!strcmp(cmd, "trap")) {
		fflush(stdout);
		__builtin_trap();
	} else if (!strcmp(cmd, "clock")) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		printf("%lld\n", (long long)ts.tv_sec);
	} else if (!strcmp(cmd, "random")) {
		unsigned char b[16];
		if (getentropy(b, sizeof b) < 0) {
			perror("getentropy");
			return 1;
		}
		for (size_t i = 0; i < sizeof b; i++)
			printf("%02x", b[i]);
		putchar('\n');
	} else if (!strcmp(cmd, "spin")) {
		need(argc, 1);
		return cmd_spin(argv[2]);
	} else {
		usage();
	}
	fflush(stdout);
	return 0;
}
