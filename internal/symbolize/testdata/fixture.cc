// C++ fixture for demangling: only its symbols are looked at.
#include <cstdio>

namespace ns {
template <typename T> struct Box {
	T v;
	__attribute__((noinline)) T get() const { return v; }
};
struct Klass {
	int n;
	__attribute__((noinline)) int method(int x);
};
int Klass::method(int x) { return n + x; }
} // namespace ns

int main() {
	ns::Klass k{1};
	ns::Box<long> b{2};
	std::printf("%d %ld\n", k.method(2), b.get());
	return 0;
}
