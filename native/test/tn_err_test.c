/*
 * tn_err_test.c - tn_err_server_message as a filter (run by
 * tests/test_engine_reasons.py, which feeds it bodies and compares what it
 * prints with azext_webapp/_reasons.py's server_message, byte for byte).
 * stdin: records of a 4-byte big-endian length and that many bytes;
 * stdout: one line per record, the message in hex ("-" when there is none).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_err.h"

int main(void)
{
	static unsigned char body[1 << 16];
	unsigned char len4[4];
	struct tn_err err;

	while (fread(len4, 1, 4, stdin) == 4) {
		size_t n = (size_t)len4[0] << 24 | (size_t)len4[1] << 16 | (size_t)len4[2] << 8 | len4[3], i;

		if (n > sizeof(body) || fread(body, 1, n, stdin) != n) {
			fprintf(stderr, "bad record\n");
			return 1;
		}
		tn_err_clear(&err);
		tn_err_server_message(&err, body, n);
		if (!err.server_message[0])
			fputs("-", stdout);
		for (i = 0; err.server_message[i]; i++)
			printf("%02x", (unsigned char)err.server_message[i]);
		putchar('\n');
	}
	return 0;
}
