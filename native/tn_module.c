/*
 * tn_module.c - the CPython binding: azext_webapp._tunnel.
 *
 * Stable ABI only (Py_LIMITED_API 3.10): a heap type from a spec, module
 * state for the type and the exception, multi-phase init (xxlimited.c).
 * Every blocking call runs with the GIL released; native errors (tn_err)
 * become exceptions only after the GIL is back. Used only by tunnel.py.
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
	PyObject *error;	/* _tunnel.Error(kind, status, message) */
} tn_state;

typedef struct {
	PyObject_HEAD
	struct tn_engine *eng;
} EngineObject;

static tn_state *tn_state_of_type(PyTypeObject *tp)
{
	return PyType_GetModuleState(tp);
}

static PyObject *tn_raise(tn_state *st, const struct tn_err *e)
{
	PyObject *args = Py_BuildValue("(sis)", tn_kind_name(e->kind), e->status, e->msg);

	if (args) {
		PyErr_SetObject(st->error, args);
		Py_DECREF(args);
	}
	return NULL;
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
				  "verify", "proxy", "proxy_auth", "listen", "path", NULL };
	const char *host, *auth, *bind = "127.0.0.1", *instance = NULL, *ca = NULL, *proxy = NULL;
	const char *proxy_auth = NULL, *path = NULL;
	int port, bind_port = 0, target_port = 0, verify = 1, listen = 1, rc;
	double ping = 30.0;
	struct tn_config cfg;
	struct tn_err err;
	EngineObject *self;
	allocfunc alloc;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "sis|sizidzpzzpz", kwlist, &host, &port, &auth,
					 &bind, &bind_port, &instance, &target_port, &ping,
					 &ca, &verify, &proxy, &proxy_auth, &listen, &path))
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
	if (!cfg.host || !cfg.authorization || (listen && !cfg.bind_addr) || (instance && !cfg.instance) || (path && !cfg.path) ||
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

/* The handshake is waited for in slices; between them Python's signal
 * handlers run (Ctrl+C, SIGTERM), and one that raises abandons it. */
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
		if (PyErr_CheckSignals()) {
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

static PyObject *Engine_poll_events(EngineObject *self, PyObject *Py_UNUSED(ignored))
{
	enum { BATCH = 256 };
	struct tn_event *evs = malloc(BATCH * sizeof(*evs));
	static const char *names[] = { "", "opened", "closed", "failed" };
	struct tn_event *e;
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
			PyObject *t;

			e = &evs[i];
			t = Py_BuildValue("(sKsKKssiO)", names[e->kind],
					  (unsigned long long)e->conn_id, e->peer,
					  (unsigned long long)e->bytes_up,
					  (unsigned long long)e->bytes_down, e->message,
					  e->kind == TN_EV_FAILED ? tn_kind_name(e->error_kind) : "",
					  e->status, e->remote_closed ? Py_True : Py_False);

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
 * A signal interrupts the wait (EINTR) so Python's handler (Ctrl+C) runs
 * now; slices cover a signal delivered to another thread, whose handler
 * only runs when this one checks. */
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
		if (PyErr_CheckSignals())
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

/* refusal(conn_id) -> the HTTP answer (bytes) that refused that
 * connection's upgrade, head and up to 4 KiB of body, or None. */
static PyObject *Engine_refusal(EngineObject *self, PyObject *args)
{
	unsigned long long id;
	PyObject *out;
	char *answer;
	size_t len;
	int found;

	if (!PyArg_ParseTuple(args, "K", &id))
		return NULL;
	Py_BEGIN_ALLOW_THREADS
	found = tn_engine_refusal(self->eng, id, &answer, &len);
	Py_END_ALLOW_THREADS
	if (!found)
		Py_RETURN_NONE;
	out = PyBytes_FromStringAndSize(answer, (Py_ssize_t)len);
	free(answer);
	return out;
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
	{ "refusal", (PyCFunction)Engine_refusal, METH_VARARGS,
	  "The HTTP answer that refused a connection's upgrade (bytes), or None." },
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
 * so that Python's signal handlers (Ctrl+C, SIGTERM) run in between,
 * whatever timeout the caller gave. */
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
		if (PyErr_CheckSignals())
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
	if (err.kind == TN_OK)
		Py_RETURN_NONE;
	return Py_BuildValue("(sis)", tn_kind_name(err.kind), err.status, err.msg);
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
	{ "error", (PyCFunction)Pump_error, METH_NOARGS, "None, or (kind, status, message) of an early end." },
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

/* The transfer runs in slices; between them Python's signal handlers run,
 * and one that raises aborts it (its connection is closed at once). */
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
		if (PyErr_CheckSignals()) {
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

static int tn_exec(PyObject *m)
{
	tn_state *st = PyModule_GetState(m);

	/* library diagnostics go nowhere unless WEBAPP_TUNNEL_DEBUG is set */
	tn_loop_log(getenv("WEBAPP_TUNNEL_DEBUG") != NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		PyErr_SetString(PyExc_ImportError, "libcurl failed to initialise");
		return -1;
	}
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
	return 0;
}

static int tn_traverse(PyObject *m, visitproc visit, void *arg)
{
	tn_state *st = PyModule_GetState(m);

	Py_VISIT(st->engine_type);
	Py_VISIT(st->pump_type);
	Py_VISIT(st->error);
	return 0;
}

static int tn_clear(PyObject *m)
{
	tn_state *st = PyModule_GetState(m);

	Py_CLEAR(st->engine_type);
	Py_CLEAR(st->pump_type);
	Py_CLEAR(st->error);
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
