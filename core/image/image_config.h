/*
 * image_config.h: [images] in hutchd.toml, the options of image builds.
 *
 *   [images]
 *   build_network_policies = ["build"]  # network policies (of the building
 *                                        # tenant) bound to build sandboxes
 *                                        # that need the network; [] = the
 *                                        # network chain's default egress
 *   debian_mirror = "http://deb.debian.org/debian"
 *   debian_suites = ["bookworm", "trixie"]
 *   build_cpu = 2.0                      # each build sandbox
 *   build_memory = "2Gi"
 *   build_disk = "8Gi"
 *   step_timeout = "30m"
 *   insecure_registries = []             # hosts pulled over plain HTTP
 *                                        # (loopback ones always are)
 *
 * Bound with config_bind like every other section; hutchd's own loader
 * only admits the section's name.
 */
#ifndef HUTCH_IMAGE_CONFIG_H
#define HUTCH_IMAGE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon_config.h"

typedef struct image_config {
	char **build_network_policies;
	char *debian_mirror;
	char **debian_suites;
	double build_cpu;
	int64_t build_memory;
	int64_t build_disk;
	int64_t build_pids;
	int64_t step_timeout_ms;
	char **insecure_registries;
} image_config_t;

int image_config_load(const daemon_config_t *cfg, image_config_t *out, hutch_err_t *err);
void image_config_free(image_config_t *c);
void image_config_describe(FILE *out);

#endif
