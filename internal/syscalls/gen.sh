#!/bin/sh
# Regenerates table_amd64.go's numbered part from the installed kernel
# headers (linux-libc-dev); keep the hand-added tail for newer syscalls.
grep "#define __NR_" /usr/include/x86_64-linux-gnu/asm/unistd_64.h |
	awk '{sub("__NR_","",$2); printf "\t%d: \"%s\",\n", $3, $2}'
