/*
 * fuzz_server_message.c - arbitrary bytes as the body of a refused upgrade
 * (tn_err_server_message): what comes out is one line of at most the cap,
 * with no control byte, whatever the JSON escapes and UTF-8 say.
 */
#include <stdint.h>
#include <string.h>

#include "tn_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_err err;
	size_t i, n;

	tn_err_clear(&err);
	tn_err_server_message(&err, data, size);
	n = strlen(err.server_message);
	if (n > TN_CAP_SERVER_MESSAGE)
		__builtin_trap();
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)err.server_message[i];

		if (c < 0x20 || c == 0x7f || (c == 0xC2 && i + 1 < n &&
					      (unsigned char)err.server_message[i + 1] >= 0x80 &&
					      (unsigned char)err.server_message[i + 1] <= 0x9F))
			__builtin_trap();
	}
	if (n && (err.server_message[0] == ' ' || err.server_message[n - 1] == ' '))
		__builtin_trap();
	return 0;
}
