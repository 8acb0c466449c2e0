/* loopwatch.c - the loop's longest busy stretch (see loopwatch.h). */
#include "loopwatch.h"

#include <string.h>

#include "limit.h"
#include "log.h"

static void on_prepare(uv_prepare_t *p)
{
	struct loopwatch *w = p->data;
	uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(w->loop);

	w->turns++;

	if (w->last_ns != 0) {
		uint64_t span = now - w->last_ns, waited = idle - w->last_idle_ns;
		uint64_t busy = span > waited ? span - waited : 0;
		if (busy > w->max_ns)
			w->max_ns = busy;
		if (busy > (uint64_t)LOOPWATCH_SLOW_MS * 1000000)
			w->slow++;
		uint64_t ms = uv_now(w->loop);
		if (busy > (uint64_t)LOOPWATCH_LOG_MS * 1000000 &&
		    (w->logged_ms == 0 || ms - w->logged_ms >= LIMIT_BURST_MS)) {
			w->logged_ms = ms;
			log_warn("the loop was busy for %.3f s without a pause: every client "
			         "waited that long",
			         (double)busy / 1e9);
		}
	}
	w->last_ns = now;
	w->last_idle_ns = idle;
}

int loopwatch_start(struct loopwatch *w, uv_loop_t *loop)
{
	int rc;

	memset(w, 0, sizeof(*w));
	w->loop = loop;
	if ((rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME)) < 0)
		return rc;
	if ((rc = uv_prepare_init(loop, &w->prepare)) < 0)
		return rc;
	w->prepare.data = w;
	/* The loop's own work is the point; this handle must not keep it
	 * alive when nothing else does. */
	uv_unref((uv_handle_t *)&w->prepare);
	uv_prepare_start(&w->prepare, on_prepare);
	w->started = true;
	return 0;
}

void loopwatch_stop(struct loopwatch *w)
{
	if (w->started && !uv_is_closing((uv_handle_t *)&w->prepare))
		uv_close((uv_handle_t *)&w->prepare, NULL);
	w->started = false;
}

double loopwatch_max_seconds(const struct loopwatch *w)
{
	return (double)w->max_ns / 1e9;
}
