/*
 * lws_stdio.c - stdin, stdout and stderr for the statically linked libwebsockets (setup.py).
 *
 * Debian's libwebsockets.a is compiled as position-independent *executable* code (-fPIE), not
 * position-independent *library* code: it addresses the C library's data objects stdin, stdout and
 * stderr directly (R_X86_64_PC32), as an executable may (the linker would make copy relocations
 * there), which a shared object cannot. Every other symbol it addresses that way is its own and
 * becomes local with -Wl,--exclude-libs,ALL. These three hidden definitions give those references
 * a local target; the constructor copies the C library's values into them before Python runs
 * PyInit__tunnel, so the engine and libwebsockets write to the process's real streams.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdio.h>

__attribute__((visibility("hidden"))) FILE *stdin;
__attribute__((visibility("hidden"))) FILE *stdout;
__attribute__((visibility("hidden"))) FILE *stderr;

static FILE *libc_stream(const char *name)
{
	FILE **stream = (FILE **)dlsym(RTLD_DEFAULT, name);

	return stream ? *stream : NULL;
}

__attribute__((constructor)) static void webapp_lws_stdio_init(void)
{
	stdin = libc_stream("stdin");
	stdout = libc_stream("stdout");
	stderr = libc_stream("stderr");
}
