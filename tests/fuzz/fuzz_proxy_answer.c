/*
 * fuzz_proxy_answer.c - arbitrary bytes as an HTTP proxy's answer to our
 * CONNECT (tn_conn_proxy_answer) in any split: it must end in "need more",
 * "open" or an error, and never read past what it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_stubs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_engine eng;
	struct tn_relay r;
	size_t step, off = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 300 + 1;
	data++;
	size--;
	fuzz_setup(&eng, &r);
	eng.cfg.proxy = "proxy.invalid:3128";
	eng.cfg.port = 443;
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		int rc = tn_conn_proxy_answer(&r, (const char *)data + off, n);

		if (rc)
			break;
		off += n;
	}
	free(r.hs_buf);
	return 0;
}
