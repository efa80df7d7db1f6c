/*
 * scm_auth.c - the front end's auth check: Basic (when the site allows it)
 * or Bearer (one of the site's accepted tokens).
 */
#include "scm.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Compares without an early exit so timing does not leak the prefix. */
static int
auth_equal(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b), i;
	unsigned char d = alen != blen;

	for (i = 0; i < alen && i < blen; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return !d;
}

static int
auth_basic(const struct scm_site *site, const char *b64)
{
	size_t want, ulen;
	char *dec, *colon;
	int n, ok;

	if (!site->basic_user)
		return 0;	/* Basic disabled for this site */
	want = strlen(b64) + 4;
	dec = malloc(want);
	if (!dec)
		return 0;
	n = lws_b64_decode_string(b64, dec, (int)want);
	ok = 0;
	if (n > 0) {
		dec[n] = '\0';
		colon = memchr(dec, ':', (size_t)n);
		if (colon) {
			ulen = (size_t)(colon - dec);
			ok = auth_equal(dec, ulen, site->basic_user) &
			     auth_equal(colon + 1, strlen(colon + 1),
					site->basic_password);
		}
	}
	free(dec);
	return ok;
}

/* 1 when the Authorization header value is accepted for the site. */
int
auth_check(const struct scm_site *site, const char *authorization)
{
	const char *p;
	size_t i;

	if (!authorization)
		return 0;
	if (!strncasecmp(authorization, "Basic ", 6)) {
		for (p = authorization + 6; *p == ' '; p++)
			;
		return auth_basic(site, p);
	}
	if (!strncasecmp(authorization, "Bearer ", 7)) {
		for (p = authorization + 7; *p == ' '; p++)
			;
		for (i = 0; i < site->nbearer; i++)
			if (auth_equal(p, strlen(p), site->bearer[i]))
				return 1;
	}
	return 0;
}
