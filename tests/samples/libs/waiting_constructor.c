/*
 * A library whose constructor calls back into the program that loads it, which waits there
 * (loader_waits.c): glibc runs it holding the loader's lock.
 */
void loader_waits_in_constructor(int *initialised);

int waiting_constructor_initialised;

__attribute__((constructor)) static void call_back(void)
{
    loader_waits_in_constructor(&waiting_constructor_initialised);
}
