/*
 * config_bind.h: binds a TOML table to a declarative config table.
 *
 * The same mechanism serves hutchd's own sections ([daemon], [api], ...) and
 * every plugin's [plugin.<name>] table: a hutch_config_field_t array says
 * which keys exist, their types, defaults and where they land in a struct.
 * Binding fills the struct with the defaults, then with the file's values,
 * and refuses unknown keys and wrong types with "file:line:col: message".
 */
#ifndef HUTCH_CONFIG_BIND_H
#define HUTCH_CONFIG_BIND_H

#include <stdio.h>

#include <hutch/plugin.h>

#include "toml.h"

/* Checks a schema itself (types, offsets inside config_size, defaults that
 * parse, enum choices). Used when a plugin is loaded. */
int config_schema_check(const hutch_config_field_t *fields, size_t config_size,
			hutch_err_t *err);

/* Fills out (config_size bytes, zeroed by the caller) with the defaults, then
 * from table (NULL: defaults only). file and section name the source in
 * errors; relative PATH values are resolved against file's directory (or the
 * working directory when file is NULL). On failure out is released. */
int config_bind(const hutch_config_field_t *fields, const toml_value_t *table,
		const char *file, const char *section, void *out,
		hutch_err_t *err);

/* Frees what config_bind allocated inside obj (strings, lists). */
void config_release(const hutch_config_field_t *fields, void *obj);

/* Prints the schema as a readable table (for --describe). */
void config_describe(const hutch_config_field_t *fields, FILE *out);

/* "1h30m", "250ms", "45s", "2d" -> milliseconds. */
int config_parse_duration(const char *s, int64_t *ms);
/* "512Mi", "2G", "1.5Gi", "4096" -> bytes. */
int config_parse_size(const char *s, int64_t *bytes);
/* "2", "0.5", "250m" (millicores) -> millicores. */
int config_parse_cpu(const char *s, int64_t *millis);

const char *config_type_name(hutch_config_type_t t);

#endif
