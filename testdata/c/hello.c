// hello.c: minimal WASI test program printing a greeting and its arguments.
#include <stdio.h>

int main(int argc, char **argv) {
	fputs("hello from wasm", stdout);
	for (int i = 1; i < argc; i++)
		printf(" %s", argv[i]);
	putchar('\n');
	fflush(stdout);
	return 0;
}
