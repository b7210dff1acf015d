/*
 * libtls_loaded_static.so: a library loaded with dlopen whose thread-local is declared
 * initial-exec, as some libraries declare theirs for speed. Its block then takes spare room
 * of the static TLS area, at the same offset in every thread, and dlopen copies the image
 * into that room in every thread glibc knows of (tls_modules -s).
 */
__thread int loaded_static __attribute__((tls_model("initial-exec"))) = 4444;

int *loaded_static_address(void)
{
    return &loaded_static;
}
