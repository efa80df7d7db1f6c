/*
 * fuzz_stubs.c - what tn_ws.c calls outside itself, reduced to bookkeeping,
 * so the wire-format code can be fuzzed without sockets, TLS or lws.
 */
#include <string.h>

#include "fuzz_stubs.h"

struct fuzz_sink fuzz_sink;

int tn_relay_ws_payload(struct tn_relay *r, unsigned char *p, size_t n)
{
	(void)r;
	if (fuzz_sink.buf && fuzz_sink.len + n <= fuzz_sink.cap)
		memcpy(fuzz_sink.buf + fuzz_sink.len, p, n);
	fuzz_sink.len += n;
	return 0;
}

int tn_link_control(struct tn_relay *r, int opcode, const unsigned char *p, size_t n)
{
	(void)p;
	if (n > 125)
		__builtin_trap();	/* the parser promised control payloads fit */
	if (opcode == 8)
		r->peer_closed = 1;
	fuzz_sink.controls++;
	return 0;
}

void tn_classify_http_status(struct tn_engine *eng, struct tn_relay *r, unsigned int status)
{
	tn_err_set(&r->err, TN_E_HTTP, (int)status, "%s refused the upgrade", eng->cfg.host);
}

void fuzz_setup(struct tn_engine *eng, struct tn_relay *r)
{
	memset(eng, 0, sizeof(*eng));
	memset(r, 0, sizeof(*r));
	eng->cfg.host = "fuzz.invalid";
	r->eng = eng;
	r->wsp.need = 2;	/* as tn_relay_new: expecting a frame header */
	memset(&fuzz_sink, 0, sizeof(fuzz_sink));
}
