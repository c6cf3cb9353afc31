/*
 * audit.c: net-egress's audit events and metrics.
 *
 * One "egress.dns" event per resolver decision: the sandbox, its tenant,
 * the name and type asked, the verdict on the name (allowed, denied,
 * unlisted, open), what the resolver did (answered, nxdomain, ...), the
 * CNAME chain, and each answered address with what its packets will meet
 * (allowed or dropped). One "egress.drop" event per dropped connection
 * attempt (nflog.c): the destination, its name if one was answered for
 * it, and why. Every dropped packet is counted per sandbox by nftables,
 * reported when the sandbox detaches ("egress.sandbox" events) and in the
 * egress_dropped_packets_total counter.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "egress.h"
#include "nflog_msg.h"

static const char *addr_outcome(eg_verdict_t verdict, char mark)
{
	switch (mark) {
	case 'a': return "allowed";
	case 'd': return "dropped";
	case 's': return "dropped";
	default: return verdict == EG_VERDICT_OPEN ? "allowed" : "dropped";
	}
}

void eg_audit_dns(eg_instance_t *in, const eg_sandbox_t *sb, const dns_question_t *q,
		  eg_verdict_t verdict, const eg_learn_result_t *res, const dns_answer_t *a,
		  const char *outcome)
{
	if (!in->cfg->audit || !in->host->audit)
		return;
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	char type[16];
	sb_append(&b, "\"sandbox\":");
	sb_json_str(&b, sb->id);
	sb_append(&b, ",\"tenant\":");
	sb_json_str(&b, sb->tenant);
	sb_append(&b, ",\"name\":");
	sb_json_str(&b, q->name);
	sb_append(&b, ",\"type\":");
	sb_json_str(&b, dns_type_name(q->qtype, type, sizeof type));
	sb_append(&b, ",\"verdict\":");
	sb_json_str(&b, eg_verdict_name(verdict));
	sb_append(&b, ",\"outcome\":");
	sb_json_str(&b, outcome);
	if (res) {
		sb_append(&b, ",\"policies\":");
		sb_json_str(&b, res->policies);
		if (res->pattern[0]) {
			sb_append(&b, ",\"pattern\":");
			sb_json_str(&b, res->pattern);
			sb_append(&b, ",\"policy\":");
			sb_json_str(&b, res->policy);
		}
		if (res->denied_via) {
			sb_append(&b, ",\"denied_cname\":");
			sb_json_str(&b, res->denied_via);
		}
		if (res->evicted)
			sb_printf(&b, ",\"evicted\":%zu", res->evicted);
		if (res->limit) {
			sb_append(&b, ",\"limit\":");
			sb_json_str(&b, res->limit);
		}
	}
	if (a) {
		if (a->n_chain > 1) {
			sb_append(&b, ",\"cnames\":[");
			for (size_t i = 1; i < a->n_chain; i++) {
				if (i > 1)
					sb_putc(&b, ',');
				sb_json_str(&b, a->chain[i]);
			}
			sb_putc(&b, ']');
		}
		sb_append(&b, ",\"addresses\":[");
		for (size_t i = 0; i < a->n_addrs; i++) {
			char ip[INET6_ADDRSTRLEN];
			inet_ntop(a->addrs[i].family, a->addrs[i].addr, ip, sizeof ip);
			sb_printf(&b, "%s{\"address\":", i ? "," : "");
			sb_json_str(&b, ip);
			sb_printf(&b, ",\"ttl\":%u,\"verdict\":\"%s\"}", a->addrs[i].ttl,
				  addr_outcome(verdict, res ? res->addr_verdict[i] : '-'));
		}
		sb_putc(&b, ']');
	}
	in->host->audit(in->host, "egress.dns", b.buf);
}

void eg_audit_sandbox(eg_instance_t *in, const eg_sandbox_t *sb, const char *event)
{
	if (!in->cfg->audit || !in->host->audit)
		return;
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	char a4[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, sb->addr4, a4, sizeof a4);
	sb_append(&b, "\"sandbox\":");
	sb_json_str(&b, sb->id);
	sb_append(&b, ",\"tenant\":");
	sb_json_str(&b, sb->tenant);
	sb_append(&b, ",\"action\":");
	sb_json_str(&b, event);
	sb_append(&b, ",\"interface\":");
	sb_json_str(&b, sb->ifname);
	sb_append(&b, ",\"address\":");
	sb_json_str(&b, a4);
	sb_printf(&b, ",\"dropped_packets\":%llu", (unsigned long long)sb->dropped_packets);
	if (sb->rules) {
		sb_append(&b, ",\"policies\":");
		sb_json_str(&b, eg_rules_label(sb->rules));
		sb_printf(&b, ",\"allow_all\":%s", sb->rules->allow_all ? "true" : "false");
	}
	in->host->audit(in->host, "egress.sandbox", b.buf);
}

void eg_metric_query(eg_instance_t *in, const char *verdict)
{
	char labels[48];
	snprintf(labels, sizeof labels, "verdict=%s", verdict);
	in->host->metric_add(in->host, "egress_dns_queries_total", labels, 1);
}

void eg_metric(eg_instance_t *in, const char *name, double delta)
{
	in->host->metric_add(in->host, name, NULL, delta);
}

const char *eg_drop_reason_name(eg_drop_reason_t r)
{
	switch (r) {
	case EG_DROP_SPOOFED: return "spoofed_source";
	case EG_DROP_HOST: return "host";
	case EG_DROP_DNS: return "dns_not_via_resolver";
	case EG_DROP_BLOCKED: return "blocked";
	case EG_DROP_DENIED: return "denied";
	case EG_DROP_NOT_ALLOWED: return "not_allowed";
	case EG_DROP_INVALID: return "invalid";
	default: return "unknown";
	}
}

void eg_audit_drop(eg_instance_t *in, eg_sandbox_t *sb, eg_drop_reason_t reason,
		   const eg_pkt_t *p)
{
	char labels[64];
	snprintf(labels, sizeof labels, "reason=%s", eg_drop_reason_name(reason));
	in->host->metric_add(in->host, "egress_audited_drops_total", labels, 1);
	if (!in->host->audit)
		return;
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	char ip[INET6_ADDRSTRLEN], proto[16];
	sb_append(&b, "\"sandbox\":");
	sb_json_str(&b, sb->id);
	sb_append(&b, ",\"tenant\":");
	sb_json_str(&b, sb->tenant);
	sb_append(&b, ",\"verdict\":\"dropped\",\"reason\":");
	sb_json_str(&b, eg_drop_reason_name(reason));
	sb_append(&b, ",\"protocol\":");
	sb_json_str(&b, eg_proto_name(p->proto, proto, sizeof proto));
	inet_ntop(p->family, p->dst, ip, sizeof ip);
	sb_append(&b, ",\"address\":");
	sb_json_str(&b, ip);
	if (p->has_ports)
		sb_printf(&b, ",\"port\":%u", p->dport);
	if (p->has_icmp)
		sb_printf(&b, ",\"icmp_type\":%u", p->icmp_type);
	if (reason == EG_DROP_SPOOFED) {
		inet_ntop(p->family, p->src, ip, sizeof ip);
		sb_append(&b, ",\"source_address\":");
		sb_json_str(&b, ip);
	}
	/* Through NAT64, the IPv4 host it reaches names the drop. */
	uint8_t v4[4];
	bool nat64 = p->family == AF_INET6 && eg_nat64_embedded(in, p->dst, v4);
	if (nat64) {
		inet_ntop(AF_INET, v4, ip, sizeof ip);
		sb_append(&b, ",\"nat64_of\":");
		sb_json_str(&b, ip);
	}
	const eg_cidr_t *range = reason == EG_DROP_BLOCKED ? eg_blocked_range(in, p->family, p->dst)
							    : NULL;
	if (range) {
		char c[64];
		eg_cidr_format(range, c, sizeof c);
		sb_append(&b, ",\"range\":");
		sb_json_str(&b, c);
	}
	_cleanup_free_ char *name = eg_learned_name(sb, p->family, p->dst);
	if (!name && nat64)
		name = eg_learned_name(sb, AF_INET, v4);
	if (name) {
		sb_append(&b, ",\"name\":");
		sb_json_str(&b, name);
	}
	pthread_mutex_lock(&sb->lock);
	if (sb->rules) {
		sb_append(&b, ",\"policies\":");
		sb_json_str(&b, eg_rules_label(sb->rules));
	}
	pthread_mutex_unlock(&sb->lock);
	in->host->audit(in->host, "egress.drop", b.buf);
}
