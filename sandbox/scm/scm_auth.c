/*
 * scm_auth.c - the front end's auth check: Basic (when the site allows it)
 * or Bearer (one of the site's accepted tokens).
 */
#include "scm.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

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

/* Decodes standard base64 (padding required) into out; -1 if malformed. */
static int
auth_b64_decode(const char *in, unsigned char *out)
{
	size_t len = strlen(in);
	int n;

	if (!len || len % 4)
		return -1;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0)
		return -1;
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (in[len - 1] == '=')
		n--;
	if (in[len - 2] == '=')
		n--;
	return n;
}

static int
auth_basic(const struct scm_site *site, const char *b64)
{
	unsigned char *dec;
	char *colon;
	size_t ulen;
	int n, ok = 0;

	if (!site->basic_user)
		return 0;	/* Basic disabled for this site */
	dec = malloc(strlen(b64) / 4 * 3 + 4);
	if (!dec)
		return 0;
	n = auth_b64_decode(b64, dec);
	if (n > 0) {
		dec[n] = '\0';
		colon = memchr(dec, ':', (size_t)n);
		if (colon && !memchr(dec, '\0', (size_t)n)) {
			ulen = (size_t)(colon - (char *)dec);
			ok = auth_equal((char *)dec, ulen, site->basic_user) &
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
