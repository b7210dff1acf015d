#!/usr/bin/env bash
# Prints the COOP_TLS mechanisms this machine has, one a line: syscall (arch_prctl, on every
# x86-64 Linux), then fsgsbase where the CPU has the instructions and the kernel lets user
# code use them (AT_HWCAP2 bit 1, Linux 5.9+): many VMs, and a kernel booted with
# nofsgsbase, keep them from user code.
echo syscall
grep -qw fsgsbase /proc/cpuinfo || exit 0
hwcap2=$(env -u LD_PRELOAD LD_SHOW_AUXV=1 /bin/true | sed -n 's/^AT_HWCAP2:[[:space:]]*\(0x\)\{0,1\}//p')
[[ $hwcap2 =~ ^[0-9a-fA-F]+$ ]] && ((16#$hwcap2 & 2)) && echo fsgsbase
exit 0
