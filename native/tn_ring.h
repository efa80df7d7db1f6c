/*
 * tn_ring.h - a bounded byte ring for one relay direction.
 *
 * The buffer is allocated on the first write and kept while the
 * connection is busy (no malloc/free per burst); the owner calls
 * tn_ring_trim() now and then, which releases it when the ring is empty,
 * so an idle connection holds no ring memory.
 */
#ifndef TN_RING_H
#define TN_RING_H

#include <stddef.h>

struct tn_ring {
	unsigned char *buf;	/* NULL while empty */
	size_t cap;		/* fixed bound, set by tn_ring_init */
	size_t head;		/* next byte to read */
	size_t len;		/* bytes held */
};

void tn_ring_init(struct tn_ring *r, size_t cap);
/* Copies as much of data as fits; returns bytes taken, or (size_t)-1 when
 * the buffer cannot be allocated. */
size_t tn_ring_write(struct tn_ring *r, const void *data, size_t len);
/* Longest contiguous readable run: sets *p and returns its length. */
size_t tn_ring_peek(const struct tn_ring *r, const unsigned char **p);
/* Copies up to max readable bytes into dst without consuming them. */
size_t tn_ring_copyout(const struct tn_ring *r, unsigned char *dst, size_t max);
void tn_ring_consume(struct tn_ring *r, size_t n);
/* Releases the buffer if the ring is empty. */
void tn_ring_trim(struct tn_ring *r);
void tn_ring_free(struct tn_ring *r);

static inline size_t tn_ring_used(const struct tn_ring *r) { return r->len; }
static inline size_t tn_ring_space(const struct tn_ring *r) { return r->cap - r->len; }

#endif
