// wagi.c: a per-request (WAGI) handler for the shim's tests and benchmarks. The runner runs a
// fresh instance of it for every HTTP request (WAZERO_WAGI, docs/networking.md): the request is
// in the environment (REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_*...) and the body on stdin;
// the CGI response goes to stdout. Routes, by PATH_INFO:
//
//   /hello        200 "hello from wagi"
//   /count        the calls this instance has served: always 1 when instances are fresh
//   /echo         method, query, the X-Test header and the body, one per line
//   /env?NAME     the value of variable NAME, 404 if unset
//   /status       404 with a body, through the Status header
//   /redirect     Location: /hello (302)
//   /trap         traps (unreachable): the client must get 500
//   /exit         exits 3 without output: 500
//   /spin         loops forever: the client must get 504
//   /sleep?MS     sleeps MS milliseconds, then answers "slept"
//   /active?MS    counts the instances running at once, through files in /tmp of the container:
//                 creates one, sleeps MS ms, reports how many it saw, removes its own
//   /noheader     writes a body without a header block: 500
//   /log?MSG      writes "wagi log: MSG" to stderr (the container's), answers "logged"
//   /grow?MB      allocates and touches MB MiB, then answers "grew MB"
//   /big?KB       answers KB KiB of 'x' (for clients that never read their response)
//   /keep?S       keeps S (its bytes + 1, so the query in the environment does not match) in a
//                 static buffer, on the heap and on the stack, leaves a file open, and answers
//                 its descriptor and how many copies /find would see now (at least 3)
//   /find?S       answers "found N" with the number of places in the whole linear memory that
//                 hold what /keep?S kept (0 when memory is fresh), and "fds" with the open
//                 descriptors past the preopens (none when the descriptor table is fresh)
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int calls; // in linear memory: a reused instance would count up
static char kept[64]; // /keep's static copy
static char *volatile kept_heap; // /keep's heap copy, observable to the compiler

// shifted writes s with each byte plus one into out (at most n-1 bytes and a NUL).
static void shifted(const char *s, char *out, size_t n) {
	size_t i = 0;
	for (; s[i] && i + 1 < n; i++)
		out[i] = (char)(s[i] + 1);
	out[i] = 0;
}

// keep_on_stack leaves a copy of v in its stack frame, which stays in linear memory after it
// returns.
static __attribute__((noinline)) void keep_on_stack(const char *v) {
	volatile char frame[64];
	for (size_t i = 0; i < sizeof frame; i++) {
		frame[i] = v[i];
		if (!v[i])
			break;
	}
}
static char *volatile grown; // keeps /grow's allocation observable to the compiler

static const char *env(const char *name) {
	const char *v = getenv(name);
	return v ? v : "";
}

static void sleep_ms(long ms) {
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int count_active(void) {
	DIR *d = opendir("/tmp");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "wagi-active-", 12) == 0)
			n++;
	closedir(d);
	return n;
}

// find_kept counts the places in the whole linear memory that hold what /keep?s kept, besides
// its own needle.
static size_t find_kept(const char *s) {
	char *needle = malloc(64);
	shifted(s, needle, 64);
	size_t n = strlen(needle), found = 0;
	const char *volatile base = 0; // address 0 is NULL to the compiler: hide it
	const char *mem = base;
	size_t size = __builtin_wasm_memory_size(0) * 65536;
	for (size_t i = 0; n > 0 && i + n <= size; i++)
		if (mem + i != needle && memcmp(mem + i, needle, n) == 0)
			found++;
	free(needle);
	return found;
}

int main(void) {
	calls++;
	const char *path = env("PATH_INFO");
	const char *query = env("QUERY_STRING");
	if (strcmp(path, "/hello") == 0) {
		printf("Content-Type: text/plain\n\nhello from wagi\n");
	} else if (strcmp(path, "/count") == 0) {
		printf("Content-Type: text/plain\n\ncalls=%d\n", calls);
	} else if (strcmp(path, "/echo") == 0) {
		printf("Content-Type: text/plain\n\n");
		printf("method=%s\nquery=%s\nx-test=%s\nbody=", env("REQUEST_METHOD"), query, env("HTTP_X_TEST"));
		char buf[4096];
		size_t n;
		while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
			fwrite(buf, 1, n, stdout);
		printf("\n");
	} else if (strcmp(path, "/env") == 0) {
		const char *v = getenv(query);
		if (v)
			printf("Content-Type: text/plain\n\n%s\n", v);
		else
			printf("Status: 404 Not Found\nContent-Type: text/plain\n\n%s is not set\n", query);
	} else if (strcmp(path, "/status") == 0) {
		printf("Status: 404 Not Found\nContent-Type: text/plain\n\nnothing here\n");
	} else if (strcmp(path, "/redirect") == 0) {
		printf("Location: /hello\n\n");
	} else if (strcmp(path, "/trap") == 0) {
		fflush(stdout);
		__builtin_trap();
	} else if (strcmp(path, "/exit") == 0) {
		exit(3);
	} else if (strcmp(path, "/spin") == 0) {
		for (volatile unsigned long i = 0;; i++) {
		}
	} else if (strcmp(path, "/sleep") == 0) {
		sleep_ms(atol(query));
		printf("Content-Type: text/plain\n\nslept\n");
	} else if (strcmp(path, "/active") == 0) {
		// A fresh instance's rand() always starts the same: name the file from WASI's random_get.
		unsigned long long id = 0;
		getentropy(&id, sizeof id);
		char name[64];
		snprintf(name, sizeof name, "/tmp/wagi-active-%016llx", id);
		FILE *f = fopen(name, "w");
		if (!f) {
			printf("Status: 500 Internal Server Error\nContent-Type: text/plain\n\ncannot create %s\n", name);
			return 0;
		}
		fclose(f);
		int most = 0;
		for (long waited = 0; waited < atol(query); waited += 10) {
			int n = count_active();
			if (n > most)
				most = n;
			sleep_ms(10);
		}
		remove(name);
		printf("Content-Type: text/plain\n\nactive=%d\n", most);
	} else if (strcmp(path, "/noheader") == 0) {
		printf("just a body\n");
	} else if (strcmp(path, "/log") == 0) {
		fprintf(stderr, "wagi log: %s\n", query);
		printf("Content-Type: text/plain\n\nlogged\n");
	} else if (strcmp(path, "/grow") == 0) {
		long mb = atol(query);
		char *p = malloc((size_t)mb << 20);
		if (!p) {
			printf("Status: 507 Insufficient Storage\nContent-Type: text/plain\n\ncannot allocate %ld MiB\n", mb);
			return 0;
		}
		memset(p, 1, (size_t)mb << 20);
		grown = p;
		printf("Content-Type: text/plain\n\ngrew %ld\n", mb);
	} else if (strcmp(path, "/big") == 0) {
		long kb = atol(query);
		static char chunk[1024];
		memset(chunk, 'x', sizeof chunk);
		printf("Content-Type: text/plain\n\n");
		for (long i = 0; i < kb; i++)
			fwrite(chunk, 1, sizeof chunk, stdout);
	} else if (strcmp(path, "/keep") == 0) {
		shifted(query, kept, sizeof kept);
		kept_heap = strdup(kept);
		keep_on_stack(kept);
		FILE *f = fopen("/tmp/wagi-kept", "w"); // not closed
		printf("Content-Type: text/plain\n\nkept fd=%d found=%zu\n", f ? fileno(f) : -1, find_kept(query));
	} else if (strcmp(path, "/find") == 0) {
		size_t found = find_kept(query);
		printf("Content-Type: text/plain\n\nfound %zu\nfds", found);
		struct stat st;
		for (int fd = 4; fd < 64; fd++)
			if (fstat(fd, &st) == 0)
				printf(" %d", fd);
		printf("\n");
	} else {
		printf("Status: 404 Not Found\nContent-Type: text/plain\n\nno route %s\n", path);
	}
	return 0;
}
