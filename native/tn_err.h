/*
 * tn_err.h - the plain C error record every native layer fills: a reason
 * code and the facts of the failure, never a sentence.
 *
 * The reasons, their kinds, the phases and the fact names are defined once,
 * in azext_webapp/_reasons.def (it travels in the wheel, where the portable
 * engine reads it too); this header and tn_err.c include it as an X-macro
 * through tn_err_def.h.
 * Native threads never touch a PyObject: they describe a failure here and
 * tn_module.c turns it into azext_webapp._tunnel.Error(reason, facts) only
 * after it holds the GIL again (the _ssl.c model). What the user reads is
 * written in azext_webapp/_errors.py, chosen by reason. Nothing that fills
 * a tn_err is ever given a credential.
 */
#ifndef TN_ERR_H
#define TN_ERR_H

#include <stddef.h>

enum tn_kind {
#define KIND(name, doc) TN_K_##name,
#include "tn_err_def.h"
	TN_K_COUNT
};

enum tn_err_phase {
	TN_P_NONE = 0,
#define PHASE(name, doc) TN_P_##name,
#include "tn_err_def.h"
	TN_P_COUNT
};

/* The keys of a facts dict, in the file's order (tn_module.c names them). */
enum tn_fact {
#define FACT(name, doc) TN_F_##name,
#include "tn_err_def.h"
	TN_F_COUNT
};

enum tn_cap {
#define CAP(name, n, doc) TN_CAP_##name = (n),
#include "tn_err_def.h"
};

enum tn_reason {
	TN_R_OK = 0,
#define REASON(name, kind, doc) TN_R_##name,
#include "tn_err_def.h"
	TN_R_COUNT
};

/* The names as the file writes them (upper case), indexed by the enums. */
extern const char *const tn_kind_codes[TN_K_COUNT];
extern const char *const tn_phase_codes[TN_P_COUNT];	/* [TN_P_NONE] is "" */
extern const char *const tn_fact_codes[TN_F_COUNT];
extern const char *const tn_reason_codes[TN_R_COUNT];	/* [TN_R_OK] is "" */
extern const enum tn_kind tn_reason_kinds[TN_R_COUNT];

/* A failure: its reason and the facts known (0 / "" when not). */
struct tn_err {
	enum tn_reason reason;
	enum tn_err_phase phase;
	int status;		/* HTTP status */
	int port;
	int errnum;		/* errno; tn_module.c gives its name */
	int verify_code;	/* X509_V_ERR_* */
	int opcode;
	int timeout_ms;
	int ca_bundle;		/* checked against REQUESTS_CA_BUNDLE */
	unsigned long long size, limit;
	char host[256];
	char proxy[264];
	char verify_text[96];
	char ca_file[256];
	char detail[96];
	char server_message[TN_CAP_SERVER_MESSAGE + 1];
};

/* What a call site knows; strings are copied (cut to their field's size). */
struct tn_facts {
	enum tn_err_phase phase;
	int status, port, errnum, verify_code, opcode, timeout_ms, ca_bundle;
	unsigned long long size, limit;
	const char *host, *proxy, *verify_text, *ca_file, *detail;
};

void tn_err_clear(struct tn_err *e);
/* Replace e with reason and the facts f (NULL: none). Returns -1 so call
 * sites can `return tn_err_set(...)`; e NULL is allowed. */
int tn_err_set(struct tn_err *e, enum tn_reason reason, const struct tn_facts *f);
#define TN_FAIL(e, reason, ...) tn_err_set((e), (reason), &(const struct tn_facts){ __VA_ARGS__ })

/* EMFILE / ENFILE */
int tn_err_is_fds(int errnum);
/* Out of descriptors (with the open-file limit for EMFILE, so the user
 * knows what to raise) or, for any other errnum, out of memory; `where`
 * says where (host, port, phase), or is NULL. Returns -1. */
int tn_err_resource(struct tn_err *e, int errnum, const struct tn_facts *where);

/* The one-line server_message of a refusal's body (its JSON Message, else
 * its first text line; azext_webapp/_reasons.py's server_message, byte for
 * byte). Empty when there is none. */
void tn_err_server_message(struct tn_err *e, const unsigned char *body, size_t len);

#endif
