/* hutch image ls|inspect|rm|gc|export|import (build: cmd_image_build.c). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "cli.h"
#include "pb_json.h"

#define CHUNK (1 << 20)

const char *cli_human_size(int64_t bytes, char *buf, size_t cap)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%lld B", (long long)bytes);
	else
		snprintf(buf, cap, "%.1f %s", v, units[u]);
	return buf;
}

static const char *short_digest(const char *d)
{
	static char buf[20];
	const char *hex = strncmp(d, "sha256:", 7) == 0 ? d + 7 : d;
	snprintf(buf, sizeof buf, "%.12s", hex);
	return buf;
}

static int unary(cli_t *cli, const char *method, const ProtobufCMessage *req,
		 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, hutch_err_t *err)
{
	hutch_client_t *c = cli_connect(cli);
	int r = hutch_call(c, method, req, desc, out, err);
	hutch_client_close(c);
	return r;
}

/* ---- ls ---- */

static int image_ls(cli_t *cli, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Hutch__V1__ListImagesRequest req = HUTCH__V1__LIST_IMAGES_REQUEST__INIT;
	Hutch__V1__ListImagesResponse *resp = NULL;
	hutch_err_t err = {0};
	if (unary(cli, "/hutch.v1.Images/List", &req.base, &hutch__v1__list_images_response__descriptor,
		  (ProtobufCMessage **)&resp, &err) < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &resp->base, 0);
		printf("\n");
	} else {
		printf("%-32s %-14s %6s %10s  %s\n", "NAME", "DIGEST", "LAYERS", "SIZE", "CREATED");
		for (size_t i = 0; i < resp->n_images; i++) {
			const Hutch__V1__Image *img = resp->images[i];
			char size[32], when[32];
			time_t t = (time_t)(img->created_unix_ms / 1000);
			struct tm tm;
			strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
			printf("%-32s %-14s %6zu %10s  %s\n", img->name, short_digest(img->digest), img->n_layers,
			       cli_human_size(img->size_bytes, size, sizeof size), when);
		}
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

/* ---- inspect ---- */

static int image_inspect(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {{"verify", no_argument, NULL, 'v'}, {0}};
	bool verify = false;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c != 'v')
			return cli_usage_error("usage: hutch image inspect [--verify] NAME");
		verify = true;
	}
	if (optind + 1 != argc)
		return cli_usage_error("usage: hutch image inspect [--verify] NAME");
	Hutch__V1__InspectImageRequest req = HUTCH__V1__INSPECT_IMAGE_REQUEST__INIT;
	req.name = argv[optind];
	req.verify = verify;
	Hutch__V1__Image *img = NULL;
	hutch_err_t err = {0};
	if (unary(cli, "/hutch.v1.Images/Inspect", &req.base, &hutch__v1__image__descriptor,
		  (ProtobufCMessage **)&img, &err) < 0)
		return cli_fail(&err);
	pb_json_print(stdout, &img->base, 0);
	printf("\n");
	protobuf_c_message_free_unpacked(&img->base, NULL);
	return 0;
}

/* ---- rm, gc ---- */

static int image_rm(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch image rm NAME...");
	hutch_client_t *client = cli_connect(cli);
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		Hutch__V1__RemoveImageRequest req = HUTCH__V1__REMOVE_IMAGE_REQUEST__INIT;
		req.name = argv[i];
		Hutch__V1__RemoveImageResponse *resp = NULL;
		hutch_err_t err = {0};
		if (hutch_call(client, "/hutch.v1.Images/Remove", &req.base,
			       &hutch__v1__remove_image_response__descriptor, (ProtobufCMessage **)&resp,
			       &err) < 0) {
			rc = cli_fail(&err);
			continue;
		}
		char size[32];
		printf("%s removed (%s freed)\n", argv[i], cli_human_size(resp->freed_bytes, size, sizeof size));
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	hutch_client_close(client);
	return rc;
}

static int image_gc(cli_t *cli, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Hutch__V1__GarbageCollectRequest req = HUTCH__V1__GARBAGE_COLLECT_REQUEST__INIT;
	Hutch__V1__GarbageCollectResponse *resp = NULL;
	hutch_err_t err = {0};
	if (unary(cli, "/hutch.v1.Images/GarbageCollect", &req.base,
		  &hutch__v1__garbage_collect_response__descriptor, (ProtobufCMessage **)&resp, &err) < 0)
		return cli_fail(&err);
	char size[32];
	if (cli->json) {
		pb_json_print(stdout, &resp->base, 0);
		printf("\n");
	} else {
		printf("removed %d layers and %d blobs (%s freed)\n", resp->layers_removed, resp->blobs_removed,
		       cli_human_size(resp->freed_bytes, size, sizeof size));
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

/* ---- export ---- */

/* Unpacks an OCI layout tar (files and directories only) into dir. */
static int unpack_layout(const char *tar, const char *dir, hutch_err_t *err)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd) || chdir(dir) < 0)
		return hutch_err_sys(err, errno, "cd %s", dir);
	struct archive *in = archive_read_new();
	archive_read_support_format_tar(in);
	struct archive *out = archive_write_disk_new();
	archive_write_disk_set_options(out, ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
						    ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
	int r = 0;
	if (archive_read_open_filename(in, tar, 1 << 16) != ARCHIVE_OK)
		r = hutch_err_set(err, EIO, "%s: %s", tar, archive_error_string(in));
	struct archive_entry *e;
	while (r == 0 && archive_read_next_header(in, &e) == ARCHIVE_OK) {
		mode_t t = archive_entry_filetype(e);
		if (t != AE_IFREG && t != AE_IFDIR)
			continue;
		if (archive_write_header(out, e) != ARCHIVE_OK) {
			r = hutch_err_set(err, EIO, "%s: %s", archive_entry_pathname(e), archive_error_string(out));
			break;
		}
		const void *buf;
		size_t len;
		la_int64_t off;
		while (archive_read_data_block(in, &buf, &len, &off) == ARCHIVE_OK)
			archive_write_data_block(out, buf, len, off);
		archive_write_finish_entry(out);
	}
	archive_write_free(out);
	archive_read_free(in);
	if (chdir(cwd) < 0 && r == 0)
		r = hutch_err_sys(err, errno, "cd %s", cwd);
	return r;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int image_export(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"layout", required_argument, NULL, 'l'},
		{0},
	};
	const char *usage = "usage: hutch image export NAME (--output FILE.tar | --layout DIR)";
	const char *file = NULL, *layout = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		if (c == 'o')
			file = optarg;
		else if (c == 'l')
			layout = optarg;
		else
			return cli_usage_error("%s", usage);
	}
	if (optind + 1 != argc || !!file == !!layout)
		return cli_usage_error("%s", usage);
	const char *name = argv[optind];
	hutch_err_t err = {0};
	char tmp[] = "/tmp/hutch-export-XXXXXX";
	int fd;
	if (file) {
		fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return cli_usage_error("%s: %s", file, strerror(errno));
	} else {
		fd = mkstemp(tmp);
		if (fd < 0)
			return cli_usage_error("%s: %s", tmp, strerror(errno));
	}
	hutch_client_t *client = cli_connect(cli);
	hc_call_t *call;
	int r = hc_call_start(hutch_client_channel(client), "/hutch.v1.Images/Export", -1, NULL, 0, &call, &err);
	if (r == 0) {
		Hutch__V1__ExportImageRequest req = HUTCH__V1__EXPORT_IMAGE_REQUEST__INIT;
		req.name = (char *)name;
		r = hc_call_send(call, &req.base, &err);
		if (r == 0)
			r = hc_call_close_send(call, &err);
		int64_t total = 0;
		while (r == 0) {
			ProtobufCMessage *m = NULL;
			int k = hc_call_recv(call, &hutch__v1__data_chunk__descriptor, &m, -1, &err);
			if (k <= 0) {
				r = k;
				break;
			}
			Hutch__V1__DataChunk *d = (Hutch__V1__DataChunk *)m;
			int w = write_all(fd, d->data.data, d->data.len);
			total += (int64_t)d->data.len;
			protobuf_c_message_free_unpacked(m, NULL);
			if (w < 0)
				r = hutch_err_sys(&err, -w, "write");
		}
		hc_call_free(call);
		if (r == 0) {
			char size[32];
			fprintf(stderr, "exported %s (%s)\n", name, cli_human_size(total, size, sizeof size));
		}
	}
	hutch_client_close(client);
	close(fd);
	if (r == 0 && layout)
		r = unpack_layout(tmp, layout, &err);
	if (layout)
		unlink(tmp);
	else if (r < 0)
		unlink(file);
	return r < 0 ? cli_fail(&err) : 0;
}

/* ---- import ---- */

int cli_image_import(hutch_client_t *c, const char *path, const char *name, const char *ref,
		     Hutch__V1__Image **out, hutch_err_t *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return hutch_err_sys(err, errno, "%s", path);
	int fd;
	if (S_ISDIR(st.st_mode)) {
		/* A layout directory travels as a tar of its contents. */
		FILE *tmp = tmpfile();
		if (!tmp)
			return hutch_err_sys(err, errno, "tmpfile");
		int r = cli_tar_dir(path, fileno(tmp), err);
		if (r < 0) {
			fclose(tmp);
			return r;
		}
		fd = dup(fileno(tmp));
		fclose(tmp);
		lseek(fd, 0, SEEK_SET);
	} else {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return hutch_err_sys(err, errno, "open %s", path);
	}
	hc_call_t *call;
	int r = hc_call_start(hutch_client_channel(c), "/hutch.v1.Images/Import", -1, NULL, 0, &call, err);
	if (r < 0) {
		close(fd);
		return r;
	}
	Hutch__V1__ImportImageStart start = HUTCH__V1__IMPORT_IMAGE_START__INIT;
	start.name = (char *)name;
	start.ref = (char *)(ref ? ref : "");
	Hutch__V1__ImportImageRequest req = HUTCH__V1__IMPORT_IMAGE_REQUEST__INIT;
	req.msg_case = HUTCH__V1__IMPORT_IMAGE_REQUEST__MSG_START;
	req.start = &start;
	r = hc_call_send(call, &req.base, err);
	uint8_t *buf = malloc(CHUNK);
	while (r == 0) {
		ssize_t n = read(fd, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = hutch_err_sys(err, errno, "read %s", path);
			hc_call_cancel(call);
			break;
		}
		if (n == 0)
			break;
		Hutch__V1__ImportImageRequest d = HUTCH__V1__IMPORT_IMAGE_REQUEST__INIT;
		d.msg_case = HUTCH__V1__IMPORT_IMAGE_REQUEST__MSG_DATA;
		d.data.data = buf;
		d.data.len = (size_t)n;
		r = hc_call_send(call, &d.base, err);
	}
	free(buf);
	close(fd);
	if (r == 0)
		r = hc_call_close_send(call, err);
	ProtobufCMessage *m = NULL;
	int rr = hc_call_recv(call, &hutch__v1__image__descriptor, &m, -1, err);
	if (rr < 0)
		r = rr; /* the server's status says more than a failed send */
	else if (r == 0 && rr == 0)
		r = hutch_err_set(err, EPROTO, "the import ended without an image");
	if (r == 0)
		*out = (Hutch__V1__Image *)m;
	else if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	hc_call_free(call);
	return r;
}

static int image_import(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"name", required_argument, NULL, 'n'},
		{"ref", required_argument, NULL, 'r'},
		{0},
	};
	const char *usage = "usage: hutch image import (FILE.tar | LAYOUT_DIR) --name NAME [--ref REF]";
	const char *name = NULL, *ref = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'n')
			name = optarg;
		else if (c == 'r')
			ref = optarg;
		else
			return cli_usage_error("%s", usage);
	}
	if (optind + 1 != argc || !name)
		return cli_usage_error("%s", usage);
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__Image *img = NULL;
	hutch_err_t err = {0};
	int r = cli_image_import(client, argv[optind], name, ref, &img, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &img->base, 0);
		printf("\n");
	} else {
		char size[32];
		printf("%s: %s (%zu layers, %s)\n", img->name, img->digest, img->n_layers,
		       cli_human_size(img->size_bytes, size, sizeof size));
	}
	protobuf_c_message_free_unpacked(&img->base, NULL);
	return 0;
}

int cmd_image(cli_t *cli, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(cli_t *, int, char **);
	} subs[] = {
		{"build", cmd_image_build}, {"ls", image_ls},         {"list", image_ls},
		{"inspect", image_inspect}, {"rm", image_rm},         {"gc", image_gc},
		{"export", image_export},   {"import", image_import},
	};
	if (argc < 2)
		return cli_usage_error("usage: hutch image build|ls|inspect|rm|gc|export|import");
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
		if (strcmp(argv[1], subs[i].name) == 0) {
			optind = 0;
			return subs[i].fn(cli, argc - 1, argv + 1);
		}
	return cli_usage_error("unknown image command `%s` (build, ls, inspect, rm, gc, export, import)", argv[1]);
}
