/*
 * tn_module.c - the CPython binding: azext_webapp._tunnel.
 *
 * Stable ABI only (Py_LIMITED_API 3.10): a heap type from a spec, module
 * state for the type and the exception, multi-phase init (xxlimited.c).
 * Every blocking call runs with the GIL released; native errors (tn_err)
 * become Error(reason, facts) only after the GIL is back. Used only by
 * tunnel.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tn_config.h"
#include "tn_engine.h"
#include "tn_loop.h"
#include "tn_probe.h"
#include "tn_pump.h"
#include "tn_time.h"

typedef struct {
	PyObject *engine_type;
	PyObject *pump_type;
	PyObject *error;	/* _tunnel.Error(reason, facts) */
	PyObject *termination;	/* "azext_webapp._termination" */
	/* the names of _reasons.def, lower case, indexed by the enums */
	PyObject *reasons;	/* tuple of str, [TN_R_OK] "" */
	PyObject *phases;	/* tuple of str, [TN_P_NONE] "" */
	PyObject *facts;	/* tuple of str */
} tn_state;

typedef struct {
	PyObject_HEAD
	struct tn_engine *eng;
} EngineObject;

static tn_state *tn_state_of_type(PyTypeObject *tp)
{
	return PyType_GetModuleState(tp);
}

/* Text the engine holds (a host, OpenSSL's words, what a server said):
 * UTF-8 where it came from Python, anything where it came from a server,
 * and perhaps cut inside a character. */
static int tn_put_text(PyObject *d, tn_state *st, enum tn_fact key, const char *s)
{
	PyObject *v;
	int rc;

	if (!s || !s[0])
		return 0;
	v = PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
	if (!v)
		return -1;
	rc = PyDict_SetItem(d, PyTuple_GetItem(st->facts, key), v);
	Py_DECREF(v);
	return rc;
}

static int tn_put_num(PyObject *d, tn_state *st, enum tn_fact key, unsigned long long n)
{
	PyObject *v;
	int rc;

	if (!n)
		return 0;
	v = PyLong_FromUnsignedLongLong(n);
	if (!v)
		return -1;
	rc = PyDict_SetItem(d, PyTuple_GetItem(st->facts, key), v);
	Py_DECREF(v);
	return rc;
}

/* The facts of e as a dict of the facts known (azext_webapp/_reasons.def). */
static PyObject *tn_facts_dict(tn_state *st, const struct tn_err *e)
{
	PyObject *d = PyDict_New();
	const char *errname = e->errnum ? strerrorname_np(e->errnum) : NULL;

	if (!d)
		return NULL;
	if (tn_put_text(d, st, TN_F_HOST, e->host) ||
	    tn_put_num(d, st, TN_F_PORT, (unsigned)e->port) ||
	    tn_put_num(d, st, TN_F_STATUS, (unsigned)e->status) ||
	    tn_put_text(d, st, TN_F_PROXY, e->proxy) ||
	    (e->phase != TN_P_NONE &&
	     PyDict_SetItem(d, PyTuple_GetItem(st->facts, TN_F_PHASE),
			    PyTuple_GetItem(st->phases, e->phase))) ||
	    tn_put_text(d, st, TN_F_ERRNO, errname) ||
	    tn_put_num(d, st, TN_F_VERIFY_CODE, (unsigned)e->verify_code) ||
	    tn_put_text(d, st, TN_F_VERIFY_TEXT, e->verify_text) ||
	    (e->ca_bundle && PyDict_SetItem(d, PyTuple_GetItem(st->facts, TN_F_CA_BUNDLE), Py_True)) ||
	    tn_put_text(d, st, TN_F_CA_FILE, e->ca_file) ||
	    tn_put_num(d, st, TN_F_LIMIT, e->limit) ||
	    tn_put_num(d, st, TN_F_SIZE, e->size) ||
	    tn_put_num(d, st, TN_F_OPCODE, (unsigned)e->opcode) ||
	    tn_put_num(d, st, TN_F_TIMEOUT_MS, (unsigned)e->timeout_ms) ||
	    tn_put_text(d, st, TN_F_SERVER_MESSAGE, e->server_message) ||
	    tn_put_text(d, st, TN_F_DETAIL, e->detail)) {
		Py_DECREF(d);
		return NULL;
	}
	return d;
}

/* (reason, facts) of a failure, as Error's args and in events. */
static PyObject *tn_reason_and_facts(tn_state *st, const struct tn_err *e)
{
	PyObject *facts = tn_facts_dict(st, e), *t;

	if (!facts)
		return NULL;
	t = PyTuple_Pack(2, PyTuple_GetItem(st->reasons, e->reason), facts);
	Py_DECREF(facts);
	return t;
}

static PyObject *tn_raise(tn_state *st, const struct tn_err *e)
{
	PyObject *args = tn_reason_and_facts(st, e);

	if (args) {
		PyErr_SetObject(st->error, args);
		Py_DECREF(args);
	}
	return NULL;
}

/* Between two slices of a wait: run Python's signal handlers, then ask the
 * extension's record of signals (azext_webapp/_termination.py: its handlers
 * only record) when that module is loaded, as only it installs them. Looked
 * up, not imported: the module loads without the package (other CPythons).
 * -1 with an exception set ends the wait. */
static int tn_signals(tn_state *st)
{
	PyObject *termination, *r;

	if (PyErr_CheckSignals())
		return -1;
	termination = PyImport_GetModule(st->termination);
	if (!termination)
		return PyErr_Occurred() ? -1 : 0;
	r = PyObject_CallMethod(termination, "raise_if_signalled", NULL);
	Py_DECREF(termination);
	if (!r)
		return -1;
	Py_DECREF(r);
	return 0;
}

static char *tn_dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Header values go into requests as they are: one line each. The value is
 * never part of the message. */
static int tn_check_header_value(const char *value, const char *what)
{
	if (value && strpbrk(value, "\r\n")) {
		PyErr_Format(PyExc_ValueError, "the %s value must be one header line", what);
		return -1;
	}
	return 0;
}

/* "host:port" only: credentials have their own argument, proxy_auth, so
 * that nothing that names the proxy can show them. */
static int tn_check_proxy(const char *proxy)
{
	if (proxy && strchr(proxy, '@')) {
		PyErr_SetString(PyExc_ValueError,
				"proxy must be host:port; its credentials go in proxy_auth");
		return -1;
	}
	return 0;
}

/* The request path goes into the request line as it is: an absolute path
 * of printable ASCII (query included, already percent-encoded). */
static int tn_check_path(const char *path)
{
	const char *p;

	if (!path)
		return 0;
	for (p = path; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			break;
	if (path[0] != '/' || *p || p - path > 2048) {
		PyErr_SetString(PyExc_ValueError,
				"path must be an absolute request path of printable ASCII without spaces");
		return -1;
	}
	return 0;
}

static PyObject *Engine_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "host", "port", "authorization", "bind", "bind_port",
				  "instance", "target_port", "ping_interval", "ca_file",
				  "verify", "proxy", "proxy_auth", "listen", "path", "hold", NULL };
	const char *host, *auth, *bind = "127.0.0.1", *instance = NULL, *ca = NULL, *proxy = NULL;
	const char *proxy_auth = NULL, *path = NULL;
	int port, bind_port = 0, target_port = 0, verify = 1, listen = 1, hold = 0, rc;
	double ping = 30.0;
	struct tn_config cfg;
	struct tn_err err;
	EngineObject *self;
	allocfunc alloc;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "sis|sizidzpzzpzp", kwlist, &host, &port, &auth,
					 &bind, &bind_port, &instance, &target_port, &ping,
					 &ca, &verify, &proxy, &proxy_auth, &listen, &path, &hold))
		return NULL;
	if (tn_check_header_value(auth, "Authorization") ||
	    tn_check_header_value(proxy_auth, "Proxy-Authorization") || tn_check_proxy(proxy) ||
	    tn_check_header_value(instance, "instance") || tn_check_path(path))
		return NULL;
	if (port <= 0 || port > 65535 || bind_port < 0 || bind_port > 65535 ||
	    target_port < 0 || target_port > 65535) {
		PyErr_SetString(PyExc_ValueError, "port out of range");
		return NULL;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.host = strdup(host);
	cfg.authorization = strdup(auth);
	cfg.bind_addr = listen ? strdup(bind) : NULL;	/* NULL: adopt() only */
	cfg.instance = tn_dup_opt(instance);
	cfg.path = tn_dup_opt(path);
	cfg.ca_file = tn_dup_opt(ca);
	cfg.proxy = tn_dup_opt(proxy);
	cfg.proxy_auth = proxy ? tn_dup_opt(proxy_auth) : NULL;	/* for the proxy only */
	cfg.port = port;
	cfg.bind_port = bind_port;
	cfg.target_port = target_port;
	cfg.ping_secs = ping < 1.0 ? 1 : (int)(ping + 0.5);
	cfg.verify = verify;
	cfg.hold = hold;
	if (!cfg.host || !cfg.authorization || (listen && !cfg.bind_addr) || (instance && !cfg.instance) ||
	    (path && !cfg.path) ||
	    (ca && !cfg.ca_file) || (proxy && !cfg.proxy) || (proxy && proxy_auth && !cfg.proxy_auth)) {
		tn_config_free(&cfg);
		return PyErr_NoMemory();
	}

	alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
	self = (EngineObject *)alloc(tp, 0);
	if (!self) {
		tn_config_free(&cfg);
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = tn_engine_create(&self->eng, &cfg, &err);
	Py_END_ALLOW_THREADS
	if (rc) {
		tn_config_free(&cfg);
		Py_DECREF(self);
		return tn_raise(tn_state_of_type(tp), &err);
	}
	return (PyObject *)self;
}

static void Engine_dealloc(EngineObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tfree = (freefunc)PyType_GetSlot(tp, Py_tp_free);
	struct tn_engine *eng = self->eng;

	self->eng = NULL;
	if (eng) {
		Py_BEGIN_ALLOW_THREADS
		tn_engine_free(eng);	/* stops and joins the service thread */
		Py_END_ALLOW_THREADS
	}
	tfree(self);
	Py_DECREF(tp);
}

static PyObject *Engine_start(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
	struct tn_err err;
	int rc;

	Py_BEGIN_ALLOW_THREADS
	rc = tn_engine_start(self->eng, &err);
	Py_END_ALLOW_THREADS
	if (rc)
		return tn_raise(tn_state_of_type(Py_TYPE(self)), &err);
	return PyLong_FromLong(self->eng->port);
}

/* The handshake is waited for in slices; between them tn_signals runs,
 * and a signal (Ctrl+C, SIGTERM) abandons it. */
static PyObject *Engine_check(EngineObject *self, PyObject *args)
{
	double timeout = 15.0;
	struct tn_err err;
	int64_t deadline;
	uint64_t gen;
	int rc, ms;

	if (!PyArg_ParseTuple(args, "|d", &timeout))
		return NULL;
	ms = timeout <= 0 ? 1 : timeout > 3600 ? 3600000 : (int)(timeout * 1000);
	if (tn_engine_check_post(self->eng, &gen, &err))
		return tn_raise(tn_state_of_type(Py_TYPE(self)), &err);
	deadline = tn_time_now_ms() + ms;
	for (;;) {
		Py_BEGIN_ALLOW_THREADS
		rc = tn_engine_check_wait(self->eng, gen, deadline, TN_TIME_SLICE_MS, ms, &err);
		Py_END_ALLOW_THREADS
		if (rc != 1)
			break;
		if (tn_signals(tn_state_of_type(Py_TYPE(self)))) {
			tn_engine_check_abandon(self->eng, gen);
			return NULL;
		}
	}
	if (rc)
		return tn_raise(tn_state_of_type(Py_TYPE(self)), &err);
	Py_RETURN_NONE;
}

/* set_authorization(value): new handshakes send it; open WebSockets keep
 * going. The old value is wiped. */
static PyObject *Engine_set_authorization(EngineObject *self, PyObject *args)
{
	const char *value;
	char *copy;

	if (!PyArg_ParseTuple(args, "s", &value))
		return NULL;
	if (tn_check_header_value(value, "Authorization"))
		return NULL;
	copy = strdup(value);
	if (!copy)
		return PyErr_NoMemory();
	tn_engine_set_authorization(self->eng, copy);	/* brief lock: no GIL release */
	Py_RETURN_NONE;
}

static PyObject *Engine_stop(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
	Py_BEGIN_ALLOW_THREADS
	tn_engine_stop(self->eng);
	Py_END_ALLOW_THREADS
	Py_RETURN_NONE;
}

static PyObject *Engine_stats(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
	struct tn_stats *s = &self->eng->env.stats;

	/* atomics only: never blocks on the service thread */
	return Py_BuildValue("{sKsKsKsKsK}",
			     "open", (unsigned long long)atomic_load(&s->open),
			     "total", (unsigned long long)atomic_load(&s->total),
			     "bytes_up", (unsigned long long)atomic_load(&s->bytes_up),
			     "bytes_down", (unsigned long long)atomic_load(&s->bytes_down),
			     "failures", (unsigned long long)atomic_load(&s->failures));
}

/* (kind, conn_id, peer, bytes_up, bytes_down, reason, facts, remote_closed);
 * reason "" and facts None unless it failed or was held for one. */
static PyObject *tn_event_tuple(tn_state *st, const struct tn_event *e)
{
	static const char *names[] = { "", "opened", "closed", "failed", "held" };
	int why = (e->kind == TN_EV_FAILED || e->kind == TN_EV_HELD) && e->err.reason != TN_R_OK;
	PyObject *facts = why ? tn_facts_dict(st, &e->err) : Py_NewRef(Py_None);
	PyObject *t;

	if (!facts)
		return NULL;
	t = Py_BuildValue("(sKsKKOOO)", names[e->kind], (unsigned long long)e->conn_id, e->peer,
			  (unsigned long long)e->bytes_up, (unsigned long long)e->bytes_down,
			  PyTuple_GetItem(st->reasons, why ? e->err.reason : TN_R_OK),
			  facts, e->remote_closed ? Py_True : Py_False);
	Py_DECREF(facts);
	return t;
}

static PyObject *Engine_poll_events(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
	enum { BATCH = 256 };
	struct tn_event *evs = malloc(BATCH * sizeof(*evs));
	tn_state *st = tn_state_of_type(Py_TYPE(self));
	PyObject *list = PyList_New(0);
	unsigned n, i;

	if (!evs || !list) {
		free(evs);
		Py_XDECREF(list);
		return PyErr_NoMemory();
	}
	do {
		Py_BEGIN_ALLOW_THREADS
		n = tn_events_drain(&self->eng->env.events, evs, BATCH);
		Py_END_ALLOW_THREADS
		for (i = 0; i < n; i++) {
			PyObject *t = tn_event_tuple(st, &evs[i]);

			if (!t || PyList_Append(list, t)) {
				Py_XDECREF(t);
				Py_DECREF(list);
				free(evs);
				return NULL;
			}
			Py_DECREF(t);
		}
	} while (n == BATCH);
	free(evs);
	return list;
}

/* wait(timeout) -> True when woken (events or stop), False on timeout.
 * A signal interrupts the wait (EINTR) so that tn_signals sees it now;
 * slices cover a signal delivered to another thread, whose handler only
 * runs when this one checks. */
static PyObject *Engine_wait(EngineObject *self, PyObject *args)
{
	double timeout = -1;
	int64_t deadline;
	int rc, ms;

	if (!PyArg_ParseTuple(args, "|d", &timeout))
		return NULL;
	ms = timeout < 0 ? -1 : timeout > 86400 ? 86400000 : (int)(timeout * 1000);
	deadline = tn_time_now_ms() + (ms < 0 ? 0 : ms);
	for (;;) {
		int64_t left = deadline - tn_time_now_ms();
		int slice = ms < 0 || left > TN_TIME_SLICE_MS ? TN_TIME_SLICE_MS :
			    left < 0 ? 0 : (int)left;

		Py_BEGIN_ALLOW_THREADS
		rc = tn_events_wait(&self->eng->env.events, slice);
		Py_END_ALLOW_THREADS
		if (tn_signals(tn_state_of_type(Py_TYPE(self))))
			return NULL;
		if (rc > 0 || (ms >= 0 && tn_time_now_ms() >= deadline))
			break;
	}
	return PyBool_FromLong(rc > 0);
}

static PyObject *Engine_adopt(EngineObject *self, PyObject *args)
{
	struct tn_err err;
	uint64_t id = 0;
	int fd, rc;

	if (!PyArg_ParseTuple(args, "i", &fd))
		return NULL;
	if (fd < 0) {
		PyErr_SetString(PyExc_ValueError, "adopt() needs an open file descriptor");
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = tn_engine_adopt(self->eng, fd, &id, &err);	/* owns fd from here on */
	Py_END_ALLOW_THREADS
	if (rc)
		return tn_raise(tn_state_of_type(Py_TYPE(self)), &err);
	return PyLong_FromUnsignedLongLong(id);
}

/* send_text(conn_id, text): one Text frame (UTF-8) on that connection. */
static PyObject *Engine_send_text(EngineObject *self, PyObject *args)
{
	unsigned long long id;
	struct tn_err err;
	const char *text;
	Py_ssize_t n;
	int rc;

	if (!PyArg_ParseTuple(args, "Ks#", &id, &text, &n))
		return NULL;
	if (n > TN_FRAME_MAX) {
		PyErr_Format(PyExc_ValueError, "a text frame holds at most %d bytes", TN_FRAME_MAX);
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = tn_engine_send_text(self->eng, id, text, (size_t)n, &err);
	Py_END_ALLOW_THREADS
	if (rc)
		return tn_raise(tn_state_of_type(Py_TYPE(self)), &err);
	Py_RETURN_NONE;
}

/* release(retry): the connections held retry (True) or end (False). */
static PyObject *Engine_release(EngineObject *self, PyObject *args)
{
	int retry;

	if (!PyArg_ParseTuple(args, "p", &retry))
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	tn_engine_release(self->eng, retry);
	Py_END_ALLOW_THREADS
	Py_RETURN_NONE;
}

static PyObject *Engine_running(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
	return PyBool_FromLong(tn_engine_running(self->eng));
}

static PyMethodDef Engine_methods[] = {
	{ "start", (PyCFunction)Engine_start, METH_NOARGS, "Bind, listen, start the service thread; returns the port." },
	{ "check", (PyCFunction)Engine_check, METH_VARARGS, "One WebSocket handshake to the endpoint, then close." },
	{ "stop", (PyCFunction)Engine_stop, METH_NOARGS, "Close every connection and join the thread." },
	{ "stats", (PyCFunction)Engine_stats, METH_NOARGS, "Live counters (never blocks)." },
	{ "poll_events", (PyCFunction)Engine_poll_events, METH_NOARGS, "Drain the event queue." },
	{ "wait", (PyCFunction)Engine_wait, METH_VARARGS, "Wait for events or stop, interruptible." },
	{ "running", (PyCFunction)Engine_running, METH_NOARGS, "Whether the service thread runs." },
	{ "adopt", (PyCFunction)Engine_adopt, METH_VARARGS,
	  "Relay a connected socket (the engine owns the fd); returns its connection id." },
	{ "send_text", (PyCFunction)Engine_send_text, METH_VARARGS,
	  "A Text frame on a connection, before its local data not yet sent." },
	{ "release", (PyCFunction)Engine_release, METH_VARARGS,
	  "The connections held (hold=True) retry, or end as they would have." },
	{ "set_authorization", (PyCFunction)Engine_set_authorization, METH_VARARGS,
	  "New handshakes send this Authorization value; open connections are untouched." },
	{ NULL, NULL, 0, NULL }
};

static PyType_Slot Engine_slots[] = {
	{ Py_tp_new, Engine_new },
	{ Py_tp_dealloc, Engine_dealloc },
	{ Py_tp_methods, Engine_methods },
	{ Py_tp_doc, "Native tunnel engine (use azext_webapp.tunnel.Tunnel)." },
	{ 0, NULL }
};

static PyType_Spec Engine_spec = {
	"azext_webapp._tunnel.Engine", sizeof(EngineObject), 0,
	Py_TPFLAGS_DEFAULT, Engine_slots
};

/* Pump(in_fd, out_fd): stdio mode (tn_pump.c). */
typedef struct {
	PyObject_HEAD
	struct tn_pump *pump;
	int peer_fd;		/* until take_peer() */
} PumpObject;

static PyObject *Pump_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "in_fd", "out_fd", NULL };
	struct tn_err err;
	PumpObject *self;
	allocfunc alloc;
	int in_fd, out_fd, rc;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "ii", kwlist, &in_fd, &out_fd))
		return NULL;
	alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
	self = (PumpObject *)alloc(tp, 0);
	if (!self)
		return NULL;
	self->peer_fd = -1;
	rc = tn_pump_start(&self->pump, in_fd, out_fd, &self->peer_fd, &err);
	if (rc) {
		Py_DECREF(self);
		return tn_raise(tn_state_of_type(tp), &err);
	}
	return (PyObject *)self;
}

static void Pump_close_native(PumpObject *self)
{
	struct tn_pump *pump = self->pump;

	self->pump = NULL;
	if (self->peer_fd >= 0) {
		close(self->peer_fd);
		self->peer_fd = -1;
	}
	if (pump) {
		Py_BEGIN_ALLOW_THREADS
		tn_pump_free(pump);	/* wakes and joins the thread */
		Py_END_ALLOW_THREADS
	}
}

static void Pump_dealloc(PumpObject *self)
{
	PyTypeObject *tp = Py_TYPE(self);
	freefunc tfree = (freefunc)PyType_GetSlot(tp, Py_tp_free);

	Pump_close_native(self);
	tfree(self);
	Py_DECREF(tp);
}

static PyObject *Pump_take_peer(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
	int fd = self->peer_fd;

	if (fd < 0) {
		PyErr_SetString(PyExc_RuntimeError, "the peer descriptor was already taken");
		return NULL;
	}
	self->peer_fd = -1;
	return PyLong_FromLong(fd);
}

/* wait(timeout) -> True once both directions ended. Short native waits
 * so that tn_signals (Ctrl+C, SIGTERM) runs in between, whatever timeout
 * the caller gave. */
static PyObject *Pump_wait(PumpObject *self, PyObject *args)
{
	double timeout = 0.5;
	int64_t deadline;
	int done, ms;

	if (!PyArg_ParseTuple(args, "|d", &timeout))
		return NULL;
	if (!self->pump)
		Py_RETURN_TRUE;
	ms = timeout <= 0 ? 0 : timeout > 3600 ? 3600000 : (int)(timeout * 1000);
	deadline = tn_time_now_ms() + ms;
	for (;;) {
		int64_t left = deadline - tn_time_now_ms();
		int slice = left > TN_TIME_SLICE_MS ? TN_TIME_SLICE_MS : left < 0 ? 0 : (int)left;
		struct tn_pump *pump = self->pump;	/* a signal handler may have closed it */

		if (!pump)
			Py_RETURN_TRUE;
		Py_BEGIN_ALLOW_THREADS
		done = tn_pump_wait(pump, slice);
		Py_END_ALLOW_THREADS
		if (tn_signals(tn_state_of_type(Py_TYPE(self))))
			return NULL;
		if (done || left <= TN_TIME_SLICE_MS)
			break;
	}
	return PyBool_FromLong(done);
}

static PyObject *Pump_counts(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
	uint64_t in = 0, out = 0;

	if (self->pump)
		tn_pump_counts(self->pump, &in, &out);
	return Py_BuildValue("(KK)", (unsigned long long)in, (unsigned long long)out);
}

static PyObject *Pump_error(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
	struct tn_err err;

	if (!self->pump)
		Py_RETURN_NONE;
	tn_pump_error(self->pump, &err);
	if (err.reason == TN_R_OK)
		Py_RETURN_NONE;
	return tn_reason_and_facts(tn_state_of_type(Py_TYPE(self)), &err);
}

static PyObject *Pump_close(PumpObject *self, PyObject *Py_UNUSED(ignored))
{
	Pump_close_native(self);
	Py_RETURN_NONE;
}

static PyMethodDef Pump_methods[] = {
	{ "take_peer", (PyCFunction)Pump_take_peer, METH_NOARGS, "The socket for Engine.adopt(); once." },
	{ "wait", (PyCFunction)Pump_wait, METH_VARARGS, "Wait for the end; True when both directions ended." },
	{ "counts", (PyCFunction)Pump_counts, METH_NOARGS, "(bytes read from in_fd, bytes written to out_fd)." },
	{ "error", (PyCFunction)Pump_error, METH_NOARGS, "None, or (reason, facts) of an early end." },
	{ "close", (PyCFunction)Pump_close, METH_NOARGS, "Stop the thread (from any state) and free; idempotent." },
	{ NULL, NULL, 0, NULL }
};

static PyType_Slot Pump_slots[] = {
	{ Py_tp_new, Pump_new },
	{ Py_tp_dealloc, Pump_dealloc },
	{ Py_tp_methods, Pump_methods },
	{ Py_tp_doc, "stdin/stdout <-> a socketpair, on a native thread (use Tunnel.relay_stdio)." },
	{ 0, NULL }
};

static PyType_Spec Pump_spec = {
	"azext_webapp._tunnel.Pump", sizeof(PumpObject), 0,
	Py_TPFLAGS_DEFAULT, Pump_slots
};

/* The transfer runs in slices; between them tn_signals runs, and a signal
 * aborts it (its connection is closed at once). */
static PyObject *tn_http_get(PyObject *module, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "url", "authorization", "instance", "ca_file", "verify",
				  "proxy", "proxy_auth", "timeout", NULL };
	struct tn_probe_req q;
	struct tn_probe_resp resp;
	struct tn_probe *probe;
	struct tn_err err;
	double timeout = 30.0;
	PyObject *ret;
	int rc, done;

	memset(&q, 0, sizeof(q));
	q.verify = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|zzpzzd", kwlist, &q.url, &q.authorization,
					 &q.instance, &q.ca_file, &q.verify, &q.proxy,
					 &q.proxy_auth, &timeout))
		return NULL;
	if (tn_check_header_value(q.authorization, "Authorization") ||
	    tn_check_header_value(q.proxy_auth, "Proxy-Authorization") ||
	    tn_check_header_value(q.instance, "instance") || tn_check_proxy(q.proxy))
		return NULL;
	q.timeout_ms = timeout <= 0 ? 1 : (long)(timeout * 1000);
	if (tn_probe_start(&q, &probe, &err))
		return tn_raise(PyModule_GetState(module), &err);
	for (;;) {
		Py_BEGIN_ALLOW_THREADS
		done = tn_probe_run(probe, TN_TIME_SLICE_MS);
		Py_END_ALLOW_THREADS
		if (done)
			break;
		if (tn_signals(PyModule_GetState(module))) {
			Py_BEGIN_ALLOW_THREADS
			tn_probe_free(probe);
			Py_END_ALLOW_THREADS
			return NULL;
		}
	}
	rc = tn_probe_result(probe, &resp, &err);
	Py_BEGIN_ALLOW_THREADS
	tn_probe_free(probe);
	Py_END_ALLOW_THREADS
	if (rc)
		return tn_raise(PyModule_GetState(module), &err);
	ret = Py_BuildValue("(ly#)", resp.status, resp.body, (Py_ssize_t)resp.body_len);
	free(resp.body);
	return ret;
}

static PyMethodDef tn_functions[] = {
	{ "http_get", (PyCFunction)(void (*)(void))tn_http_get, METH_VARARGS | METH_KEYWORDS,
	  "GET url with libcurl; returns (status, body)." },
	{ NULL, NULL, 0, NULL }
};

/* The names of one list of _reasons.def, as Python writes them (lower case). */
static PyObject *tn_names(const char *const *codes, int n)
{
	PyObject *t = PyTuple_New(n);
	int i;

	for (i = 0; t && i < n; i++) {
		PyObject *code = PyUnicode_FromString(codes[i]);
		PyObject *name = code ? PyObject_CallMethod(code, "lower", NULL) : NULL;

		Py_XDECREF(code);
		if (!name) {
			Py_CLEAR(t);
			break;
		}
		PyUnicode_InternInPlace(&name);
		PyTuple_SetItem(t, i, name);	/* steals name */
	}
	return t;
}

/* REASONS: ((reason, kind), ...) in the native engine's order, KINDS, PHASES,
 * FACTS and the caps: what tests compare with azext_webapp/_reasons.py. */
static int tn_add_vocabulary(PyObject *m, tn_state *st)
{
	PyObject *kinds = tn_names(tn_kind_codes, TN_K_COUNT), *reasons = NULL, *phases = NULL;
	int i, rc = -1;

	st->reasons = tn_names(tn_reason_codes, TN_R_COUNT);
	st->phases = tn_names(tn_phase_codes, TN_P_COUNT);
	st->facts = tn_names(tn_fact_codes, TN_F_COUNT);
	if (!kinds || !st->reasons || !st->phases || !st->facts)
		goto out;
	phases = PyTuple_GetSlice(st->phases, 1, TN_P_COUNT);	/* without "" */
	reasons = PyTuple_New(TN_R_COUNT - 1);
	for (i = 1; reasons && i < TN_R_COUNT; i++) {
		PyObject *pair = PyTuple_Pack(2, PyTuple_GetItem(st->reasons, i),
					      PyTuple_GetItem(kinds, tn_reason_kinds[i]));

		if (!pair)
			goto out;
		PyTuple_SetItem(reasons, i - 1, pair);
	}
	if (reasons && !PyModule_AddObjectRef(m, "REASONS", reasons) &&
	    !PyModule_AddObjectRef(m, "KINDS", kinds) &&
	    !PyModule_AddObjectRef(m, "FACTS", st->facts) &&
	    phases && !PyModule_AddObjectRef(m, "PHASES", phases) &&
	    !PyModule_AddIntConstant(m, "SERVER_MESSAGE_MAX", TN_CAP_SERVER_MESSAGE) &&
	    !PyModule_AddIntConstant(m, "BODY_SCAN", TN_CAP_BODY_SCAN))
		rc = 0;
out:
	Py_XDECREF(kinds);
	Py_XDECREF(reasons);
	Py_XDECREF(phases);
	return rc;
}

static int tn_exec(PyObject *m)
{
	tn_state *st = PyModule_GetState(m);

	/* library diagnostics go nowhere unless WEBAPP_TUNNEL_DEBUG is set */
	tn_loop_log(getenv("WEBAPP_TUNNEL_DEBUG") != NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		PyErr_SetString(PyExc_ImportError, "libcurl failed to initialise");
		return -1;
	}
	st->termination = PyUnicode_InternFromString("azext_webapp._termination");
	if (!st->termination)
		return -1;
	st->error = PyErr_NewException("azext_webapp._tunnel.Error", NULL, NULL);
	if (!st->error || PyModule_AddObjectRef(m, "Error", st->error))
		return -1;
	st->engine_type = PyType_FromModuleAndSpec(m, &Engine_spec, NULL);
	if (!st->engine_type || PyModule_AddObjectRef(m, "Engine", st->engine_type))
		return -1;
	st->pump_type = PyType_FromModuleAndSpec(m, &Pump_spec, NULL);
	if (!st->pump_type || PyModule_AddObjectRef(m, "Pump", st->pump_type))
		return -1;
	/* every shared limit, under the name the portable engine exports too */
#define TN_ADD_LIMIT(name) \
	if (PyModule_AddIntConstant(m, #name, TN_##name)) \
		return -1;
	TN_LIMITS(TN_ADD_LIMIT)
#undef TN_ADD_LIMIT
	return tn_add_vocabulary(m, st);
}

static int tn_traverse(PyObject *m, visitproc visit, void *arg)
{
	tn_state *st = PyModule_GetState(m);

	Py_VISIT(st->engine_type);
	Py_VISIT(st->pump_type);
	Py_VISIT(st->error);
	Py_VISIT(st->termination);
	Py_VISIT(st->reasons);
	Py_VISIT(st->phases);
	Py_VISIT(st->facts);
	return 0;
}

static int tn_clear(PyObject *m)
{
	tn_state *st = PyModule_GetState(m);

	Py_CLEAR(st->engine_type);
	Py_CLEAR(st->pump_type);
	Py_CLEAR(st->error);
	Py_CLEAR(st->termination);
	Py_CLEAR(st->reasons);
	Py_CLEAR(st->phases);
	Py_CLEAR(st->facts);
	return 0;
}

static void tn_free(void *m)
{
	tn_clear(m);
}

static PyModuleDef_Slot tn_slots[] = {
	{ Py_mod_exec, tn_exec },
	{ 0, NULL }
};

static struct PyModuleDef tn_module = {
	PyModuleDef_HEAD_INIT, "_tunnel",
	"Native tunnel engine: local listener -> one WebSocket per connection.",
	sizeof(tn_state), tn_functions, tn_slots, tn_traverse, tn_clear, tn_free
};

PyMODINIT_FUNC PyInit__tunnel(void)
{
	return PyModuleDef_Init(&tn_module);
}
