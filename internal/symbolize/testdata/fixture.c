// Test fixture: prints addresses of its own code, then waits for stdin to
// close so the test can read /proc/PID/maps of a live process.
#include <stdio.h>
#include <stdint.h>

void *volatile recorded;
volatile int sinkv;

__attribute__((noinline)) void record(void) {
	recorded = __builtin_return_address(0);
	sinkv++;
}

static inline __attribute__((always_inline)) int helper(int x) {
	record(); // MARK:helper_call
	return x + 1;
}

__attribute__((noinline)) int outer(int x) { // MARK:outer_decl
	int r = helper(x) * 2; // MARK:outer_call
	sinkv += r;
	return r;
}

__attribute__((noinline)) int leaf_func(int x) { // MARK:leaf_decl
	sinkv += x; // MARK:leaf_body
	return sinkv;
}

#ifdef WITH_LIB
extern void *lib_self(void);
extern void *lib_ret(void);
#endif

int main(void) {
	outer(3);
	leaf_func(1);
	printf("leaf %p\n", (void *)&leaf_func);
	printf("ret %p\n", recorded);
	printf("main %p\n", (void *)&main);
#ifdef WITH_LIB
	printf("lib %p\n", lib_self());
	printf("libret %p\n", lib_ret());
#endif
	printf("ready\n");
	fflush(stdout);
	int c;
	while ((c = getchar()) != EOF) {
	}
	return 0;
}
