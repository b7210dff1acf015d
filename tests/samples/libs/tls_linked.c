/*
 * libtls_linked.so: thread-locals of a library that tls_modules is linked against, so the
 * loader gives them static TLS at start, beside the executable's. The executable reads them
 * directly (initial-exec); the functions here reach them the library's own way, through
 * __tls_get_addr and the thread's DTV. Both must name the same variable in every thread.
 */
__thread int linked_data = 4242; /* .tdata: every new thread starts with this value */
/* .tbss: every new thread starts with zero. Aligned as liburcu aligns its thread-locals (two
 * cache lines), which makes the static TLS area's alignment 128: glibc's struct pthread is no
 * multiple of that, so the area's size is not either. */
__thread int linked_bss __attribute__((aligned(128)));

int *linked_data_address(void)
{
    return &linked_data;
}

int *linked_bss_address(void)
{
    return &linked_bss;
}
