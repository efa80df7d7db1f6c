/*
 * scm_json.h - a small JSON reader (DOM) for the SCM server's config file,
 * plus the one writer helper the ready file needs.
 *
 * Strict RFC 8259: no comments, no trailing commas.  Strings are decoded to
 * UTF-8 (\u escapes and surrogate pairs included) and NUL-terminated; a
 * string containing \u0000 is rejected because every consumer is C.
 */
#ifndef SCM_JSON_H
#define SCM_JSON_H

#include <stddef.h>
#include <stdio.h>

enum json_type {
	JSON_NULL,
	JSON_BOOL,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT
};

struct json {
	enum json_type type;
	int boolean;
	double number;
	char *string;		/* JSON_STRING */
	struct json **items;	/* JSON_ARRAY values, JSON_OBJECT values */
	char **keys;		/* JSON_OBJECT keys, parallel to items */
	size_t count;
};

/* Parses text[0..len); NULL with a message in err on failure. */
struct json *json_parse(const char *text, size_t len, char *err, size_t errlen);

/* Member of an object by key, or NULL (also when obj is not an object). */
const struct json *json_get(const struct json *obj, const char *key);

void json_free(struct json *j);

/* Writes s as a JSON string literal (quoted, escaped). */
int json_write_string(FILE *f, const char *s);

#endif
