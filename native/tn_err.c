/*
 * tn_err.c - the error record (see tn_err.h): the reason tables read from
 * azext_webapp/_reasons.def, filling a record, and a refusal's
 * server_message.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "tn_err.h"

#define KIND(name, doc) [TN_K_##name] = #name,
const char *const tn_kind_codes[TN_K_COUNT] = {
#include "tn_err_def.h"
};

#define PHASE(name, doc) [TN_P_##name] = #name,
const char *const tn_phase_codes[TN_P_COUNT] = {
	[TN_P_NONE] = "",
#include "tn_err_def.h"
};

#define FACT(name, doc) [TN_F_##name] = #name,
const char *const tn_fact_codes[TN_F_COUNT] = {
#include "tn_err_def.h"
};

#define REASON(name, kind, doc) [TN_R_##name] = #name,
const char *const tn_reason_codes[TN_R_COUNT] = {
	[TN_R_OK] = "",
#include "tn_err_def.h"
};

#define REASON(name, kind, doc) [TN_R_##name] = TN_K_##kind,
const enum tn_kind tn_reason_kinds[TN_R_COUNT] = {
	[TN_R_OK] = TN_K_INTERNAL,
#include "tn_err_def.h"
};

void tn_err_clear(struct tn_err *e)
{
	memset(e, 0, sizeof(*e));
}

static void tn_err_copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

int tn_err_set(struct tn_err *e, enum tn_reason reason, const struct tn_facts *f)
{
	if (!e)
		return -1;
	tn_err_clear(e);
	e->reason = reason;
	if (!f)
		return -1;
	e->phase = f->phase;
	e->status = f->status;
	e->port = f->port;
	e->errnum = f->errnum;
	e->verify_code = f->verify_code;
	e->opcode = f->opcode;
	e->timeout_ms = f->timeout_ms;
	e->ca_bundle = f->ca_bundle;
	e->size = f->size;
	e->limit = f->limit;
	tn_err_copy(e->host, sizeof(e->host), f->host);
	tn_err_copy(e->proxy, sizeof(e->proxy), f->proxy);
	tn_err_copy(e->verify_text, sizeof(e->verify_text), f->verify_text);
	tn_err_copy(e->ca_file, sizeof(e->ca_file), f->ca_file);
	tn_err_copy(e->detail, sizeof(e->detail), f->detail);
	return -1;
}

int tn_err_is_fds(int errnum)
{
	return errnum == EMFILE || errnum == ENFILE;
}

int tn_err_resource(struct tn_err *e, int errnum, const struct tn_facts *where)
{
	struct tn_facts f = where ? *where : (struct tn_facts){ .phase = TN_P_NONE };
	struct rlimit rl;

	f.errnum = errnum;
	if (!tn_err_is_fds(errnum))
		return tn_err_set(e, TN_R_RESOURCE_MEMORY, &f);
	if (errnum == EMFILE && !getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
		f.limit = (unsigned long long)rl.rlim_cur;
	return tn_err_set(e, TN_R_RESOURCE_FDS, &f);
}

/* --- server_message: the same steps as azext_webapp/_reasons.py */

static int tn_err_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The decoded bytes: never more than the bytes scanned (an escape is
 * longer than what it decodes to). */
struct tn_err_buf {
	unsigned char b[TN_CAP_BODY_SCAN];
	size_t n;
};

static void tn_err_put(struct tn_err_buf *o, const unsigned char *p, size_t n)
{
	if (n > sizeof(o->b) - o->n)
		n = sizeof(o->b) - o->n;
	memcpy(o->b + o->n, p, n);
	o->n += n;
}

static long tn_err_hex4(const unsigned char *p, size_t left)
{
	long v = 0;
	size_t i;

	if (left < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		unsigned char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static void tn_err_put_utf8(struct tn_err_buf *o, unsigned long cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xC0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xE0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xF0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (unsigned char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	tn_err_put(o, u, n);
}

/* A JSON string from p (after its opening quote) to its closing quote,
 * escapes decoded; what arrived of a cut-off one. */
static void tn_err_json_string(const unsigned char *p, size_t n, struct tn_err_buf *o)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	size_t i = 0;

	while (i < n && p[i] != '"') {
		const char *esc;
		long cp, low;

		if (p[i] != '\\') {
			tn_err_put(o, p + i, 1);
			i++;
			continue;
		}
		if (i + 1 >= n)
			return;
		esc = p[i + 1] ? strchr(from, p[i + 1]) : NULL;
		if (esc) {
			tn_err_put(o, (const unsigned char *)&to[esc - from], 1);
			i += 2;
			continue;
		}
		if (p[i + 1] != 'u' || (cp = tn_err_hex4(p + i + 2, n - i - 2)) < 0)
			return;
		i += 6;
		if (cp >= 0xD800 && cp < 0xDC00) {
			low = i + 1 < n && p[i] == '\\' && p[i + 1] == 'u' ?
			      tn_err_hex4(p + i + 2, n - i - 2) : -1;
			if (low >= 0xDC00 && low < 0xE000) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
				i += 6;
			} else {
				cp = 0xFFFD;
			}
		} else if (cp >= 0xDC00 && cp < 0xE000) {
			cp = 0xFFFD;
		}
		tn_err_put_utf8(o, (unsigned long)cp);
	}
}

/* The value of the first "message" key (any case) whose value is a string;
 * 0 when there is none. */
static int tn_err_json_message(const unsigned char *d, size_t n, size_t pos, struct tn_err_buf *o)
{
	static const char key[] = "message";
	const size_t kl = sizeof(key) - 1;

	for (; pos < n; pos++) {
		size_t v = pos + 1 + kl, i;

		if (d[pos] != '"' || v >= n || d[v] != '"')
			continue;
		for (i = 0; i < kl; i++)
			if ((d[pos + 1 + i] | 0x20) != key[i])
				break;
		if (i < kl)
			continue;
		v++;
		while (v < n && tn_err_space(d[v]))
			v++;
		if (v >= n || d[v] != ':')
			continue;
		v++;
		while (v < n && tn_err_space(d[v]))
			v++;
		if (v >= n || d[v] != '"')
			continue;
		tn_err_json_string(d + v + 1, n - v - 1, o);
		return 1;
	}
	return 0;
}

/* Controls (C0, DEL, C1 as UTF-8's C2 80..9F) to spaces, runs of spaces
 * to one, trimmed, cut to the cap without splitting a UTF-8 sequence. */
static void tn_err_one_line(const unsigned char *raw, size_t n, char *out, size_t cap)
{
	size_t i = 0, k = 0, back;

	while (i < n) {
		unsigned char c = raw[i];
		size_t step = 1;

		if (c == 0xC2 && i + 1 < n && raw[i + 1] >= 0x80 && raw[i + 1] <= 0x9F) {
			c = ' ';
			step = 2;
		} else if (c < 0x20 || c == 0x7F) {
			c = ' ';
		}
		i += step;
		if (c == ' ' && (!k || out[k - 1] == ' '))
			continue;
		if (k == cap) {	/* one byte past the cap: the cut is below */
			k++;
			break;
		}
		out[k++] = (char)c;
	}
	while (k && k <= cap && out[k - 1] == ' ')
		k--;
	if (k > cap) {
		unsigned char lead;
		size_t need;

		k = cap;
		for (back = 0; back < 4 && back < k && ((unsigned char)out[k - 1 - back] & 0xC0) == 0x80; back++)
			;
		if (back < k) {
			lead = (unsigned char)out[k - 1 - back];
			need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
			if (lead >= 0xC0 && back + 1 < need)
				k -= back + 1;
		}
		while (k && out[k - 1] == ' ')
			k--;
	}
	out[k] = '\0';
}

void tn_err_server_message(struct tn_err *e, const unsigned char *body, size_t len)
{
	struct tn_err_buf raw;
	size_t start = 0;

	e->server_message[0] = '\0';
	if (len > TN_CAP_BODY_SCAN)
		len = TN_CAP_BODY_SCAN;
	if (len >= 3 && !memcmp(body, "\xef\xbb\xbf", 3))
		start = 3;
	while (start < len && tn_err_space(body[start]))
		start++;
	if (start == len || body[start] == '<')
		return;
	raw.n = 0;
	if (body[start] == '{') {
		if (!tn_err_json_message(body, len, start, &raw))
			return;
	} else {
		size_t end = start;

		while (end < len && body[end] != '\r' && body[end] != '\n')
			end++;
		tn_err_put(&raw, body + start, end - start);
	}
	tn_err_one_line(raw.b, raw.n, e->server_message, TN_CAP_SERVER_MESSAGE);
}
