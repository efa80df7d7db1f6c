/* fuzz_stubs.h - shared set-up for the tn_ws.c fuzz targets. */
#ifndef FUZZ_STUBS_H
#define FUZZ_STUBS_H

#include <stddef.h>

#include "tn_engine.h"

/* Where delivered payload goes: counted always, kept when buf is set. */
struct fuzz_sink {
	unsigned char *buf;
	size_t cap, len;
	unsigned controls;
};

extern struct fuzz_sink fuzz_sink;

void fuzz_setup(struct tn_engine *eng, struct tn_relay *r);

#endif
