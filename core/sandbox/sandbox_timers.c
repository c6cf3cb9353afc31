/* A sandbox's lifetime and idle timers. */
#include "sandbox_priv.h"

#include <stdio.h>

static void timer_closed(uv_handle_t *h)
{
	sandbox_unref(h->data);
}

void sandbox_timers_close(sandbox_t *sb)
{
	if (!sb->timers_init)
		return;
	sb->timers_init = false;
	uv_close((uv_handle_t *)&sb->life_timer, timer_closed);
	uv_close((uv_handle_t *)&sb->idle_timer, timer_closed);
}

static void on_lifetime(uv_timer_t *t)
{
	sandbox_t *sb = t->data;
	char why[96];
	snprintf(why, sizeof why, "lifetime of %llds expired",
		 (long long)(sb->spec ? sb->spec->lifetime_seconds : 0));
	sandbox_stop_internal(sb, 0, SANDBOX_EXPIRED, why, NULL, NULL);
}

static void on_idle(uv_timer_t *t)
{
	sandbox_t *sb = t->data;
	if (sb->active > 0)
		return; /* an exec is running: not idle */
	char why[96];
	snprintf(why, sizeof why, "idle for %llds",
		 (long long)(sb->spec ? sb->spec->idle_timeout_seconds : 0));
	sandbox_stop_internal(sb, 0, SANDBOX_EXPIRED, why, NULL, NULL);
}

void sandbox_timers_start(sandbox_t *sb)
{
	uv_loop_t *loop = sb->m->d.loop;
	if (!sb->timers_init) {
		uv_timer_init(loop, &sb->life_timer);
		uv_timer_init(loop, &sb->idle_timer);
		sb->life_timer.data = sb->idle_timer.data = sb;
		sandbox_ref(sb);
		sandbox_ref(sb);
		sb->timers_init = true;
	}
	int64_t left = sb->expires_ms - now_ms();
	uv_timer_start(&sb->life_timer, on_lifetime, left > 0 ? (uint64_t)left : 0, 0);
	if (sb->spec && sb->spec->idle_timeout_seconds > 0) {
		uint64_t idle = (uint64_t)sb->spec->idle_timeout_seconds * 1000;
		uv_timer_start(&sb->idle_timer, on_idle, idle, idle);
	}
}

void sandbox_activity(sandbox_t *sb, int delta_active)
{
	sb->active += delta_active;
	if (sb->timers_init && sb->spec && sb->spec->idle_timeout_seconds > 0 &&
	    sb->state == SANDBOX_RUNNING)
		uv_timer_again(&sb->idle_timer);
}
