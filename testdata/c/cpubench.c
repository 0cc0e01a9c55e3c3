// cpubench.c: a fixed, CPU-bound WASI workload for the steady-state benchmark (docs/BENCHMARKS.md, B4).
// Usage: cpubench [ROUNDS]   (default 8; each round is 2^22 steps of integer hashing over a 256 KiB table)
// Prints a checksum (identical for a given ROUNDS wherever it runs) and the time the work itself took,
// so startup costs can be told apart from execution speed.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TABLE_WORDS (1u << 16) // 64 Ki uint32 = 256 KiB: stays in L2, exercises loads/stores and bounds
#define STEPS_PER_ROUND (1u << 22)

static uint32_t table[TABLE_WORDS];

// mix is a 32-bit integer finalizer (xor-shift-multiply).
static inline uint32_t mix(uint32_t x) {
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
	long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 8;
	if (rounds < 1) {
		fputs("usage: cpubench [ROUNDS>=1]\n", stderr);
		return 2;
	}
	double t0 = now_ms();
	for (uint32_t i = 0; i < TABLE_WORDS; i++)
		table[i] = mix(i + 1);
	uint32_t h = 0x9e3779b9U;
	uint64_t sum = 0;
	for (long r = 0; r < rounds; r++) {
		for (uint32_t s = 0; s < STEPS_PER_ROUND; s++) {
			uint32_t idx = h & (TABLE_WORDS - 1);
			uint32_t v = table[idx];
			h = mix(h ^ v) + s;
			table[idx] = v + (h >> 3);
			sum += h & 0xffff;
		}
	}
	double t1 = now_ms();
	printf("cpubench rounds=%ld checksum=%016llx work_ms=%.1f\n", rounds, (unsigned long long)sum, t1 - t0);
	return 0;
}
