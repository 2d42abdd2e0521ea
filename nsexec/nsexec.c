// The namespace preamble; see nsexec.go for the protocol.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_BOOTSTRAP (64 * 1024)
#define MAX_JOINS 16

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static int sync_fd = -1;

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

// fail reports to the parent and ends the process. The Go runtime never
// starts in this process, so _exit is the only way out.
static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
	char msg[1024];
	int off = snprintf(msg, sizeof(msg), "error ");
	va_list ap;
	va_start(ap, fmt);
	off += vsnprintf(msg + off, sizeof(msg) - (size_t)off - 2, fmt, ap);
	va_end(ap);
	if (off > (int)sizeof(msg) - 2)
		off = (int)sizeof(msg) - 2;
	msg[off++] = '\n';
	if (sync_fd >= 0)
		write_all(sync_fd, msg, (size_t)off);
	_exit(1);
}

static void read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("nsexec: read bootstrap: %s", strerror(errno));
		}
		if (n == 0)
			fail("nsexec: read bootstrap: parent closed the socket");
		p += n;
		len -= (size_t)n;
	}
}

struct join {
	char path[512];
	int fd;
	int is_user;
};

// Join the user namespace first: it decides what the other setns calls are
// allowed to do. Mount last among the rest, so the paths we opened stay
// meaningful; they are opened up front anyway.
static void join_namespaces(struct join *joins, int n)
{
	for (int i = 0; i < n; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0)
			fail("nsexec: open namespace %s: %s", joins[i].path, strerror(errno));
		joins[i].is_user = strstr(joins[i].path, "/user") != NULL;
	}
	for (int pass = 0; pass < 3; pass++) {
		for (int i = 0; i < n; i++) {
			int is_mnt = strstr(joins[i].path, "/mnt") != NULL;
			int want = joins[i].is_user ? 0 : (is_mnt ? 2 : 1);
			if (want != pass)
				continue;
			if (setns(joins[i].fd, 0) < 0)
				fail("nsexec: join namespace %s: %s", joins[i].path, strerror(errno));
			close(joins[i].fd);
		}
	}
}

void mini_nsexec(void)
{
	const char *env = getenv("_MINI_SYNC_FD");
	if (env == NULL || *env == '\0')
		return;
	sync_fd = atoi(env);
	if (sync_fd < 3)
		fail("nsexec: bad _MINI_SYNC_FD %s", env);

	uint32_t len;
	read_full(sync_fd, &len, sizeof(len));
	if (len > MAX_BOOTSTRAP)
		fail("nsexec: bootstrap of %u bytes is too large", len);
	char *buf = calloc(1, (size_t)len + 1);
	if (buf == NULL)
		fail("nsexec: out of memory");
	read_full(sync_fd, buf, len);

	unsigned long flags = 0;
	struct join joins[MAX_JOINS];
	int njoins = 0;
	int join_pid = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "unshare ", 8) == 0) {
			flags = strtoul(line + 8, NULL, 10);
		} else if (strncmp(line, "join ", 5) == 0) {
			if (njoins == MAX_JOINS)
				fail("nsexec: more than %d namespaces to join", MAX_JOINS);
			if (strlen(line + 5) >= sizeof(joins[0].path))
				fail("nsexec: namespace path too long: %s", line + 5);
			strcpy(joins[njoins].path, line + 5);
			if (strstr(line + 5, "/pid") != NULL)
				join_pid = 1;
			njoins++;
		} else if (*line != '\0') {
			fail("nsexec: unknown bootstrap line %.64s", line);
		}
	}
	free(buf);

	join_namespaces(joins, njoins);

	// The cgroup namespace must be created after the parent placed us in
	// the container's cgroup, which it did before sending the bootstrap,
	// so the container sees its own cgroup as the root.
	if (flags != 0 && unshare((int)flags) < 0)
		fail("nsexec: unshare(%#lx): %s", flags, strerror(errno));

	if (!(flags & CLONE_NEWPID) && !join_pid) {
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "pid %d\n", getpid());
		write_all(sync_fd, msg, (size_t)n);
		return;
	}

	// A pid namespace, new or joined, only applies to our children: fork
	// once. The child is the process that runs Go; we report its pid as seen
	// from the shim's namespace and leave. The shim is a child subreaper, so
	// the child is reparented to it.
	pid_t child = fork();
	if (child < 0)
		fail("nsexec: fork into pid namespace: %s", strerror(errno));
	if (child == 0)
		return;
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "pid %d\n", child);
	write_all(sync_fd, msg, (size_t)n);
	_exit(0);
}
