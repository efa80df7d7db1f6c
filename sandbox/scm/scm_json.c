/*
 * scm_json.c - recursive-descent JSON reader for the config file.
 *
 * The config is small and trusted-ish (written by the sandbox), but the
 * parser still bounds nesting depth and checks every allocation, so a bad
 * file gives a message instead of a crash.
 */
#include "scm_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

struct json_parser {
	const char *p, *end, *start;
	char *err;
	size_t errlen;
	int depth;
};

static struct json *json_value(struct json_parser *ps);

static void
json_error(struct json_parser *ps, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!ps->errlen || ps->err[0])
		return;		/* keep the first (innermost) message */
	n = (size_t)snprintf(ps->err, ps->errlen, "at offset %ld: ",
			     (long)(ps->p - ps->start));
	if (n >= ps->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - n, fmt, ap);
	va_end(ap);
}

static void
json_skip_ws(struct json_parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
				   *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static struct json *
json_new(struct json_parser *ps, enum json_type type)
{
	struct json *j = calloc(1, sizeof(*j));

	if (!j) {
		json_error(ps, "out of memory");
		return NULL;
	}
	j->type = type;
	return j;
}

/* Appends one code point as UTF-8; buf has room for 4 more bytes. */
static size_t
json_put_utf8(char *buf, uint32_t cp)
{
	if (cp < 0x80) {
		buf[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		buf[0] = (char)(0xc0 | (cp >> 6));
		buf[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		buf[0] = (char)(0xe0 | (cp >> 12));
		buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		buf[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	buf[0] = (char)(0xf0 | (cp >> 18));
	buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	buf[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

static int
json_hex4(struct json_parser *ps, uint32_t *out)
{
	uint32_t v = 0;
	int i;

	if (ps->end - ps->p < 4) {
		json_error(ps, "truncated \\u escape");
		return -1;
	}
	for (i = 0; i < 4; i++) {
		char c = *ps->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else {
			json_error(ps, "bad hex digit in \\u escape");
			return -1;
		}
	}
	*out = v;
	return 0;
}

/* Parses a string literal at ps->p (on the opening quote); malloc'd result. */
static char *
json_string_raw(struct json_parser *ps)
{
	const char *q;
	char *out, *o;
	uint32_t cp, lo;

	ps->p++;	/* opening quote */
	/* Decoded output is never longer than the escaped input. */
	for (q = ps->p; q < ps->end && *q != '"'; q++)
		if (*q == '\\' && q + 1 < ps->end)
			q++;
	if (q >= ps->end) {
		json_error(ps, "unterminated string");
		return NULL;
	}
	out = malloc((size_t)(q - ps->p) + 1);
	if (!out) {
		json_error(ps, "out of memory");
		return NULL;
	}
	o = out;
	while (*ps->p != '"') {
		unsigned char c = (unsigned char)*ps->p++;

		if (c < 0x20) {
			json_error(ps, "control character in string");
			goto fail;
		}
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		c = (unsigned char)*ps->p++;
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			if (json_hex4(ps, &cp))
				goto fail;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (ps->end - ps->p < 6 || ps->p[0] != '\\' ||
				    ps->p[1] != 'u') {
					json_error(ps, "lone high surrogate");
					goto fail;
				}
				ps->p += 2;
				if (json_hex4(ps, &lo))
					goto fail;
				if (lo < 0xdc00 || lo > 0xdfff) {
					json_error(ps, "bad low surrogate");
					goto fail;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				json_error(ps, "lone low surrogate");
				goto fail;
			}
			if (!cp) {
				json_error(ps, "\\u0000 is not supported");
				goto fail;
			}
			/* 6 escaped chars always cover the <=4 output bytes */
			o += json_put_utf8(o, cp);
			break;
		default:
			json_error(ps, "bad escape '\\%c'", c);
			goto fail;
		}
	}
	ps->p++;	/* closing quote */
	*o = '\0';
	return out;
fail:
	free(out);
	return NULL;
}

static struct json *
json_number(struct json_parser *ps)
{
	const char *s = ps->p;
	char buf[64], *endp;
	struct json *j;
	size_t n;

	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
		json_error(ps, "unexpected character");
		return NULL;
	}
	while (ps->p < ps->end && strchr("0123456789+-.eE", *ps->p))
		ps->p++;
	n = (size_t)(ps->p - s);
	if (n >= sizeof(buf)) {
		json_error(ps, "number too long");
		return NULL;
	}
	/* strtod needs a terminated copy; the input is not terminated */
	memcpy(buf, s, n);
	buf[n] = '\0';
	errno = 0;
	j = json_new(ps, JSON_NUMBER);
	if (!j)
		return NULL;
	j->number = strtod(buf, &endp);
	if (*endp || errno == ERANGE || !isfinite(j->number)) {
		ps->p = s;
		json_error(ps, "bad number '%s'", buf);
		free(j);
		return NULL;
	}
	return j;
}

static int
json_literal(struct json_parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n))
		return 0;
	ps->p += n;
	return 1;
}

/* Grows a container by one slot; items (and keys for objects) stay parallel. */
static int
json_append(struct json_parser *ps, struct json *c, char *key, struct json *v)
{
	struct json **items;
	char **keys;

	items = realloc(c->items, (c->count + 1) * sizeof(*items));
	if (!items)
		goto oom;
	c->items = items;
	if (c->type == JSON_OBJECT) {
		keys = realloc(c->keys, (c->count + 1) * sizeof(*keys));
		if (!keys)
			goto oom;
		c->keys = keys;
		c->keys[c->count] = key;
	}
	c->items[c->count++] = v;
	return 0;
oom:
	json_error(ps, "out of memory");
	return -1;
}

static struct json *
json_container(struct json_parser *ps, enum json_type type)
{
	char close = type == JSON_OBJECT ? '}' : ']';
	struct json *c, *v;
	char *key = NULL;

	if (++ps->depth > JSON_MAX_DEPTH) {
		json_error(ps, "nesting too deep");
		return NULL;
	}
	c = json_new(ps, type);
	if (!c)
		return NULL;
	ps->p++;	/* opening bracket */
	json_skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return c;
	}
	for (;;) {
		json_skip_ws(ps);
		if (type == JSON_OBJECT) {
			if (ps->p >= ps->end || *ps->p != '"') {
				json_error(ps, "expected a key string");
				goto fail;
			}
			key = json_string_raw(ps);
			if (!key)
				goto fail;
			json_skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				json_error(ps, "expected ':'");
				goto fail;
			}
			ps->p++;
		}
		v = json_value(ps);
		if (!v)
			goto fail;
		if (json_append(ps, c, key, v)) {
			json_free(v);
			goto fail;
		}
		key = NULL;	/* owned by c now */
		json_skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == close) {
			ps->p++;
			break;
		}
		json_error(ps, "expected ',' or '%c'", close);
		goto fail;
	}
	ps->depth--;
	return c;
fail:
	free(key);
	json_free(c);
	return NULL;
}

static struct json *
json_value(struct json_parser *ps)
{
	struct json *j;
	int is_true;

	json_skip_ws(ps);
	if (ps->p >= ps->end) {
		json_error(ps, "unexpected end of input");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
		return json_container(ps, JSON_OBJECT);
	case '[':
		return json_container(ps, JSON_ARRAY);
	case '"':
		j = json_new(ps, JSON_STRING);
		if (!j)
			return NULL;
		j->string = json_string_raw(ps);
		if (!j->string) {
			free(j);
			return NULL;
		}
		return j;
	case 't':
	case 'f':
	case 'n':
		is_true = json_literal(ps, "true");
		if (is_true || json_literal(ps, "false")) {
			j = json_new(ps, JSON_BOOL);
			if (j)
				j->boolean = is_true;
			return j;
		}
		if (json_literal(ps, "null"))
			return json_new(ps, JSON_NULL);
		json_error(ps, "unknown literal");
		return NULL;
	default:
		return json_number(ps);
	}
}

struct json *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct json_parser ps = { text, text + len, text, err, errlen, 0 };
	struct json *j;

	if (errlen)
		err[0] = '\0';
	j = json_value(&ps);
	if (!j)
		return NULL;
	json_skip_ws(&ps);
	if (ps.p != ps.end) {
		json_error(&ps, "trailing characters");
		json_free(j);
		return NULL;
	}
	return j;
}

const struct json *
json_get(const struct json *obj, const char *key)
{
	size_t i;

	if (!obj || obj->type != JSON_OBJECT)
		return NULL;
	for (i = 0; i < obj->count; i++)
		if (!strcmp(obj->keys[i], key))
			return obj->items[i];
	return NULL;
}

void
json_free(struct json *j)
{
	size_t i;

	if (!j)
		return;
	for (i = 0; i < j->count; i++) {
		json_free(j->items[i]);
		if (j->keys)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->string);
	free(j);
}

int
json_write_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (fputc('"', f) == EOF)
		return -1;
	for (; *p; p++) {
		int r;

		if (*p == '"' || *p == '\\')
			r = fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			r = fprintf(f, "\\u%04x", *p);
		else
			r = fputc(*p, f) == EOF ? -1 : 1;
		if (r < 0)
			return -1;
	}
	return fputc('"', f) == EOF ? -1 : 0;
}
