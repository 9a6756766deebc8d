# blockprof build, test and benchmark entry points.
# Floor: kernel >= 5.15 with BTF (tp_btf, task storage for tracing programs, bpf_task_pt_regs).

CLANG ?= clang-19
STRIP ?= llvm-strip-19
# -mcpu=v3: 32-bit jumps and ALU ops; every kernel we support has them.
BPF_CFLAGS ?= -O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/$(shell uname -m)-linux-gnu
GO ?= go
BIN := bin/blockprof

.PHONY: all build generate check-generated test bench demo fuzz soak clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/blockprof

generate:
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) BPF2GO_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./internal/attach/ ./internal/goroutines/

check-generated: generate
	@git diff --exit-code -- internal/attach internal/goroutines >/dev/null && test -z "$$(git status --porcelain -- internal/attach internal/goroutines)" || \
		{ echo "generated BPF objects are stale: run 'make generate' and commit"; git status --short -- internal/attach internal/goroutines; exit 1; }

# As root, the suite runs in a private mount namespace with tracefs and
# debugfs unmounted, as on a fresh host, even where a tool mounted them on
# this one: nothing may depend on them.
WITHOUT_TRACEFS := unshare -m sh -c 'umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; exec "$$@"' sh

test:
	$(GO) vet ./... ./testdata/workloads/...
	$(if $(filter 0,$(shell id -u)),$(WITHOUT_TRACEFS)) $(GO) test -count=1 -p 1 -timeout 40m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 30m ./bench/ ./internal/...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseMaps -fuzztime 30s ./internal/procmaps/
	$(GO) test -run '^$$' -fuzz FuzzParseKallsyms -fuzztime 30s ./internal/symbolize/
	$(GO) test -run '^$$' -fuzz FuzzOpenELF -fuzztime 30s ./internal/symbolize/
	$(GO) test -run '^$$' -fuzz FuzzParsePerfMap -fuzztime 30s ./internal/symbolize/
	$(GO) test -run '^$$' -fuzz FuzzLineForInstr -fuzztime 30s ./internal/python/
	$(GO) test -run '^$$' -fuzz FuzzParseDebugOffsets -fuzztime 30s ./internal/python/
	$(GO) test -run '^$$' -fuzz FuzzParseEhFrame -fuzztime 30s ./internal/unwind/

# Manual, not CI (root): 10 minutes on the high-cardinality workload,
# printing blockprof's RSS and open fds every second.
# Manual, not CI: 10 minutes of blockprof serve on a cgroup with a
# high-cardinality workload and a churn of children; RSS and fds must stay flat.
soak:
	$(GO) test -count=1 -v -run 'TestServeSoak' -timeout 20m ./cmd/blockprof/ -args -soak-for 10m

demo: build
	./demo/run.sh

clean:
	rm -rf bin
