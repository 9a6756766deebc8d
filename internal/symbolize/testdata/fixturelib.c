// Shared library for the fixture: reports its own addresses.
void *volatile lib_recorded;

__attribute__((noinline)) static void lib_record(void) {
	lib_recorded = __builtin_return_address(0);
}

__attribute__((noinline)) static int lib_hidden(int x) { // MARK:lib_decl
	lib_record(); // MARK:lib_call
	return x * 7;
}

void *lib_self(void) { return (void *)&lib_hidden; }

void *lib_ret(void) {
	lib_hidden(2);
	return lib_recorded;
}
