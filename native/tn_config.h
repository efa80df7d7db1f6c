/*
 * tn_config.h - the tunnel's settings (plain data every layer may read)
 * and the sizes the layers agree on.
 */
#ifndef TN_CONFIG_H
#define TN_CONFIG_H

#include "tn_limits.h"	/* the sizes shared with the portable engine */

/* OpenSSL's read-ahead buffer: two full records (2 x (16 KiB + 325 bytes))
 * and a little more, so one recv() still brings two records, and OpenSSL
 * has less to move to the front after each record than with 64 KiB. */
#define TN_TLS_READ_AHEAD	(34 * 1024)

struct tn_config {
	char *host;		/* SCM host name (no port) */
	int port;		/* SCM port (443) */
	char *authorization;	/* full header value; wiped on free; under auth_mu once running */
	char *bind_addr;	/* local listen address; NULL: no listener (tn_engine_adopt only) */
	int bind_port;		/* 0: the kernel picks */
	char *path;		/* request path and query; NULL: the tunnel's (TN_TUNNEL_PATH) */
	char *instance;		/* ARRAffinity cookie value, or NULL */
	int target_port;	/* AppsvcTunnelPort, or 0 */
	int ping_secs;		/* client keep-alive */
	char *ca_file;		/* REQUESTS_CA_BUNDLE, or NULL: system store */
	int verify;		/* 0 only when the user turned it off */
	char *proxy;		/* "host:port" HTTP CONNECT proxy, or NULL; never credentials */
	char *proxy_auth;	/* Proxy-Authorization value for CONNECT, or NULL; wiped on free */
	int hold;		/* hold connections the server turned away before its first byte (tn_relay.c) */
};

#endif
