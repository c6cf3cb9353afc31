#include "image_config.h"

#include <stddef.h>
#include <string.h>

#include "config_bind.h"

#define Q(s) "\"" s "\""
#define F(f) offsetof(image_config_t, f)
static const hutch_config_field_t image_fields[] = {
	{HUTCH_CONFIG_STRING_LIST, "build_network_policies", "[]", F(build_network_policies),
	 "Network policies (of the building tenant) bound to build steps that need the network; [] = the chain's default", 0, NULL},
	{HUTCH_CONFIG_STRING, "debian_mirror", Q("http://deb.debian.org/debian"), F(debian_mirror),
	 "Debian mirror debian_slim bases are made from", 0, NULL},
	{HUTCH_CONFIG_STRING_LIST, "debian_suites", "[\"bookworm\", \"trixie\"]", F(debian_suites),
	 "Debian suites debian_slim may use (bookworm: Python 3.11, trixie: 3.13)", 0, NULL},
	{HUTCH_CONFIG_DOUBLE, "build_cpu", "2.0", F(build_cpu), "CPUs of each build sandbox", 0, NULL},
	{HUTCH_CONFIG_SIZE, "build_memory", Q("2Gi"), F(build_memory), "Memory of each build sandbox", 0, NULL},
	{HUTCH_CONFIG_SIZE, "build_disk", Q("8Gi"), F(build_disk),
	 "Largest layer one build step may write", 0, NULL},
	{HUTCH_CONFIG_INT, "build_pids", "4096", F(build_pids), "Process limit of each build sandbox", 0, NULL},
	{HUTCH_CONFIG_DURATION, "step_timeout", Q("30m"), F(step_timeout_ms),
	 "Longest one build step may run", 0, NULL},
	{HUTCH_CONFIG_STRING_LIST, "insecure_registries", "[]", F(insecure_registries),
	 "Registries (host[:port]) pulled from over plain HTTP; loopback ones always are", 0, NULL},
	{0},
};
#undef F

int image_config_load(const daemon_config_t *cfg, image_config_t *out, hutch_err_t *err)
{
	memset(out, 0, sizeof *out);
	const toml_value_t *t = cfg->doc ? toml_table_get(cfg->doc, "images") : NULL;
	int r = config_bind(image_fields, t, cfg->file, "images", out, err);
	if (r < 0)
		return r;
	if (out->build_cpu <= 0 || out->build_memory < (64 << 20) || out->build_disk < (64 << 20) ||
	    out->build_pids < 16 || out->step_timeout_ms <= 0) {
		image_config_free(out);
		return hutch_err_set(err, EINVAL,
				     "%s: [images] build_cpu, build_memory (>= 64Mi), build_disk (>= 64Mi), build_pids and step_timeout must be positive",
				     cfg->file ? cfg->file : "<defaults>");
	}
	if (!out->debian_mirror || (strncmp(out->debian_mirror, "http://", 7) != 0 &&
				    strncmp(out->debian_mirror, "https://", 8) != 0)) {
		image_config_free(out);
		return hutch_err_set(err, EINVAL, "%s: [images] debian_mirror must be an http(s) URL",
				     cfg->file ? cfg->file : "<defaults>");
	}
	return 0;
}

void image_config_free(image_config_t *c)
{
	config_release(image_fields, c);
	memset(c, 0, sizeof *c);
}

void image_config_describe(FILE *out)
{
	fprintf(out, "[images]\n");
	config_describe(image_fields, out);
}
