/*
 * libtls_loaded.so: thread-locals of a library that tls_modules loads with dlopen once its
 * threads exist. They are dynamic TLS: each thread's block is allocated on its first access,
 * through __tls_get_addr and the thread's own DTV, and filled from the image. (One
 * initial-exec variable would move the whole block to static TLS: see tls_loaded_static.c.)
 */
__thread int loaded_data = 4343;
__thread int loaded_bss;

int *loaded_data_address(void)
{
    return &loaded_data;
}

int *loaded_bss_address(void)
{
    return &loaded_bss;
}
