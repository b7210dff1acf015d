/*
 * libtls_linked.so: thread-locals of a library that tls_modules is linked against, so the
 * loader gives them static TLS at start, beside the executable's. The executable reads them
 * directly (initial-exec); the functions here reach them the library's own way, through
 * __tls_get_addr and the thread's DTV. Both must name the same variable in every thread.
 */
__thread int linked_data = 4242; /* .tdata: every new thread starts with this value */
__thread int linked_bss;         /* .tbss: every new thread starts with zero */

int *linked_data_address(void)
{
    return &linked_data;
}

int *linked_bss_address(void)
{
    return &linked_bss;
}
