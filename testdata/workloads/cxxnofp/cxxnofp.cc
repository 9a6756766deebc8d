// cxxnofp: C++ built without frame pointers, blocking in a member function
// of a namespaced class (std::this_thread::sleep_for, 20 ms, -n times) and
// in a std::mutex another thread holds for 30 ms. The profile must show the
// demangled names, e.g. blk::Worker::nap(int), at the right depth.
#include "../include/workload.h"

#include <chrono>
#include <mutex>
#include <thread>
#include <sys/syscall.h>

namespace blk {

std::mutex mu;

class Worker {
public:
	__attribute__((noinline)) double nap(int n)
	{
		double sum = 0;
		for (int i = 0; i < n; i++) {
			double t0 = wl_mono();
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
			sum += wl_mono() - t0;
		}
		return sum;
	}

	__attribute__((noinline)) double wait_for_lock(int n)
	{
		double sum = 0;
		for (int i = 0; i < n; i++) {
			std::this_thread::sleep_for(std::chrono::milliseconds(5)); // let the holder take it
			double t0 = wl_mono();
			mu.lock();
			sum += wl_mono() - t0;
			mu.unlock();
		}
		return sum;
	}
};

} // namespace blk

int main(int argc, char **argv)
{
	int n = 10;
	if (argc > 2 && !strcmp(argv[1], "-n"))
		n = atoi(argv[2]);
	wl_ready("main=%d", (int)getpid());
	wl_wait_go();
	blk::Worker w;
	int lock_tid = 0;
	double lock_secs = 0;
	std::thread holder([n] {
		for (int i = 0; i < n; i++) {
			blk::mu.lock();
			std::this_thread::sleep_for(std::chrono::milliseconds(30));
			blk::mu.unlock();
			std::this_thread::sleep_for(std::chrono::milliseconds(5));
		}
	});
	std::thread locker([&] {
		lock_tid = (int)syscall(SYS_gettid);
		lock_secs = w.wait_for_lock(n);
	});
	double nap_secs = w.nap(n);
	holder.join();
	locker.join();
	FILE *f = wl_truth_open();
	fprintf(f, "{\"pid\":%d,\"blocks\":["
		   "{\"func\":\"blk::Worker::nap\",\"syscall\":\"clock_nanosleep\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f},"
		   "{\"func\":\"blk::Worker::wait_for_lock\",\"syscall\":\"futex\",\"tid\":%d,\"count\":%d,\"seconds\":%.6f}"
		   "],\"cpu\":[]}\n",
		(int)getpid(), (int)getpid(), n, nap_secs, lock_tid, n, lock_secs);
	wl_truth_close(f);
	return 0;
}
