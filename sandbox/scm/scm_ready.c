/*
 * scm_ready.c - the ready file: which port each site's listener got.
 *
 * Written to a temporary name and renamed, so a reader never sees a partial
 * file.  `generation` counts writes (1 at start-up, +1 per SIGHUP reload) so
 * a launcher can wait until its reload was applied; `error` is present when
 * the last reload was rejected (the previous settings stay in force).
 */
#include "scm.h"
#include "scm_json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int
ready_write(const struct scm_config *cfg, unsigned long generation,
	    const char *error)
{
	char tmp[4096];
	size_t i;
	FILE *f;
	int bad;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", cfg->ready_file,
			     (long)getpid()) >= sizeof(tmp)) {
		scm_log(SCM_LOG_ERR, "ready file path too long\n");
		return -1;
	}
	f = fopen(tmp, "w");
	if (!f) {
		scm_log(SCM_LOG_ERR, "%s: %s\n", tmp, strerror(errno));
		return -1;
	}
	bad = fprintf(f, "{\"pid\": %ld, \"generation\": %lu, ",
		      (long)getpid(), generation) < 0;
	if (error) {
		bad |= fputs("\"error\": ", f) == EOF;
		bad |= json_write_string(f, error) < 0;
		bad |= fputs(", ", f) == EOF;
	}
	bad |= fputs("\"sites\": {", f) == EOF;
	for (i = 0; i < cfg->nsites; i++) {
		bad |= fputs(i ? ", " : "", f) == EOF;
		bad |= json_write_string(f, cfg->sites[i].name) < 0;
		bad |= fprintf(f, ": {\"port\": %d}", cfg->sites[i].port) < 0;
	}
	bad |= fputs("}}\n", f) == EOF;
	bad |= fclose(f) == EOF;
	if (bad || rename(tmp, cfg->ready_file)) {
		scm_log(SCM_LOG_ERR, "writing %s failed: %s\n", cfg->ready_file,
			 strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}
