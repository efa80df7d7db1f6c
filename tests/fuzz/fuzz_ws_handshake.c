/*
 * fuzz_ws_handshake.c - arbitrary bytes as the server's answer to the
 * upgrade request: status line and headers (tn_ws_handshake_rx) in any
 * split. It must end in "need more", an error, or a count of header bytes
 * no larger than what it was given. After a refusal, the rest goes to its
 * body (tn_ws_body_rx), which keeps at most TN_CAP_BODY_SCAN bytes and
 * gives err its server_message, chunks joined (tn_ws_body_message).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tn_ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tn_ws ws;
	struct tn_err err;
	size_t step, off = 0;

	if (size < 1)
		return 0;
	step = (size_t)data[0] % 200 + 1;
	data++;
	size--;
	tn_ws_init(&ws, "fuzz.invalid", 1);
	memcpy(ws.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29);
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		ssize_t took = tn_ws_handshake_rx(&ws, data + off, n, &err);

		if (took < 0) {		/* a refusal: what follows is its body */
			for (off += n; off < size && tn_ws_body_more(&ws); off += n) {
				n = size - off < step ? size - off : step;
				tn_ws_body_rx(&ws, data + off, n);
			}
			if (ws.body_len > TN_CAP_BODY_SCAN)
				__builtin_trap();	/* the body is bounded */
			tn_ws_body_message(&ws, &err);
			if (strlen(err.server_message) > TN_CAP_SERVER_MESSAGE)
				__builtin_trap();
			break;
		}
		if (took > 0) {
			if ((size_t)took > n)
				__builtin_trap();
			break;
		}
		off += n;
	}
	tn_ws_free(&ws);
	return 0;
}
