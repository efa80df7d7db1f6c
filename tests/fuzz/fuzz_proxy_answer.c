/*
 * fuzz_proxy_answer.c - arbitrary bytes as an HTTP proxy's answer to our
 * CONNECT (tn_conn_proxy_answer) in any split: it must end in "need more",
 * "open" or an error, and never read past what it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tn_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_config cfg;
	struct tn_conn conn;
	struct tn_err err;
	size_t step, off = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 300 + 1;
	data++;
	size--;
	memset(&cfg, 0, sizeof(cfg));
	cfg.host = "fuzz.invalid";
	cfg.port = 443;
	cfg.proxy = "proxy.invalid:3128";
	tn_conn_init(&conn, &cfg);
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		int rc = tn_conn_proxy_answer(&conn, (const char *)data + off, n, &err);

		if (rc)
			break;
		off += n;
	}
	tn_conn_free(&conn);
	return 0;
}
