/*
 * tn_ring.c - bounded byte ring, lazily allocated, released by trim when empty.
 */
#include <stdlib.h>
#include <string.h>

#include "tn_ring.h"

void tn_ring_init(struct tn_ring *r, size_t cap)
{
	r->buf = NULL;
	r->cap = cap;
	r->head = 0;
	r->len = 0;
}

size_t tn_ring_write(struct tn_ring *r, const void *data, size_t len)
{
	const unsigned char *src = data;
	size_t room = r->cap - r->len, tail, first;

	if (len > room)
		len = room;
	if (!len)
		return 0;
	if (!r->buf) {
		r->buf = malloc(r->cap);
		if (!r->buf)
			return (size_t)-1;
		r->head = 0;
	}
	tail = (r->head + r->len) % r->cap;
	first = r->cap - tail;	/* room before the wrap */
	if (first > len)
		first = len;
	memcpy(r->buf + tail, src, first);
	memcpy(r->buf, src + first, len - first);
	r->len += len;
	return len;
}

size_t tn_ring_peek(const struct tn_ring *r, const unsigned char **p)
{
	size_t run;

	if (!r->len) {
		*p = NULL;
		return 0;
	}
	run = r->cap - r->head;
	if (run > r->len)
		run = r->len;
	*p = r->buf + r->head;
	return run;
}

size_t tn_ring_copyout(const struct tn_ring *r, unsigned char *dst, size_t max)
{
	size_t n = r->len < max ? r->len : max, first;

	if (!n)
		return 0;
	first = r->cap - r->head;
	if (first > n)
		first = n;
	memcpy(dst, r->buf + r->head, first);
	memcpy(dst + first, r->buf, n - first);
	return n;
}

void tn_ring_consume(struct tn_ring *r, size_t n)
{
	if (n > r->len)
		n = r->len;
	r->head = (r->head + n) % r->cap;
	r->len -= n;
	if (!r->len)
		r->head = 0;	/* small exchanges keep reusing the first pages */
}

void tn_ring_trim(struct tn_ring *r)
{
	if (!r->len)
		tn_ring_free(r);
}

void tn_ring_free(struct tn_ring *r)
{
	free(r->buf);
	r->buf = NULL;
	r->head = 0;
	r->len = 0;
}
