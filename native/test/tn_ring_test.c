/*
 * tn_ring_test.c - unit test of the bounded ring (run by tests/test_engine_native.py).
 * A random model check: every byte written comes out once, in order, the
 * bound is never exceeded, and the buffer is released whenever it drains.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tn_ring.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d %s\n", __FILE__, __LINE__, #c); return 1; } } while (0)

int main(void)
{
	enum { CAP = 1000 };
	static unsigned char in[4096], out[4096];
	unsigned long long wseq = 0, rseq = 0;
	struct tn_ring r;
	int i;

	srand(7);
	tn_ring_init(&r, CAP);
	CHECK(r.buf == NULL && tn_ring_space(&r) == CAP);
	for (i = 0; i < 200000; i++) {
		size_t want = (size_t)(rand() % 700), n, k;

		for (k = 0; k < want; k++)
			in[k] = (unsigned char)(wseq + k);
		n = tn_ring_write(&r, in, want);
		CHECK(n != (size_t)-1);
		CHECK(n <= want && tn_ring_used(&r) <= CAP);
		wseq += n;

		if (rand() & 1) {
			const unsigned char *p;
			size_t run = tn_ring_peek(&r, &p), take = run ? (size_t)rand() % (run + 1) : 0;

			for (k = 0; k < take; k++)
				CHECK(p[k] == (unsigned char)(rseq + k));
			tn_ring_consume(&r, take);
			rseq += take;
		} else {
			size_t got = tn_ring_copyout(&r, out, (size_t)rand() % 1200);

			for (k = 0; k < got; k++)
				CHECK(out[k] == (unsigned char)(rseq + k));
			tn_ring_consume(&r, got);
			rseq += got;
		}
		CHECK(wseq - rseq == tn_ring_used(&r));
		if (!tn_ring_used(&r)) {
			CHECK(r.head == 0);	/* drained: restarts at the front */
			if (rand() % 2) {	/* kept until trimmed */
				tn_ring_trim(&r);
				CHECK(r.buf == NULL);
			}
		} else {
			tn_ring_trim(&r);	/* never drops held bytes */
			CHECK(r.buf != NULL);
		}
	}
	tn_ring_free(&r);
	printf("ring ok: %llu bytes\n", wseq);
	return 0;
}
